"""Two ingests at once (threads and processes) lose nothing; readers never see a torn slice."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pacslab.ingest import IngestReport, ingest_paths
from pacslab.store import SliceStore
from tests.ingest.dicom_files import write_ct, write_datasets
from tests.store.worker import Worker

pytestmark = pytest.mark.timeout(240)


def two_uploads(tmp_path: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Halves of one CT series, plus a second series each upload carries alone."""
    from pacslab.samples import mr_phantom_datasets

    ct = write_ct(tmp_path / "ct", n=12, size=32)
    mr = write_datasets(tmp_path / "mr", list(mr_phantom_datasets(3, 16)))
    return ct, ct[0::2] + mr[:2], ct[1::2] + mr[2:]


def check_everything_stored(store: SliceStore, ct: list[Path], n_mr: int) -> None:
    ct_uid = pydicom.dcmread(ct[0]).SeriesInstanceUID
    info = store.series(ct_uid)
    assert info.complete
    assert info.n_slices == len(ct)
    np.testing.assert_array_equal(
        store.read_slices(ct_uid), np.stack([pydicom.dcmread(f).pixel_array for f in ct])
    )
    mr = [s for s in store.list_series() if s.modality == "MR"]
    assert len(mr) == 1
    assert mr[0].n_slices * len(mr[0].channels) == n_mr


def test_two_threads(store: SliceStore, tmp_path: Path) -> None:
    ct, first, second = two_uploads(tmp_path)
    barrier = threading.Barrier(2, timeout=60)
    reports: list[IngestReport] = []
    errors: list[BaseException] = []

    def upload(files: list[Path]) -> None:
        try:
            barrier.wait()
            reports.append(ingest_paths(SliceStore(store.root), files))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=upload, args=(files,)) for files in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sum(r.n_instances for r in reports) == len(first) + len(second)
    check_everything_stored(store, ct, 6)


def test_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    SliceStore(root)
    ct, first, second = two_uploads(tmp_path)
    with Worker(root, first, "--wait") as one, Worker(root, second, "--wait") as two:
        one.expect("ready")
        two.expect("ready")
        one.send()
        two.send()
        assert one.finish() == f"done {len(first)}"
        assert two.finish() == f"done {len(second)}"
    check_everything_stored(SliceStore(root), ct, 6)


def test_reader_during_writes_sees_whole_slices(
    store: SliceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_ct(tmp_path / "ct", n=16, size=32)
    digests = {hashlib.sha256(pydicom.dcmread(f).pixel_array.tobytes()).hexdigest() for f in files}
    uid = ingest_paths(store, files[:2]).series_uids[0]
    writing_done = threading.Event()
    reads, problems = 0, []

    def reader() -> None:
        nonlocal reads
        viewer = SliceStore(store.root)
        while not writing_done.is_set():
            try:
                n = viewer.series(uid).n_slices
                for i in range(n):
                    digest = hashlib.sha256(viewer.read_slice(uid, i).tobytes()).hexdigest()
                    if digest not in digests:
                        problems.append(f"torn or unknown slice {i}")
                    reads += 1
            except Exception as error:  # any reader error is a failure of the store
                problems.append(repr(error))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k in range(3, len(files) + 1):
            ingest_paths(store, files[:k])  # the series grows one slice per version
    finally:
        writing_done.set()
        thread.join(timeout=60)
    assert problems == []
    assert reads > 0
    assert store.series(uid).n_slices == 16
    with capsys.disabled():
        print(f"\nreader during 14 new versions: {reads} slice reads, 0 errors, 0 torn slices")


def test_reader_process_during_writer_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A viewer process reads while another process writes new versions of the series."""
    import subprocess
    import sys

    from tests.store.worker import ROOT

    root = tmp_path / "store"
    files = write_ct(tmp_path / "ct", n=12, size=32)
    digests = tmp_path / "digests.txt"
    digests.write_text(
        "\n".join(hashlib.sha256(pydicom.dcmread(f).pixel_array.tobytes()).hexdigest() for f in files)
    )
    uid = ingest_paths(SliceStore(root), files[:2]).series_uids[0]
    with subprocess.Popen(
        [sys.executable, "-m", "tests.store.read_worker", str(root), uid, str(digests)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as reader:
        assert reader.stdout is not None
        assert reader.stdin is not None
        assert reader.stdout.readline().strip() == "reading"
        for k in (6, len(files)):
            with Worker(root, files[:k]) as writer:
                assert writer.finish() == f"done {k}"
        out, _ = reader.communicate("stop\n", timeout=120)
    lines = out.splitlines()
    reads, problems = int(lines[0].split()[1]), int(lines[0].split()[3])
    assert problems == 0, lines[1:]
    assert reads > 0
    assert SliceStore(root).series(uid).n_slices == 12
    with capsys.disabled():
        print(f"\nreader process during 2 writer processes: {reads} slice reads, 0 errors, 0 torn slices")
