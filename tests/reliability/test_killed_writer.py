"""Item 7: a writer killed with SIGKILL at random points loses nothing it acknowledged.

Two writers, 50 kills each: an ingest of two small series uploaded file by file, and a job's
result writer. Each trial starts a fresh writer process, arms a timer that SIGKILLs it a
random time after a random acknowledgement (or before the first), and then checks what it
left: every HDF5 file opens, every acknowledged upload or slice is there after recovery
(``recover_inbox`` for the ingest, reopening for the result file), and no stored slice differs
from what was sent.
"""

from __future__ import annotations

import random
from multiprocessing.context import ForkServerContext
from pathlib import Path

import numpy as np
import pytest

from pacslab.ingest import recover_inbox
from pacslab.store import SliceStore, read_series_slices
from pacslab.store.results import ResultReader, ResultWriter
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import encode, series
from tests.reliability.writers import PROVENANCE, ingest_uploads, result_pattern, run_and_kill, write_results

ITEM = 7
KILLS = 50
MAX_TRIALS = 90
N_RESULT_SLICES = 40

pytestmark = pytest.mark.timeout(400)


def _openable(root: Path) -> tuple[int, int]:
    """(series files that open, series files) in the store, temporary files of the writer aside."""
    files = list((root / "series").rglob("*.h5"))
    good = 0
    for path in files:
        try:
            read_series_slices(path, [0])
            good += 1
        except Exception:  # counted: an unopenable file is the failure this test looks for
            pass
    return good, len(files)


def test_a_killed_ingest_keeps_every_acknowledged_upload(
    tmp_path: Path, forkserver: ForkServerContext, figures: Figures
) -> None:
    sources = series(6) + series(6)
    folder = tmp_path / "uploads"
    folder.mkdir()
    files = []
    for i, ds in enumerate(sources):
        (folder / f"{i:02d}.dcm").write_bytes(encode(ds))
        files.append(str(folder / f"{i:02d}.dcm"))
    expected = {str(ds.SOPInstanceUID): np.frombuffer(ds.PixelData, "<i2").reshape(16, 16) for ds in sources}

    acks, killed, times = run_and_kill(forkserver, ingest_uploads, (str(tmp_path / "whole"), files), 0, 3600)
    assert not killed
    assert acks[-1][0] == "stored"
    # Time per upload between the first and last acknowledgements (process start left out).
    upload_s, finish_s = (times[-2] - times[0]) / (len(files) - 1), times[-1] - times[-2]

    rng = random.Random(7)
    trials = kills = while_writing = 0
    unopenable = missing = corrupt = 0
    while kills < KILLS and trials < MAX_TRIALS:
        root = tmp_path / f"store{trials}"
        # Every other trial aims at the uploads, the others at the writing of the series.
        if trials % 2:
            after, delay = rng.randint(1, len(files) - 1), rng.uniform(0, upload_s)
        else:
            after, delay = len(files), rng.uniform(0, finish_s)
        acks, was_killed, _ = run_and_kill(forkserver, ingest_uploads, (str(root), files), after, delay)
        trials += 1
        kills += was_killed
        while_writing += was_killed and len(acks) == len(files)
        good, total = _openable(root)
        unopenable += total - good
        store = SliceStore(root)
        recover_inbox(store)
        uploaded = {str(sources[i].SOPInstanceUID) for kind, i in acks if kind == "uploaded"}
        stored = {}
        for info in store.list_series():
            for record in store.instances(info.series_uid):
                stored[record.sop_instance_uid] = store.read_slice(info.series_uid, record.slice_index)
        missing += len(uploaded - stored.keys())
        corrupt += sum(not np.array_equal(plane, expected[uid]) for uid, plane in stored.items())
        assert list(store.inbox_dir.iterdir()) == []
        store.close()

    figures("ingest: trials, killed before the end", f"{trials}, {kills}")
    figures(
        "ingest: kills while uploading, while writing the series", f"{kills - while_writing}, {while_writing}"
    )
    figures("ingest: series files openable", "100%" if unopenable == 0 else f"{unopenable} unopenable")
    figures("ingest: acknowledged uploads missing after recovery", missing)
    figures("ingest: corrupt slices", corrupt)
    assert kills >= KILLS
    assert 0 < while_writing < kills
    assert (unopenable, missing, corrupt) == (0, 0, 0)


def test_a_killed_result_writer_keeps_every_acknowledged_slice(
    tmp_path: Path, forkserver: ForkServerContext, figures: Figures
) -> None:
    order = list(range(N_RESULT_SLICES))
    acks, killed, times = run_and_kill(
        forkserver, write_results, (str(tmp_path / "whole.h5"), N_RESULT_SLICES, order), 0, 3600
    )
    assert not killed
    assert acks[-1][0] == "closed"
    per_slice = times[-1] / N_RESULT_SLICES

    rng = random.Random(8)
    trials = kills = 0
    unopenable = missing = corrupt = unresumable = 0
    for trials in range(1, MAX_TRIALS + 1):
        path = tmp_path / f"result{trials}.h5"
        shuffled = rng.sample(order, len(order))
        after = rng.randint(0, N_RESULT_SLICES)
        delay = rng.uniform(0, 2 * per_slice)
        acks, was_killed, _ = run_and_kill(
            forkserver, write_results, (str(path), N_RESULT_SLICES, shuffled), after, delay
        )
        kills += was_killed
        written = {i for kind, i in acks if kind == "written"}
        if not path.exists():
            missing += len(written)
            continue
        try:
            reader = ResultReader(path)
            done = reader.done_mask()
        except Exception:  # counted below
            unopenable += 1
            continue
        missing += sum(not done[i] for i in written)
        corrupt += sum(
            not np.array_equal(reader.read(int(i)), result_pattern(int(i))) for i in np.flatnonzero(done)
        )
        # The job resumes: the rest is written into the same file.
        try:
            with ResultWriter.open_existing(path, PROVENANCE) as writer:
                for i in np.flatnonzero(~done):
                    writer.write(int(i), result_pattern(int(i)))
            resumed = ResultReader(path)
            unresumable += not resumed.done_mask().all()
        except Exception:  # counted: a file the job cannot resume from
            unresumable += 1
        if kills >= KILLS:
            break

    figures("results: trials, killed before the end", f"{trials}, {kills}")
    figures("results: files openable", "100%" if unopenable == 0 else f"{unopenable} unopenable")
    figures("results: acknowledged slices missing", missing)
    figures("results: corrupt slices", corrupt)
    figures("results: files the job could not resume", unresumable)
    assert kills >= KILLS
    assert (unopenable, missing, corrupt, unresumable) == (0, 0, 0, 0)
