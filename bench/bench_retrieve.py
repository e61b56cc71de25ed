"""Retrieve of the synthetic CT from Orthanc into the slice store, against DCMTK and curl, in one run.

Prints seconds, slices/s and the ratio to the anchor, ``TCP_NODELAY=1 getscu`` into a folder
(no asserts). References, on the same series in the same run:

* ``getscu`` into a folder (the anchor), and the same followed by a script that turns the
  files into one HDF5 volume (what a user would do without pacslab);
* ``movescu`` to DCMTK's ``storescp``;
* ``curl`` of the WADO-RS series URL (Orthanc's own serve time, the floor).

pacslab: C-GET, C-MOVE and WADO-RS into the store (through :class:`pacslab.ingest.Ingest`),
and C-GET / WADO-RS into a callback that discards (the transport alone). Everything DIMSE is
also run against a second Orthanc started without ``TCP_NODELAY``, and C-GET once more with
TCP_NODELAY off on our side too.

Targets (issue 3): WADO-RS into the store <= 1.3x getscu; C-GET into the store <= 2.0x
(getscu + convert).

Usage: ``python bench/bench_retrieve.py [--slices 300] [--size 512] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pydicom

from pacslab.config import Config, Timeouts
from pacslab.ingest import Ingest
from pacslab.pacs import ReceivedInstance, RetrieveMethod, into_ingest
from pacslab.pacs.dicomweb import DicomwebClient
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.orthanc import OrthancServer, free_port
from pacslab.pacs.receiver import Receiver
from pacslab.samples import phantom_ct_datasets
from pacslab.store import SliceStore

OUR_AE = "PACSLAB_BENCH"
Client = DimseClient | DicomwebClient
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
PLAIN_ENV = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (Debian package dcmtk / curl)")
    return path


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def convert_to_hdf5(folder: Path, target: Path) -> None:
    """The user's own script: read every file, sort by position, write one HDF5 volume."""
    datasets = [pydicom.dcmread(p) for p in folder.iterdir()]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    volume = np.stack([d.pixel_array for d in datasets])
    with h5py.File(target, "w") as f:
        f.create_dataset("pixels", data=volume, chunks=(1, *volume.shape[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    getscu, movescu, storescp, storescu, curl = (
        tool(n) for n in ("getscu", "movescu", "storescp", "storescu", "curl")
    )

    work = Path(tempfile.mkdtemp(prefix="pacslab-bench-retrieve-"))
    servers: list[OrthancServer] = []
    scp: subprocess.Popen[bytes] | None = None
    receiver: Receiver | None = None
    try:
        source = fresh(work / "source")
        datasets = list(phantom_ct_datasets(args.slices, args.size))
        for i, ds in enumerate(datasets):
            ds.save_as(source / f"{i:04d}.dcm", enforce_file_format=True)
        study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
        n = len(datasets)
        del datasets

        fast = OrthancServer(work / "orthanc-nodelay", tcp_nodelay=True).start()
        servers.append(fast)
        slow = OrthancServer(work / "orthanc-delayed-ack", tcp_nodelay=False).start()
        servers.append(slow)
        for server in (fast, slow):
            subprocess.run(
                [storescu, "+sd", "-aec", server.ae_title, server.host, str(server.dicom_port), str(source)],
                check=True,
                env=DCMTK_ENV,
                capture_output=True,
            )

        receiver_port = free_port()
        config = Config(
            ae_title=OUR_AE,
            receiver_port=receiver_port,
            nodes=(fast.node, fast.web_node),
            default_node=fast.node.name,
            timeouts=Timeouts(connection=5, acse=10, dimse=60, network=60),
        )
        receiver = Receiver(config, port=receiver_port).start()
        scp_port = free_port()
        scp_dir = fresh(work / "storescp")
        scp = subprocess.Popen(
            [storescp, "-aet", "STORESCP", "-od", str(scp_dir), str(scp_port)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for server in (fast, slow):
            server.add_modality(OUR_AE, "127.0.0.1", receiver_port)
            server.add_modality("STORESCP", "127.0.0.1", scp_port)
        clients = {server: DimseClient(server.node, config, receiver=receiver) for server in (fast, slow)}
        no_nodelay = {
            server: DimseClient(server.node, config, receiver=receiver, tcp_nodelay=False)
            for server in (fast, slow)
        }
        web = DicomwebClient(fast.web_node, config)
        wado_url = f"{fast.dicomweb_url}/studies/{study}/series/{series}"

        def dcmtk_get(server: OrthancServer, env: dict[str, str]) -> Callable[[], object]:
            out = work / "getscu"

            def run() -> None:
                fresh(out)
                subprocess.run(
                    [getscu, "-S", "-aec", server.ae_title, "-k", "QueryRetrieveLevel=SERIES",
                     "-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}",
                     "-od", str(out), server.host, str(server.dicom_port)],
                    check=True, env=env, capture_output=True,
                )  # fmt: skip

            return run

        def dcmtk_get_convert() -> None:
            dcmtk_get(fast, DCMTK_ENV)()
            convert_to_hdf5(work / "getscu", work / "volume.h5")

        def dcmtk_move() -> None:
            fresh(scp_dir)
            subprocess.run(
                [movescu, "-S", "-aec", fast.ae_title, "-aem", "STORESCP", "-k", "QueryRetrieveLevel=SERIES",
                 "-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}",
                 fast.host, str(fast.dicom_port)],
                check=True, env=DCMTK_ENV, capture_output=True,
            )  # fmt: skip

        def curl_wado() -> None:
            subprocess.run(
                [curl, "-sf", "-o", os.devnull, "-H",
                 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*', wado_url],
                check=True,
            )  # fmt: skip

        def discard(instance: ReceivedInstance) -> None:
            pass

        def ours_discard(client: Client, method: RetrieveMethod) -> Callable[[], object]:
            return lambda: client.retrieve_series(study, series, on_instance=discard, method=method)

        def ours_store(client: Client, method: RetrieveMethod) -> Callable[[], object]:
            def run() -> None:
                store = SliceStore(fresh(work / "store"))
                # As retrieve_into_store does: the PACS keeps its copy, so no fsync per instance.
                with Ingest(store, durable=False) as ingest:
                    sink = into_ingest(ingest)
                    result = client.retrieve_series(study, series, on_instance=sink, method=method)
                assert result.received == n
                assert ingest.report is not None
                assert ingest.report.n_instances == n

            return run

        cases: list[tuple[str, Callable[[], object]]] = [
            ("getscu -> folder (anchor)", dcmtk_get(fast, DCMTK_ENV)),
            ("getscu -> folder + convert to HDF5", dcmtk_get_convert),
            ("movescu -> storescp", dcmtk_move),
            ("curl WADO-RS series (floor)", curl_wado),
            ("pacslab WADO-RS -> discard", ours_discard(web, "wado")),
            ("pacslab WADO-RS -> store", ours_store(web, "wado")),
            ("pacslab C-GET -> discard", ours_discard(clients[fast], "c-get")),
            ("pacslab C-GET -> store", ours_store(clients[fast], "c-get")),
            ("pacslab C-MOVE -> store", ours_store(clients[fast], "c-move")),
            ("peer without TCP_NODELAY: getscu (no TCP_NODELAY)", dcmtk_get(slow, PLAIN_ENV)),
            ("peer without TCP_NODELAY: getscu (TCP_NODELAY=1)", dcmtk_get(slow, DCMTK_ENV)),
            ("peer without TCP_NODELAY: pacslab C-GET -> discard", ours_discard(clients[slow], "c-get")),
            ("peer without TCP_NODELAY: pacslab C-GET -> store", ours_store(clients[slow], "c-get")),
            ("pacslab without TCP_NODELAY: C-GET -> discard", ours_discard(no_nodelay[fast], "c-get")),
            ("both without TCP_NODELAY: pacslab C-GET -> discard", ours_discard(no_nodelay[slow], "c-get")),
        ]
        times: dict[str, list[float]] = {name: [] for name, _ in cases}
        for attempt in range(args.repeat):
            # Rotate the order so no case always runs first on a cold (or warm) machine.
            shift = attempt % len(cases)
            for name, action in cases[shift:] + cases[:shift]:
                times[name].append(timed(action))

        anchor = statistics.median(times[cases[0][0]])
        convert = statistics.median(times["getscu -> folder + convert to HDF5"])
        load = os.getloadavg()[0]
        print(f"retrieve of {n} CT slices {args.size}x{args.size} from Orthanc 1.10 on loopback, "
              f"median of {args.repeat} (load average {load:.1f}, {os.cpu_count()} cores)")  # fmt: skip
        print(f"{'case':56s} {'seconds':>8s} {'slices/s':>9s} {'x getscu':>9s}")
        for name, _ in cases:
            seconds = statistics.median(times[name])
            print(f"{name:56s} {seconds:8.3f} {n / seconds:9.0f} {seconds / anchor:9.2f}")
        wado = statistics.median(times["pacslab WADO-RS -> store"])
        cget = statistics.median(times["pacslab C-GET -> store"])
        print(f"target WADO-RS -> store <= 1.3x getscu: {wado / anchor:.2f}x")
        print(f"target C-GET -> store <= getscu + convert ({convert / anchor:.2f}x): {cget / anchor:.2f}x")
    finally:
        if receiver is not None:
            receiver.stop()
        if scp is not None:
            scp.terminate()
            scp.wait()
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
