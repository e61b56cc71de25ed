"""A full disk gives StoreFull, leaves earlier data readable and no half-written file."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pacslab.ingest import ingest_paths
from pacslab.store import SliceStore, StoreFull
from tests.ingest.dicom_files import write_ct, write_datasets
from tests.store.worker import Worker

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root and mount rights, else the test is skipped)."""
    mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def mr_series(folder: Path) -> list[Path]:
    from pacslab.samples import mr_phantom_datasets

    return write_datasets(folder, list(mr_phantom_datasets(2, 16)))


def assert_intact(root: Path, files: list[Path]) -> None:
    store = SliceStore(root)
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    assert [s.series_uid for s in store.list_series()] == [uid]
    assert store.series(uid).complete
    for record in store.instances(uid):
        ds = next(
            pydicom.dcmread(f) for f in files if pydicom.dcmread(f).SOPInstanceUID == record.sop_instance_uid
        )
        np.testing.assert_array_equal(
            store.read_slice(uid, record.slice_index, channel=record.channel), ds.pixel_array
        )
    assert not list((root / "series").rglob("*.tmp"))


def test_full_tmpfs(small_disk: Path, tmp_path: Path) -> None:
    root = small_disk / "store"
    store = SliceStore(root)
    first = mr_series(tmp_path / "mr")
    ingest_paths(store, first)
    big = write_ct(tmp_path / "ct", n=40, size=256)  # 5 MiB of pixels, more than the disk holds
    with pytest.raises(StoreFull, match="free space"):
        ingest_paths(store, big)
    assert_intact(root, first)


def test_file_size_limit_hits_mid_write(tmp_path: Path) -> None:
    """The write itself fails (EFBIG from RLIMIT_FSIZE, as a full disk would) in a real process."""
    root = tmp_path / "store"
    first = mr_series(tmp_path / "mr")
    ingest_paths(SliceStore(root), first)
    # 3 MiB of pixels: about 1.5 MiB compressed, still well past the 512 KiB limit.
    big = write_ct(tmp_path / "ct", n=24, size=256)
    with Worker(root, big, "--fsize", str(512 * 1024)) as worker:
        result = worker.finish()
    assert result.startswith("error StoreFull"), result
    assert_intact(root, first)
    report = ingest_paths(SliceStore(root), big)  # with room again, the same ingest succeeds
    assert report.n_instances == 24
