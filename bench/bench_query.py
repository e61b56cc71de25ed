"""Study-level query latency and throughput against Orthanc, with DCMTK's findscu in the same run.

Prints milliseconds and ratios (no asserts):

* a one-hit C-FIND, association included, and on an association kept open;
* the same against an Orthanc started without ``TCP_NODELAY`` (delayed ACKs), and with
  TCP_NODELAY off on our side too;
* 2,000 matches in one query, against ``findscu`` asking for the same attributes;
* QIDO-RS for the same one-hit and 2,000-match queries.

Targets (issue 3): one hit <= 25 ms with association, <= 10 ms on an open association (Orthanc's
own floor is about 7 ms); 2,000 matches <= 1.5x findscu.

Usage: ``python bench/bench_query.py [--studies 2000] [--repeat 30]``
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

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from pacslab.config import Config, Timeouts
from pacslab.pacs.dicomweb import DicomwebClient
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.orthanc import OrthancServer
from pacslab.pacs.query import find_identifier, make_filters

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (Debian package dcmtk)")
    return path


def write_studies(folder: Path, count: int) -> list[str]:
    """``count`` one-instance studies of tiny secondary captures; returns their Study UIDs."""
    uids = []
    pixels = np.zeros((8, 8), dtype=np.uint8).tobytes()
    for i in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientName = f"Bench^Query{i:05d}"
        ds.PatientID = f"BQ{i:05d}"
        ds.StudyDate = f"2024{1 + i % 12:02d}{1 + i % 28:02d}"
        ds.AccessionNumber = f"BQACC{i:05d}"
        ds.StudyDescription = "query benchmark"
        ds.Modality = "OT"
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels
        ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)
        uids.append(str(ds.StudyInstanceUID))
    return uids


def times_ms(action: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    findscu, storescu = tool("findscu"), tool("storescu")

    work = Path(tempfile.mkdtemp(prefix="pacslab-bench-query-"))
    servers: list[OrthancServer] = []
    try:
        folder = work / "studies"
        folder.mkdir()
        study_uids = write_studies(folder, args.studies)
        fast = OrthancServer(work / "orthanc-nodelay", tcp_nodelay=True).start()
        servers.append(fast)
        slow = OrthancServer(work / "orthanc-delayed-ack", tcp_nodelay=False).start()
        servers.append(slow)
        for server in servers:
            subprocess.run(
                [storescu, "+sd", "-aec", server.ae_title, server.host, str(server.dicom_port), str(folder)],
                check=True,
                env=DCMTK_ENV,
                capture_output=True,
            )
        config = Config(
            ae_title="PACSLAB_BENCH",
            nodes=(fast.node,),
            default_node=fast.node.name,
            timeouts=Timeouts(connection=5, acse=10, dimse=60, network=60),
        )
        hit = study_uids[len(study_uids) // 2]
        rows: list[tuple[str, list[float]]] = []

        def one_hit(c: DimseClient | DicomwebClient) -> Callable[[], object]:
            return lambda: c.find_studies(study_uid=hit)

        variants = (
            ("", fast, True),
            ("peer without TCP_NODELAY: ", slow, True),
            ("both without TCP_NODELAY: ", slow, False),
        )
        for label, server, nodelay in variants:
            client = DimseClient(server.node, config, tcp_nodelay=nodelay)
            fresh_each_time = times_ms(one_hit(client), args.repeat)
            rows.append((f"{label}C-FIND one hit, association included", fresh_each_time))
            with DimseClient(server.node, config, tcp_nodelay=nodelay) as kept:
                kept.echo()
                reused = times_ms(one_hit(kept), args.repeat)
            rows.append((f"{label}C-FIND one hit, open association", reused))

        def findscu_query(*keys: str) -> Callable[[], object]:
            command = [findscu, "-S", "-aec", fast.ae_title, "-k", "QueryRetrieveLevel=STUDY"]
            for key in keys:
                command += ["-k", key]
            command += [fast.host, str(fast.dicom_port)]
            return lambda: subprocess.run(command, check=True, env=DCMTK_ENV, capture_output=True)

        rows.append(
            ("findscu one hit (process start included)",
             times_ms(findscu_query(f"StudyInstanceUID={hit}", "PatientName"), max(5, args.repeat // 3)))
        )  # fmt: skip
        web = DicomwebClient(fast.web_node, config)
        rows.append(("QIDO-RS one hit", times_ms(one_hit(web), args.repeat)))

        many = 3
        # findscu asks for the same attributes our study query asks for (the counts and
        # modalities cost Orthanc time too).
        ours = find_identifier("STUDY", make_filters(patient_name="Bench^*"), modalities_in_study=True)
        keys = tuple(
            f"{elem.keyword}={elem.value}" if elem.value else elem.keyword
            for elem in ours
            if elem.keyword != "QueryRetrieveLevel"
        )
        client = DimseClient(fast.node, config)
        table = client.find_studies(patient_name="Bench^*")
        assert len(table) == args.studies, f"expected {args.studies} matches, got {len(table)}"
        rows.append(
            (
                f"C-FIND {args.studies} matches",
                times_ms(lambda: client.find_studies(patient_name="Bench^*"), many),
            )
        )
        rows.append((f"findscu {args.studies} matches", times_ms(findscu_query(*keys), many)))
        rows.append(
            (
                f"QIDO-RS {args.studies} matches",
                times_ms(lambda: web.find_studies(patient_name="Bench^*"), many),
            )
        )

        load = os.getloadavg()[0]
        print(f"Orthanc 1.10 on loopback holding {args.studies} studies (load average {load:.1f}, "
              f"{os.cpu_count()} cores); milliseconds")  # fmt: skip
        print(f"{'case':64s} {'median':>8s} {'p90':>8s}")
        medians = {}
        for name, values in rows:
            medians[name] = statistics.median(values)
            p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 2 else max(values)
            print(f"{name:64s} {medians[name]:8.1f} {p90:8.1f}")
        one = medians["C-FIND one hit, association included"]
        kept_ms = medians["C-FIND one hit, open association"]
        ratio = medians[f"C-FIND {args.studies} matches"] / medians[f"findscu {args.studies} matches"]
        print(f"target one hit with association <= 25 ms: {one:.1f} ms")
        print(f"target one hit on an open association <= 10 ms: {kept_ms:.1f} ms")
        print(f"target {args.studies} matches <= 1.5x findscu: {ratio:.2f}x")
        slow_one = medians["peer without TCP_NODELAY: C-FIND one hit, association included"]
        print(f"peer without TCP_NODELAY / with: {slow_one / one:.1f}x (one hit, association included)")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
