"""Small DICOM images and hostile files built byte by byte for the reliability tests."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

__all__ = [
    "deeply_nested_file",
    "deflate_bomb",
    "encode",
    "huge_dimensions_file",
    "image",
    "series",
]

PREFIX = "1.2.826.0.1.3680043.10.1338."


def image(
    rows: int = 16,
    cols: int = 16,
    *,
    series_uid: str = "",
    study_uid: str = "",
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    number: int = 1,
    pixels: np.ndarray | None = None,
    signed: bool = True,
) -> Dataset:
    """A small CT slice (16-bit, signed by default) with geometry and a known pixel pattern."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(PREFIX)
    ds.StudyInstanceUID = study_uid or PREFIX + "1"
    ds.SeriesInstanceUID = series_uid or generate_uid(PREFIX)
    ds.PatientID = "RELIABILITY-1"
    ds.PatientName = "Test^Reliability"
    ds.Modality = "CT"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    if pixels is None:
        base = np.arange(rows * cols, dtype=np.int32).reshape(rows, cols) * 7 - 1000 * (number % 3)
        pixels = base.astype(np.int16 if signed else np.uint16)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def series(n: int, *, spacing: float = 1.0, rows: int = 16, cols: int = 16) -> list[Dataset]:
    """``n`` slices of one series stacked along z at ``spacing`` mm."""
    uid = generate_uid(PREFIX)
    return [
        image(rows, cols, series_uid=uid, position=(0.0, 0.0, i * spacing), number=i + 1) for i in range(n)
    ]


def _meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(ds.get("SOPClassUID", CTImageStorage)))
    meta.MediaStorageSOPInstanceUID = UID(str(ds.get("SOPInstanceUID", generate_uid(PREFIX))))
    meta.TransferSyntaxUID = UID(transfer_syntax)
    return meta


def _head(meta: FileMetaDataset) -> bytes:
    out = pydicom.filebase.DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue()


def _body(ds: Dataset, implicit: bool = False) -> bytes:
    out = pydicom.filebase.DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


def encode(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as a Part 10 file (explicit VR little endian unless told otherwise).

    Any transfer syntax UID may be named, also one pydicom does not know: the dataset is
    then encoded explicit VR little endian, as every compressed syntax is.
    """
    syntax = UID(transfer_syntax)
    if syntax.is_transfer_syntax and not syntax.is_deflated:
        buffer = io.BytesIO()
        ds = ds.copy()
        ds.file_meta = _meta(ds, transfer_syntax)
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()
    ds = ds.copy()
    if "PixelData" in ds and ds.PixelData[:4] == b"\xfe\xff\x00\xe0":
        ds["PixelData"].is_undefined_length = True
    return _head(_meta(ds, transfer_syntax)) + _body(ds)


def deflate_bomb(inflated_bytes: int = 1 << 30) -> bytes:
    """A deflated-transfer-syntax file whose dataset inflates to ``inflated_bytes`` and more.

    A real header, then one OB element of zeros declaring the rest. Built from one
    compressed MiB repeated after full flushes, so it takes no time to make (about 1 KiB per
    inflated MiB).
    """
    ds = image(8, 8)
    del ds.PixelData
    chunk = 1 << 20
    n_chunks = max(1, inflated_bytes // chunk)
    header = _body(ds) + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, n_chunks * chunk)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = packer.compress(header) + packer.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor starts afresh, so one compressed chunk repeats.
    block = packer.compress(b"\0" * chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush(zlib.Z_FINISH)
    return _head(_meta(ds, DeflatedExplicitVRLittleEndian)) + head + block * n_chunks + tail


def huge_dimensions_file(frames: int = 1000) -> bytes:
    """A header declaring 65535 x 65535 pixels x ``frames`` frames, with a few bytes of pixel data."""
    ds = image(2, 2)
    ds.Rows, ds.Columns = 65535, 65535
    ds.NumberOfFrames = frames
    return encode(ds)


def deeply_nested_file(depth: int = 20000) -> bytes:
    """An image whose header holds a sequence nested ``depth`` levels deep (undefined lengths)."""
    ds = image(4, 4)
    pixel = ds.PixelData
    del ds.PixelData
    # (0040,0275) Request Attributes Sequence, each item holding the next one.
    sq = struct.pack("<HH2sHL", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    sq_end = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    nested = (sq + item) * depth + (item_end + sq_end) * depth
    body = _body(ds)
    pixel_element = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, len(pixel)) + pixel
    # Elements are in tag order: the sequence (0040,...) goes before (7FE0,0010).
    return _head(_meta(ds, ExplicitVRLittleEndian)) + body + nested + pixel_element
