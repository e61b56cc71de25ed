"""Every pydicom test file with pixel data: stored with pydicom's pixels, or refused by name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pacslab.ingest import IngestError, ingest_paths
from pacslab.ingest.pydicom_guard import quiet_pydicom
from pacslab.store import SliceStore

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _has_pixels(path: Path) -> bool:
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=False)
    except Exception:  # unreadable files are checked by the refusal path below
        return True
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


CORPUS = sorted(p for p in TEST_FILES.glob("*.dcm") if _has_pixels(p))


def _reference(path: Path) -> np.ndarray | None:
    try:
        with quiet_pydicom():
            return np.asarray(pydicom.dcmread(path).pixel_array)
    except Exception:  # pydicom cannot decode it: the ingest must refuse it
        return None


def test_corpus_is_the_compressed_and_odd_files() -> None:
    names = {p.name for p in CORPUS}
    assert {"JPEG2000.dcm", "MR_small_RLE.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_jpeg_dcmtk.dcm"} <= names
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_stored_like_pydicom_or_refused(path: Path, tmp_path: Path) -> None:
    store = SliceStore(tmp_path / "store")
    report = ingest_paths(store, [path])
    if report.rejected:
        assert len(report.rejected) == 1
        assert isinstance(report.rejected[0].error, IngestError)
        assert store.list_series() == []
        return
    expected = _reference(path)
    assert expected is not None, "stored although pydicom cannot decode it"
    uid = report.series_uids[0]
    info = store.series(uid)
    records = store.instances(uid)
    with quiet_pydicom():
        n_frames = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
    assert info.n_slices == n_frames
    for record in records:
        plane = store.read_plane(uid, record.slice_index)
        frame = expected if n_frames == 1 else expected[record.frame - 1]
        assert plane.shape == frame.shape
        assert plane.dtype == frame.dtype.newbyteorder("=")  # same values, stored in native byte order
        np.testing.assert_array_equal(plane, frame)


def test_corpus_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Print how the corpus fared (one store per file: several files share UIDs)."""
    outcome: Counter[str] = Counter()
    for i, path in enumerate(CORPUS):
        report = ingest_paths(SliceStore(tmp_path / f"s{i}"), [path])
        outcome.update(type(r.error).__name__ for r in report.rejected)
        outcome["stored"] += report.n_instances
    with capsys.disabled():
        print(f"\npydicom corpus ({len(CORPUS)} files with pixel data): {dict(sorted(outcome.items()))}")
    assert sum(outcome.values()) == len(CORPUS)
