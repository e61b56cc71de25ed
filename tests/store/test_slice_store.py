"""SliceStore: reading slices and headers, the catalog, jobs, versions of a series file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest

from pacslab.ingest import ingest_paths
from pacslab.store import (
    FORMAT_VERSION,
    JobNotFound,
    JobRecord,
    SeriesFileError,
    SeriesNotFound,
    SliceIndexError,
    SliceStore,
    read_series_slices,
)
from pacslab.store.catalog import date_range_clause, wildcard_to_like
from tests.ingest.dicom_files import ct_datasets, write_ct, write_datasets, write_mr


@pytest.fixture
def ct(store: SliceStore, tmp_path: Path) -> tuple[str, list[Path]]:
    files = write_ct(tmp_path / "ct")
    return ingest_paths(store, files).series_uids[0], files


def test_store_layout(store: SliceStore) -> None:
    for name in ("catalog.sqlite", "series", "jobs", "inbox"):
        assert (store.root / name).exists()
    assert store.jobs_dir == store.root / "jobs"
    db = sqlite3.connect(store.root / "catalog.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"patients", "studies", "series", "instances", "jobs"} <= tables


def test_series_file_format(store: SliceStore, ct: tuple[str, list[Path]]) -> None:
    uid, files = ct
    path = store.series_path(uid)
    assert path.suffix == ".h5"
    assert uid not in str(path), "file names never come from UIDs"
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["encoding"] == "pacslab.series"
        assert f["pixels"].shape == (8, 64, 64)
        assert f["pixels"].chunks == (1, 64, 64)
        assert f["headers"].shape == (8, 1)
        np.testing.assert_allclose(
            f.attrs["pixel_spacing"], [float(v) for v in pydicom.dcmread(files[0]).PixelSpacing]
        )
    assert store.series(uid).format_version == FORMAT_VERSION


def test_read_slices_and_worker_reads(store: SliceStore, ct: tuple[str, list[Path]]) -> None:
    uid, files = ct
    expected = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    np.testing.assert_array_equal(store.read_slices(uid), expected)
    np.testing.assert_array_equal(store.read_slices(uid, [5, 1]), expected[[5, 1]])
    np.testing.assert_array_equal(read_series_slices(store.series_path(uid), [2, 7]), expected[[2, 7]])
    np.testing.assert_array_equal(store.read_slice(uid, -1), expected[-1])
    out = store.read_slice(uid, 0)
    out[0, 0] = 1  # callers get their own writable array
    assert store.read_slice(uid, 0)[0, 0] == expected[0, 0, 0]


def test_named_errors_for_unknown_series_slice_channel_job(
    store: SliceStore, ct: tuple[str, list[Path]]
) -> None:
    uid, _ = ct
    with pytest.raises(SeriesNotFound, match="list_series"):
        store.series("1.2.3.4")
    with pytest.raises(SeriesNotFound):
        store.read_slice("1.2.3.4", 0)
    with pytest.raises(SliceIndexError, match="outside this series of 8"):
        store.read_slice(uid, 8)
    with pytest.raises(SliceIndexError, match="channel 1"):
        store.read_slice(uid, 0, channel=1)
    with pytest.raises(JobNotFound):
        store.job("nope")


def test_listing_reads_only_the_catalog(store: SliceStore, ct: tuple[str, list[Path]]) -> None:
    uid, _ = ct
    for f in (store.root / "series").rglob("*.h5"):
        f.rename(f.with_suffix(".away"))
    fresh = SliceStore(store.root)
    assert [s.series_uid for s in fresh.list_series()] == [uid]
    assert fresh.list_studies()[0].n_series == 1
    info = fresh.series(uid)
    assert info.n_slices == 8
    assert len(info.sop_instance_uids) == 8
    with pytest.raises(SeriesFileError, match="ingest the series again"):
        fresh.read_slice(uid, 0)


def test_study_search_filters(store: SliceStore, tmp_path: Path) -> None:
    ingest_paths(store, write_ct(tmp_path / "ct") + write_mr(tmp_path / "mr"))
    assert len(store.list_studies()) == 2
    assert [s.modalities for s in store.list_studies(modality="mr")] == [("MR",)]
    assert len(store.list_studies(patient_name="phantom")) == 2
    assert len(store.list_studies(patient_name="Phantom^MR*")) == 1
    assert len(store.list_studies(patient_id="PLAB-CT-*")) == 1
    assert len(store.list_studies(study_date="20240101-20240131")) == 1
    assert len(store.list_studies(study_date="20240201-")) == 1
    assert len(store.list_studies(text="GRE magnitude")) == 1  # a series description
    assert len(store.list_studies(text="PLABACC001")) == 1
    assert store.list_studies(text="no such thing") == []
    ct_study = store.list_studies(modality="CT")[0]
    assert [s.modality for s in store.list_series(ct_study.study_uid)] == ["CT"]


def test_wildcards_and_dates_to_sql() -> None:
    assert wildcard_to_like("AB*C?_%") == "AB%C_\\_\\%"
    assert date_range_clause("d", "20240101") == ("d = ?", ["20240101"])
    assert date_range_clause("d", "20240101-20240131") == ("d >= ? AND d <= ?", ["20240101", "20240131"])
    assert date_range_clause("d", "-2024") == ("d <= ?", ["20249999"])


def test_jobs_are_recorded_and_updated(store: SliceStore) -> None:
    job = JobRecord("j1", "threshold", "1.0", '{"level": 3}', "1.2.3", "jobs/j1.h5", total=8)
    store.record_job(job)
    job.status, job.done = "done", 8
    store.record_job(job)
    assert store.job("j1") == job
    store.record_job(JobRecord("j2", "edges", "1.0", "{}", "1.2.3", "jobs/j2.h5"))
    assert {j.job_id for j in store.list_jobs()} == {"j1", "j2"}


def test_new_version_leaves_the_old_file_for_open_readers(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    uid = ingest_paths(store, files[:4]).series_uids[0]
    old_path = store.series_path(uid)
    first = store.read_slice(uid, 0)

    ingest_paths(store, files)
    new_path = store.series_path(uid)
    assert new_path != old_path
    assert store.series(uid).version == 2
    assert old_path.exists(), "kept for workers that were given the old path"
    np.testing.assert_array_equal(read_series_slices(old_path, [0])[0], first)

    assert store.prune(grace_s=3600) == []
    assert store.prune(grace_s=0) == [old_path]
    assert not old_path.exists()
    assert store.read_slices(uid).shape == (8, 64, 64)


def test_mixed_geometry_is_flagged_in_the_catalog(store: SliceStore, tmp_path: Path) -> None:
    datasets = ct_datasets(6, 16)
    datasets[4].ImagePositionPatient = list(datasets[3].ImagePositionPatient)  # a duplicate position
    del datasets[5]
    report = ingest_paths(store, write_datasets(tmp_path / "ct", datasets))
    info = store.series(report.series_uids[0])
    assert any(w.startswith("duplicate positions") for w in info.geometry_warnings)
    assert report.warnings[info.series_uid] == info.geometry_warnings


def test_colour_images_store_samples_as_channels(store: SliceStore) -> None:
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "SC_rgb_rle.dcm"
    uid = ingest_paths(store, [path]).series_uids[0]
    info = store.series(uid)
    assert info.channels == ("red", "green", "blue")
    rgb = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(store.read_plane(uid, 0), rgb)
    np.testing.assert_array_equal(store.read_slice(uid, 0, channel=2), rgb[..., 2])


def test_header_with_bulk_data_reads_back_without_it(store: SliceStore) -> None:
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "examples_overlay.dcm"
    uid = ingest_paths(store, [path]).series_uids[0]
    header = store.read_header(uid, 0)
    assert header[0x60003000].value is None  # the overlay bits were not stored
    assert header.PatientName == pydicom.dcmread(path).PatientName


def test_delete_series(store: SliceStore, tmp_path: Path) -> None:
    ct_uid = ingest_paths(store, write_ct(tmp_path / "ct")).series_uids[0]
    mr_uid = ingest_paths(store, write_mr(tmp_path / "mr")).series_uids[0]
    path = store.series_path(ct_uid)
    store.delete_series(ct_uid)
    assert [s.series_uid for s in store.list_series()] == [mr_uid]
    assert [s.modalities for s in store.list_studies()] == [("MR",)]
    with pytest.raises(SeriesNotFound):
        store.read_slice(ct_uid, 0)
    with pytest.raises(SeriesNotFound):
        store.delete_series(ct_uid)
    assert path.exists()
    assert ingest_paths(store, write_ct(tmp_path / "again")).n_instances == 8, "it can come back"
    assert store.series_path(ct_uid) != path, "in a new file: the old one may still be read"
    assert store.prune(grace_s=0) == [path]
    assert store.read_slices(ct_uid).shape == (8, 64, 64)
