"""A writer killed with SIGKILL: the store opens, complete series stay, the ingest can be rerun."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pacslab.ingest import ingest_paths, recover_inbox
from pacslab.store import SeriesFileError, SliceStore
from tests.ingest.dicom_files import write_ct, write_datasets
from tests.store.worker import Worker

pytestmark = pytest.mark.timeout(240)


def expected_pixels(files: list[Path]) -> np.ndarray:
    return np.stack([pydicom.dcmread(f).pixel_array for f in files])


def other_series(folder: Path) -> list[Path]:
    """A second, complete series in another study."""
    from pacslab.samples import mr_phantom_datasets

    return write_datasets(folder, list(mr_phantom_datasets(2, 16)))


def test_killed_mid_write_of_a_new_series(tmp_path: Path) -> None:
    root = tmp_path / "store"
    done_files = other_series(tmp_path / "mr")
    done_uid = ingest_paths(SliceStore(root), done_files).series_uids[0]
    files = write_ct(tmp_path / "ct", n=12, size=64)

    with Worker(root, files, "--block-at", "5") as worker:
        worker.expect("blocked")
        assert worker.kill()

    store = SliceStore(root)
    listed = {s.series_uid: s for s in store.list_series()}
    assert listed[done_uid].complete
    assert store.read_slices(done_uid).shape[0] == 2
    ct_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    assert not listed[ct_uid].complete, "the interrupted series is marked incomplete"
    with pytest.raises(SeriesFileError, match="ingest the series again"):
        store.read_slice(ct_uid, 0)
    assert list((root / "series").rglob("*.tmp")), "the dead writer's temporary file is left..."
    store.prune()
    assert not list((root / "series").rglob("*.tmp")), "...and removed by prune"

    report = ingest_paths(store, files)
    assert report.n_instances == 12
    assert store.series(ct_uid).complete
    np.testing.assert_array_equal(store.read_slices(ct_uid), expected_pixels(files))


def test_killed_while_extending_keeps_the_previous_version_readable(tmp_path: Path) -> None:
    root = tmp_path / "store"
    files = write_ct(tmp_path / "ct", n=10, size=64)
    store = SliceStore(root)
    uid = ingest_paths(store, files[:4]).series_uids[0]

    with Worker(root, files, "--block-at", "7") as worker:
        worker.expect("blocked")
        assert worker.kill()

    reopened = SliceStore(root)
    info = reopened.series(uid)
    assert not info.complete
    assert info.n_slices == 4, "the catalog still describes the previous version"
    np.testing.assert_array_equal(reopened.read_slices(uid), expected_pixels(files[:4]))

    ingest_paths(reopened, files)
    info = reopened.series(uid)
    assert info.complete
    assert info.n_slices == 10
    np.testing.assert_array_equal(reopened.read_slices(uid), expected_pixels(files))


def test_killed_after_spooling_uploads_recovers_from_the_inbox(tmp_path: Path) -> None:
    root = tmp_path / "store"
    files = write_ct(tmp_path / "ct", n=4, size=32)
    with Worker(root, files, "--spool") as worker:
        worker.expect("spooled")
        assert worker.kill()
    for f in files:
        f.unlink()  # the uploads exist only in the inbox now

    store = SliceStore(root)
    assert store.list_series() == []
    report = recover_inbox(store)
    assert report.n_instances == 4
    assert store.series(report.series_uids[0]).n_slices == 4
    assert not any(store.inbox_dir.iterdir())
    assert recover_inbox(store).n_instances == 0


def test_killed_at_random_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL after a random number of progress events; every trial leaves a usable store."""
    root = tmp_path / "store"
    series = [write_ct(tmp_path / f"ct{k}", n=6, size=32) for k in range(2)]
    for k, files in enumerate(series):
        for f in files:  # give the second set its own series and study
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID[:-1]}{k + 1}"
            ds.save_as(f)
    all_files = [f for files in series for f in files]
    expected = {pydicom.dcmread(files[0]).SeriesInstanceUID: expected_pixels(files) for files in series}
    rng = random.Random(11)
    trials = 6
    killed = 0
    for _ in range(trials):
        with Worker(root, all_files, "--progress") as worker:
            # 12 "reading" then 12 "writing" events: kill after a random number of them.
            if worker.read_lines(rng.randint(1, 24)) and worker.kill():
                killed += 1
        store = SliceStore(root)
        for info in store.list_series():
            if info.complete:
                np.testing.assert_array_equal(store.read_slices(info.series_uid), expected[info.series_uid])
        store.close()
    store = SliceStore(root)
    ingest_paths(store, all_files)
    for uid, pixels in expected.items():
        assert store.series(uid).complete
        np.testing.assert_array_equal(store.read_slices(uid), pixels)
    with capsys.disabled():
        print(
            f"\nwriter killed at random points: {killed} of {trials} trials killed, store usable after each"
        )
