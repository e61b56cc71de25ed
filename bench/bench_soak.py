"""Soak: the reliability suite's checks run longer, with the reference pydicom alone gives.

``make soak`` (or ``python bench/bench_soak.py``) prints one line per figure:

* ``corpus``: seeded mutants uploaded one by one (crashes, hangs, partial writes, wrong
  pixels, files/s), against ``dcmread(...).pixel_array`` alone on the same files (exception
  types it raises, corrupt files it decodes without complaint);
* ``bomb``: peak memory of the ingest refusing a deflate bomb, against pydicom alone reading it;
* ``kills``: SIGKILLs of the ingest and of the result writer (acknowledged data missing,
  corrupt slices, unopenable files);
* ``readers``: a viewer reading while a job writes many slices (errors, torn slices, lag);
* ``faults``: each network fault repeated (worst time from fault to named error).

Usage: ``python bench/bench_soak.py [--mutants 20000] [--kills 250] [--slices 20000]
[--fault-rounds 5] [--bomb-mib 512] [--only corpus,bomb,...]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the suite's helpers live in tests/reliability

SECTIONS = ("corpus", "bomb", "kills", "readers", "faults")


def soak_corpus(work: Path, n: int) -> None:
    from tests.reliability.children import run_sharded
    from tests.reliability.corpus import TEST_FILES, mutants

    entries = []
    for mutant in mutants(n, seed=int(time.time())):
        path = work / mutant.name
        path.write_bytes(mutant.data)
        entries.append({"name": mutant.name, "path": str(path), "original": str(TEST_FILES / mutant.base)})
    started = time.perf_counter()
    run = run_sharded("tests.reliability.ingest_worker", entries, work, 30.0, shards=os.cpu_count() or 2)
    seconds = time.perf_counter() - started
    results = run.results.values()
    crashes = len(run.crashed) + sum(r["outcome"] == "crash" for r in results)
    partial = sum(bool(r.get("partial")) for r in results)
    wrong = sum(bool(r.get("wrong")) for r in results)
    errors = Counter(r["error"] for r in results if r["outcome"] == "rejected")
    alone = Counter(r["pydicom"] for r in results if "pydicom" in r)
    silent = sum(r["outcome"] == "rejected" and r["pydicom"].startswith("decoded") for r in results)
    print(f"corpus: {n} mutants in {seconds:.0f} s ({n / seconds:.1f} files/s)")
    accepted = sum(r["outcome"] == "accepted" for r in results)
    exception_types = len([k for k in alone if not k.startswith("decoded")])
    print(f"corpus: crashes {crashes}, hangs {len(run.hung)}, partial writes {partial}, wrong {wrong}")
    print(f"corpus: accepted {accepted}; refused {dict(sorted(errors.items()))}")
    print(f"corpus: pydicom alone raises {exception_types} exception types, decodes {silent} refused files")


_PEAK = """
import resource, sys, time, pydicom
started = time.perf_counter()
try:
    pydicom.dcmread(sys.argv[1])
    outcome = "read"
except Exception as exc:
    outcome = type(exc).__name__
print(outcome, time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def soak_bomb(work: Path, mib: int) -> None:
    from tests.reliability.children import run_module_over
    from tests.reliability.dicom_bytes import deflate_bomb

    bomb = work / "bomb.dcm"
    bomb.write_bytes(deflate_bomb(mib << 20))
    manifest = work / "bomb.json"
    manifest.write_text(json.dumps([{"name": "bomb", "path": str(bomb)}]))
    ours = run_module_over("tests.reliability.bomb_worker", manifest, 1, work, 120.0).results[0]
    alone = subprocess.run(
        [sys.executable, "-c", _PEAK, str(bomb)], capture_output=True, text=True, check=False
    )
    outcome, seconds, peak_kib = alone.stdout.split()
    print(f"bomb: {bomb.stat().st_size >> 10} KiB file inflating to {mib} MiB")
    print(f"bomb: ingest refused it ({', '.join(ours['errors'])}) in {ours['seconds']:.2f} s, "
          f"peak {ours['peak_mib']:.0f} MiB (rest {ours['rss_before_mib']:.0f} MiB)")  # fmt: skip
    print(f"bomb: pydicom alone: {outcome} in {float(seconds):.2f} s, peak {int(peak_kib) >> 10} MiB")
    print(
        f"bomb: peak memory ratio pydicom / ingest = {(int(peak_kib) >> 10) / max(ours['peak_mib'], 1):.1f}x"
    )


def soak_kills(work: Path, kills: int) -> None:
    import multiprocessing

    from pacslab.ingest import recover_inbox
    from pacslab.store import SliceStore
    from pacslab.store.results import ResultReader
    from tests.reliability.dicom_bytes import encode, series
    from tests.reliability.writers import ingest_uploads, result_pattern, run_and_kill, write_results

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability.writers"])
    sources = series(6) + series(6)
    files = []
    for i, ds in enumerate(sources):
        (work / f"{i:02d}.dcm").write_bytes(encode(ds))
        files.append(str(work / f"{i:02d}.dcm"))
    rng = random.Random()
    missing = corrupt = done = 0
    while done < kills:
        root = work / f"store{done}"
        acks, killed, _ = run_and_kill(
            context, ingest_uploads, (str(root), files), rng.randint(0, 12), rng.uniform(0, 0.2)
        )
        done += killed
        store = SliceStore(root)
        recover_inbox(store)
        stored = {r.sop_instance_uid for s in store.list_series() for r in store.instances(s.series_uid)}
        missing += len({str(sources[i].SOPInstanceUID) for k, i in acks if k == "uploaded"} - stored)
        store.close()
    print(f"kills: ingest killed {kills} times: acknowledged uploads missing {missing}")
    done = 0
    while done < kills:
        path = work / f"result{done}.h5"
        order = rng.sample(range(40), 40)
        acks, killed, _ = run_and_kill(
            context, write_results, (str(path), 40, order), rng.randint(0, 40), rng.uniform(0, 0.02)
        )
        done += killed
        if path.exists():
            reader = ResultReader(path)
            mask = reader.done_mask()
            missing += sum(not mask[i] for k, i in acks if k == "written")
            corrupt += sum(
                not np.array_equal(reader.read(int(i)), result_pattern(int(i))) for i in np.flatnonzero(mask)
            )
    print(
        f"kills: result writer killed {kills} times: acknowledged slices missing {missing}, corrupt {corrupt}"
    )


def soak_readers(work: Path, n: int) -> None:
    import multiprocessing

    from pacslab.store.results import ResultNotFoundError, ResultReader
    from tests.reliability.writers import slice_is_whole, write_checksummed

    context = multiprocessing.get_context("forkserver")
    path = work / "readers.h5"
    receiving, sending = context.Pipe(duplex=False)
    writer = context.Process(target=write_checksummed, args=(str(path), n, 4, sending))
    acked: dict[int, float] = {}
    collector = threading.Thread(target=lambda: _collect(receiving, acked))
    writer.start()
    sending.close()
    collector.start()
    seen: dict[int, float] = {}
    errors = torn = 0
    while len(seen) < n and (writer.is_alive() or len(seen) < len(acked)):
        try:
            reader = ResultReader(path)
            fresh = [int(i) for i in np.flatnonzero(reader.done_mask()) if int(i) not in seen]
        except ResultNotFoundError:
            continue
        except Exception:  # counted: what a viewer would show as an error
            errors += 1
            continue
        now = time.monotonic()
        seen.update(dict.fromkeys(fresh, now))
        if fresh:
            torn += not slice_is_whole(reader.read(fresh[-1]), fresh[-1])
    writer.join()
    collector.join()
    lag = np.array([(seen[i] - acked[i]) * 1000 for i in seen if i in acked])
    p50, p99 = np.percentile(lag, 50), np.percentile(lag, 99)
    print(f"readers: {n} slices, reader errors {errors}, torn {torn}")
    print(f"readers: visibility lag p50/p99/max {p50:.0f}/{p99:.0f}/{lag.max():.0f} ms")


def _collect(receiving: object, acked: dict[int, float]) -> None:
    while True:
        try:
            indices, when = receiving.recv()  # type: ignore[attr-defined]
        except EOFError:
            return
        acked.update(dict.fromkeys(indices, when))


def soak_faults(work: Path, rounds: int) -> None:
    from pacslab.pacs import PacsError
    from pacslab.pacs.embedded import EmbeddedPacs
    from tests.reliability.dicom_bytes import encode, series
    from tests.reliability.fault_scenarios import SCENARIOS, Study, call_for, client_for, run_timed
    from tests.reliability.faulty_peer import FaultyPeer

    files = work / "files"
    files.mkdir()
    datasets = series(30, rows=64, cols=64)
    for i, ds in enumerate(datasets):
        (files / f"{i}.dcm").write_bytes(encode(ds))
    with EmbeddedPacs(work / "pacs", port=0, maximum_associations=50) as pacs:
        pacs.add_files([files])
        study = Study(pacs, str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID))
        for scenario, (fault, what) in SCENARIOS.items():
            worst, unnamed, stuck = 0.0, 0, 0
            for _ in range(rounds):
                with FaultyPeer(("127.0.0.1", pacs.port), fault) as peer:
                    call, got = call_for(client_for(peer.port, pacs.ae_title), what, study)
                    outcome = run_timed(call, got, lambda peer=peer: peer.fault_started or 0.0)
                if outcome.seconds is None:
                    stuck += 1
                else:
                    worst = max(worst, outcome.seconds)
                    unnamed += not isinstance(outcome.error, PacsError)
            print(
                f"faults: {scenario}: worst {worst:.1f} s after the fault; stuck {stuck}, unnamed {unnamed}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", type=int, default=20000)
    parser.add_argument("--kills", type=int, default=250)
    parser.add_argument("--slices", type=int, default=20000)
    parser.add_argument("--fault-rounds", type=int, default=5)
    parser.add_argument("--bomb-mib", type=int, default=512)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    args = parser.parse_args()
    wanted = args.only.split(",")
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"no section {sorted(unknown)}; sections: {', '.join(SECTIONS)}")
    with tempfile.TemporaryDirectory(prefix="pacslab-soak-") as scratch:
        work = Path(scratch)
        plan = {
            "corpus": lambda: soak_corpus(work / "corpus", args.mutants),
            "bomb": lambda: soak_bomb(work / "bomb", args.bomb_mib),
            "kills": lambda: soak_kills(work / "kills", args.kills),
            "readers": lambda: soak_readers(work / "readers", args.slices),
            "faults": lambda: soak_faults(work / "faults", args.fault_rounds),
        }
        for name in wanted:
            (work / name).mkdir()
            started = time.perf_counter()
            plan[name]()
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            took = time.perf_counter() - started
            print(
                f"({name} took {took:.0f} s; child processes' CPU so far {usage.ru_utime:.0f} s)", flush=True
            )


if __name__ == "__main__":
    main()
