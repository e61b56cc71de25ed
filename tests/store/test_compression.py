"""Series files hold Blosc-compressed slices that read back bit-exactly, and format 1 still reads."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from pacslab.ingest import ingest_paths
from pacslab.store import FORMAT_VERSION, SeriesFileError, SliceStore, read_series_slices
from tests.ingest.dicom_files import ct_datasets, write_ct, write_datasets, write_mr


def _pixels(files: list[Path]) -> np.ndarray:
    return np.stack([pydicom.dcmread(f).pixel_array for f in files])


def _with_pixels(n: int, size: int, values: np.ndarray, signed: bool) -> list[pydicom.Dataset]:
    """The CT phantom's headers with other pixel values: int16 when ``signed``, else uint16."""
    datasets = ct_datasets(n, size)
    for ds, plane in zip(datasets, values, strict=True):
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = plane.astype("<i2" if signed else "<u2").tobytes()
    return datasets


def test_file_records_format_and_filter(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct", n=4, size=128)
    uid = ingest_paths(store, files).series_uids[0]
    path = store.series_path(uid)
    assert FORMAT_VERSION == 2
    assert store.series(uid).format_version == 2
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2
        assert f.attrs["pixel_compression"] == "blosc:lz4:shuffle"
        pixels = f["pixels"]
        plist = pixels.id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [hdf5plugin.BLOSC_ID]
        assert pixels.chunks == (1, 128, 128)
        raw = 128 * 128 * 2
        sizes = [pixels.id.get_chunk_info(k).size for k in range(4)]
        assert all(size < raw * 0.7 for size in sizes), sizes
        # What the README tells other readers: h5py with hdf5plugin imported reads the pixels.
        np.testing.assert_array_equal(pixels[()], _pixels(files))


@pytest.mark.parametrize("signed", [True, False], ids=["int16", "uint16"])
def test_round_trip_is_bit_exact(store: SliceStore, tmp_path: Path, signed: bool) -> None:
    rng = np.random.default_rng(4)
    low, high = (-32768, 32767) if signed else (0, 65535)
    values = np.empty((3, 64, 64), dtype=np.int64)
    values[0] = rng.integers(low, high, size=(64, 64), endpoint=True)  # noise: Blosc cannot shrink it
    values[1] = np.linspace(low, high, 64 * 64).round().reshape(64, 64)  # both extremes, smooth
    values[2] = np.where(np.arange(64 * 64).reshape(64, 64) % 3, low, high)  # only the extremes
    files = write_datasets(tmp_path / "ct", _with_pixels(3, 64, values, signed))
    uid = ingest_paths(store, files).series_uids[0]
    expected = _pixels(files)
    assert expected.dtype == (np.int16 if signed else np.uint16)
    assert expected.min() == low
    assert expected.max() == high
    stored = store.read_slices(uid)
    assert stored.dtype == expected.dtype
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(read_series_slices(store.series_path(uid), [2, 0, 1]), expected[[2, 0, 1]])


def test_multichannel_planes_round_trip(store: SliceStore, tmp_path: Path) -> None:
    files = write_mr(tmp_path / "mr", n=3, size=32)
    uid = ingest_paths(store, files).series_uids[0]
    info = store.series(uid)
    by_uid = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).pixel_array for f in files}
    for record in store.instances(uid):
        np.testing.assert_array_equal(
            store.read_slice(uid, record.slice_index, channel=record.channel), by_uid[record.sop_instance_uid]
        )
    with h5py.File(store.series_path(uid), "r") as f:
        assert f["pixels"].shape == (3, 32, 32, len(info.channels))
        assert f.attrs["pixel_compression"] == "blosc:lz4:shuffle"


def _rewrite_as_format_1(path: Path) -> None:
    """What earlier versions wrote: the same layout, pixels uncompressed, format_version 1."""
    old = path.with_name(path.name + ".v2")
    path.rename(old)
    with h5py.File(old, "r") as src, h5py.File(path, "w", libver="latest") as dst:
        for name, item in src.items():
            if name != "pixels":
                src.copy(item, dst, name)
        pixels = src["pixels"]
        plane = pixels.shape[1:]
        out = dst.create_dataset(
            "pixels", shape=pixels.shape, dtype=pixels.dtype, chunks=(1, *plane), fillvalue=0
        )
        for k in range(pixels.shape[0]):
            out.id.write_direct_chunk((k,) + (0,) * len(plane), np.ascontiguousarray(pixels[k]))
        for key, value in src.attrs.items():
            if key != "pixel_compression":
                dst.attrs[key] = value
        dst.attrs["format_version"] = 1
    old.unlink()


def test_format_1_files_still_read(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ct_files = write_ct(tmp_path / "ct", n=5, size=64)
    mr_files = write_mr(tmp_path / "mr", n=2, size=16)
    store = SliceStore(root)
    ct_uid = ingest_paths(store, ct_files).series_uids[0]
    mr_uid = ingest_paths(store, mr_files).series_uids[0]
    paths = [store.series_path(ct_uid), store.series_path(mr_uid)]
    store.close()
    for path in paths:
        _rewrite_as_format_1(path)
        with h5py.File(path, "r") as f:
            assert f.attrs["format_version"] == 1
            assert f["pixels"].id.get_create_plist().get_nfilters() == 0

    store = SliceStore(root)
    expected = _pixels(ct_files)
    np.testing.assert_array_equal(store.read_slices(ct_uid), expected)
    np.testing.assert_array_equal(read_series_slices(paths[0], [4, 0]), expected[[4, 0]])
    mr_pixels = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).pixel_array for f in mr_files}
    channels = json.loads(h5py.File(paths[1], "r").attrs["channels"])
    assert len(channels) == 2
    for record in store.instances(mr_uid):
        np.testing.assert_array_equal(
            store.read_slice(mr_uid, record.slice_index, channel=record.channel),
            mr_pixels[record.sop_instance_uid],
        )

    # A new instance of the format 1 series gives a format 2 version holding old and new slices.
    extra = ct_datasets(5, 64)[4]
    extra.SOPInstanceUID = extra.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    extra.ImagePositionPatient[2] += float(extra.SliceThickness)
    extra.InstanceNumber = 6
    more = write_datasets(tmp_path / "more", [extra])
    ingest_paths(store, more)
    assert store.series(ct_uid).format_version == 2
    np.testing.assert_array_equal(store.read_slices(ct_uid), _pixels([*ct_files, *more]))
    store.close()


def test_damaged_chunk_is_a_named_error(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct", n=3, size=64)
    uid = ingest_paths(store, files).series_uids[0]
    path = store.series_path(uid)
    store.close()
    with h5py.File(path, "r+") as f:
        pixels = f["pixels"]
        _, chunk = pixels.id.read_direct_chunk((1, 0, 0))
        pixels.id.write_direct_chunk((1, 0, 0), chunk[: len(chunk) // 2])
    reopened = SliceStore(store.root)
    np.testing.assert_array_equal(reopened.read_slice(uid, 0), pydicom.dcmread(files[0]).pixel_array)
    with pytest.raises(SeriesFileError, match=r"slice 1 of .* is damaged.*ingest the series again"):
        reopened.read_slice(uid, 1)
    reopened.close()
