"""First pass over one file: validate it and describe its planes, without decoding pixels.

Everything a bad file can do wrong is found here, before anything is written: not DICOM, no
preamble, truncated, broken encoding, no pixels, a header that disagrees with the pixel data
length, an unknown transfer syntax or one without a decoder, dimensions above the cap, a
deflate bomb. What passes becomes one :class:`~pacslab.store.SliceSource` per frame.
"""

from __future__ import annotations

import io
import math
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, cast

import pydicom
from pydicom import Dataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacslab.dicom_elements import READ_AHEAD, dataset_of, walk_elements
from pacslab.ingest.errors import (
    DecompressionBomb,
    EmptyFile,
    ImageTooLarge,
    IngestError,
    MalformedDicom,
    MissingPreamble,
    NoPixelData,
    NotDicom,
    PixelDataMismatch,
    TruncatedFile,
    UnreadableFile,
    UnsupportedTransferSyntax,
)
from pacslab.ingest.headers import HeaderJson, HeaderLike, frame_facts, series_meta, text_of
from pacslab.ingest.limits import IngestLimits
from pacslab.ingest.pixels import DecodedFrames, NativeFrames
from pacslab.ingest.pydicom_guard import classify, quiet_pydicom
from pacslab.store import SeriesMeta, SliceSource

__all__ = ["ScannedFile", "predicted_dtype", "scan_file"]

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_PIXEL_DATA = 0x7FE00009
_PIXEL_TAGS = {
    PIXEL_DATA: "PixelData",
    FLOAT_PIXEL_DATA: "FloatPixelData",
    DOUBLE_PIXEL_DATA: "DoubleFloatPixelData",
}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# The value representations of the File Meta Information elements (PS3.10 table 7.1-1).
_META_VRS = {b"AE", b"OB", b"SH", b"UI", b"UL", b"UR"}
_PIXEL_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"UN"}
_FAST_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
_FAST_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"}
_UNDEFINED = 0xFFFFFFFF
# An inflated dataset above this goes to a temporary file rather than memory.
_INFLATE_IN_MEMORY = 8 << 20
_MAX_UID = 128

Deidentify = Callable[[Dataset, str], None]


@dataclass
class ScannedFile:
    """One accepted instance: its series facts and a source per frame."""

    name: str
    path: Path
    size: int
    meta: SeriesMeta
    sources: list[SliceSource]
    sop_class_uid: str
    modality: str
    rows: int
    cols: int
    samples: int
    pixel_spacing: tuple[float, float] | None
    orientation: tuple[float, ...] | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _PixelElement:
    tag: int
    length: int
    value_offset: int

    @property
    def encapsulated(self) -> bool:
        return self.length == _UNDEFINED


def predicted_dtype(tag: int, bits_allocated: int, pixel_representation: int, name: str) -> str:
    """The dtype pydicom decodes these pixels to."""
    if tag == FLOAT_PIXEL_DATA:
        return "float32"
    if tag == DOUBLE_PIXEL_DATA:
        return "float64"
    if bits_allocated == 1:
        return "uint8"
    if bits_allocated not in (8, 16, 32, 64):
        raise MalformedDicom(name, f"BitsAllocated {bits_allocated} is not 1, 8, 16, 32 or 64")
    return f"{'int' if pixel_representation == 1 else 'uint'}{bits_allocated}"


def _looks_like_dataset(fp: BinaryIO) -> bool:
    """DICOM data without preamble: pydicom, forced, finds a SOP instance in it."""
    fp.seek(0)
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(fp, force=True, stop_before_pixels=True)
            return bool(ds.get("SOPInstanceUID") or ds.get("SOPClassUID"))
    except Exception:  # anything pydicom raises means: not DICOM
        return False


def _read_element_header(
    fp: BinaryIO, pos: int, implicit: bool, little: bool, size: int, name: str
) -> _PixelElement:
    fp.seek(pos)
    head = fp.read(12)
    if len(head) < 8:
        raise TruncatedFile(name, "the file ends inside the pixel data element")
    endian = "<" if little else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    tag = (group << 16) | element
    # Some files are encoded implicitly despite an explicit transfer syntax (pydicom copes too).
    if head[4:6] in _PIXEL_VRS:
        implicit = False
    elif not implicit:
        implicit = True
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        offset = pos + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            raise TruncatedFile(name, "the file ends inside the pixel data element")
        (length,) = struct.unpack(endian + "L", head[8:12])
        offset = pos + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        offset = pos + 8
    return _PixelElement(tag, length, offset)


def _count_fragments(fp: BinaryIO, offset: int, size: int, name: str) -> int:
    """Walk the items of encapsulated pixel data; a cut-short file is found here."""
    pos, count = offset, 0
    while pos + 8 <= size:
        fp.seek(pos)
        group, element, length = struct.unpack("<HHL", fp.read(8))
        tag = (group << 16) | element
        if tag == 0xFFFEE0DD:
            return count
        if tag != 0xFFFEE000 or length == _UNDEFINED:
            raise MalformedDicom(name, f"encapsulated pixel data has a broken item at byte {pos}")
        pos += 8 + length
        if pos > size:
            raise TruncatedFile(name, "the compressed pixel data ends early")
        count += 1
    if pos != size:
        raise TruncatedFile(name, "the compressed pixel data ends early")
    return count


@dataclass(frozen=True)
class _QuickMeta:
    transfer_syntax: UID
    sop_class_uid: str
    dataset_start: int


def _quick_meta(fp: BinaryIO) -> _QuickMeta | None:
    """The two file meta values needed here, read without building a dataset.

    Only for the ordinary case: a group length, explicit VR little endian elements. Anything
    else returns None and pydicom reads the file meta in full.
    """
    fp.seek(132)
    head = fp.read(12)
    if len(head) < 12 or head[:8] != b"\x02\x00\x00\x00UL\x04\x00":
        return None
    (length,) = struct.unpack("<L", head[8:12])
    if length > 1 << 16:
        return None
    meta = fp.read(length)
    if len(meta) < length:
        return None
    values: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= length:
        group, element = struct.unpack("<HH", meta[pos : pos + 4])
        if group != 2:
            return None
        vr = meta[pos + 4 : pos + 6]
        if vr not in _META_VRS:
            return None  # let pydicom judge the odd file meta, exactly as it would alone
        if vr in _LONG_VRS:
            (size,) = struct.unpack("<L", meta[pos + 8 : pos + 12])
            pos += 12
        else:
            (size,) = struct.unpack("<H", meta[pos + 6 : pos + 8])
            pos += 8
        values[element] = meta[pos : pos + size]
        pos += size
    if pos != length or 0x0010 not in values:
        return None
    try:
        syntax = UID(values[0x0010].rstrip(b"\x00 ").decode("ascii"))
        sop_class = values.get(0x0002, b"").rstrip(b"\x00 ").decode("ascii")
    except UnicodeDecodeError:
        return None
    return _QuickMeta(syntax, sop_class, 144 + length)


def _read_header(
    fp: BinaryIO, start: int, size: int, implicit: bool, content: bytes | None
) -> tuple[Dataset, int] | None:
    """The header of an ordinary little endian file read without pydicom's reader (None if not
    ordinary), as a Dataset equal to ``read_dataset``'s and the file offset of its pixel data."""
    if content is not None:
        walked = walk_elements(content, start, 0, implicit, stop_tags=_PIXEL_TAGS)
    else:
        need = READ_AHEAD
        while True:
            fp.seek(start)
            buf = fp.read(need)
            walked = walk_elements(buf, 0, start, implicit, stop_tags=_PIXEL_TAGS)
            if not isinstance(walked, int) or len(buf) < need or walked > size - start:
                break
            need = walked
    if not isinstance(walked, tuple):
        return None  # odd, or no pixel data before the end of the file: pydicom decides
    elements, pixel_at = walked
    return dataset_of(elements, implicit), pixel_at if content is not None else start + pixel_at


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _inflate(fp: BinaryIO, start: int, cap: int, name: str) -> BinaryIO:
    """Inflate the deflated dataset in chunks into a temporary file, stopping a bomb at the cap.

    Only one inflated copy ever exists, on disk beyond a few MiB, so a dataset just under the
    cap costs little memory; the caller reads it as explicit VR little endian and closes it.
    """
    fp.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = tempfile.SpooledTemporaryFile(max_size=_INFLATE_IN_MEMORY)  # noqa: SIM115 (the caller closes it)
    try:
        total = 0
        while chunk := fp.read(1 << 16):
            data = inflater.decompress(chunk, 1 << 20)
            while True:
                total += len(data)
                if total > cap:
                    raise DecompressionBomb(name, f"the deflated dataset inflates beyond {cap >> 20} MiB")
                out.write(data)
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
            if inflater.eof:
                break
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return cast(BinaryIO, out)


def _uid(ds: HeaderLike, keyword: str, name: str) -> str:
    value = text_of(ds, keyword)
    if not value:
        raise MalformedDicom(name, f"{keyword} is missing")
    if len(value) > _MAX_UID or not value.isprintable():
        raise MalformedDicom(name, f"{keyword} is not a valid UID")
    return value


def _int_attr(ds: HeaderLike, keyword: str, name: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise MalformedDicom(name, f"{keyword} is missing")
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise MalformedDicom(name, f"{keyword} {value!r} is not a number") from error


def _check_decoder(ts: UID, name: str) -> None:
    if not ts.is_transfer_syntax:
        raise UnsupportedTransferSyntax(name, f"transfer syntax {ts} is unknown")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as error:
        raise UnsupportedTransferSyntax(name, f"no pixel decoder exists for {ts.name} ({ts})") from error
    if not decoder.is_available:
        raise UnsupportedTransferSyntax(name, f"no decoder plugin is installed for {ts.name} ({ts})")


def scan_file(
    path: Path,
    name: str,
    limits: IngestLimits,
    headers: HeaderJson,
    deidentify: Deidentify | None = None,
    series_metas: dict[str, SeriesMeta] | None = None,
    content: bytes | None = None,
) -> ScannedFile:
    """Validate one file and describe its planes; raises a named :class:`IngestError`.

    Parameters
    ----------
    path : Path
        The file (it must stay in place until the ingest has written its series).
    name : str
        How errors name it (the user's file name or zip member).
    limits : IngestLimits
        Caps checked before any pixel is decoded.
    headers : HeaderJson
        JSON converter shared across the files of one ingest.
    deidentify : callable, optional
        Applied to the header (in place) before anything is kept.
    series_metas : dict, optional
        Series facts already taken from an earlier file of the same series (reused, and
        filled in for the next file).
    content : bytes, optional
        The bytes of ``path`` when they are still in memory (just received): read from
        there, and from ``path`` only when the pixels are written.
    """
    fp: BinaryIO
    if content is not None:
        size, fp = len(content), BytesIO(content)
    else:
        try:
            size = path.stat().st_size
            fp = path.open("rb")
        except OSError as error:
            raise UnreadableFile(name, f"cannot read it ({error.strerror or error})") from error
    if size == 0:
        fp.close()
        raise EmptyFile(name, "the file is empty (0 bytes)")
    with fp:
        head = fp.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            if _looks_like_dataset(fp):
                raise MissingPreamble(name, "DICOM data without the 128-byte preamble and 'DICM' marker")
            raise NotDicom(name, "no 'DICM' marker at byte 128")
        with quiet_pydicom() as caught:
            try:
                return _scan(fp, path, name, size, limits, headers, deidentify, series_metas, caught, content)
            except IngestError:
                raise
            except Exception as error:
                raise classify(name, error) from error


def _scan(
    fp: BinaryIO,
    path: Path,
    name: str,
    size: int,
    limits: IngestLimits,
    headers: HeaderJson,
    deidentify: Deidentify | None,
    series_metas: dict[str, SeriesMeta] | None,
    caught: list[Any],
    content: bytes | None,
) -> ScannedFile:
    quick = _quick_meta(fp)
    if quick is None or quick.transfer_syntax == DeflatedExplicitVRLittleEndian:
        fp.seek(0)
        read_preamble(fp, False)
        file_meta = _read_file_meta_info(fp)
        if str(file_meta.get("TransferSyntaxUID", "")).strip() == DeflatedExplicitVRLittleEndian:
            inflated = _inflate(fp, fp.tell(), limits.max_inflated_bytes, name)
            with inflated:
                inflated.seek(0, io.SEEK_END)
                inflated_size = inflated.tell()
                inflated.seek(0)
                dataset = read_dataset(inflated, False, True, stop_when=_at_pixel_data)
                dataset.file_meta = file_meta
                return _described(
                    inflated, path, name, size, inflated_size, limits, headers, deidentify, series_metas,
                    caught, dataset, DeflatedExplicitVRLittleEndian,
                    text_of(file_meta, "MediaStorageSOPClassUID"),
                )  # fmt: skip

    if (
        quick is not None
        and deidentify is None
        and quick.transfer_syntax.is_transfer_syntax
        and not quick.transfer_syntax.is_deflated
    ):
        # The common case: read the dataset straight after the file meta we just parsed.
        ts, sop_class_in_meta = quick.transfer_syntax, quick.sop_class_uid
        header = (
            _read_header(fp, quick.dataset_start, size, ts == ImplicitVRLittleEndian, content)
            if ts != ExplicitVRBigEndian
            else None
        )
        if header is not None:
            dataset, pixel_at = header
            fp.seek(pixel_at)
        else:
            fp.seek(quick.dataset_start)
            dataset = read_dataset(
                fp, ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian, stop_when=_at_pixel_data
            )
    else:
        fp.seek(0)
        dataset = pydicom.dcmread(fp, stop_before_pixels=True)
        ts_text = str(dataset.file_meta.get("TransferSyntaxUID", "") or "").strip()
        if not ts_text:
            raise MalformedDicom(name, "the file meta information has no TransferSyntaxUID")
        ts, sop_class_in_meta = UID(ts_text), text_of(dataset.file_meta, "MediaStorageSOPClassUID")
    return _described(
        fp, path, name, size, size, limits, headers, deidentify, series_metas, caught, dataset, ts,
        sop_class_in_meta,
    )  # fmt: skip


def _described(
    fp: BinaryIO,
    path: Path,
    name: str,
    file_size: int,
    size: int,
    limits: IngestLimits,
    headers: HeaderJson,
    deidentify: Deidentify | None,
    series_metas: dict[str, SeriesMeta] | None,
    caught: list[Any],
    dataset: Dataset,
    ts: UID,
    sop_class_in_meta: str,
) -> ScannedFile:
    """Check the header read from ``fp`` (of ``size`` bytes: the inflated dataset when deflated)
    against the pixel data after it, and describe the planes."""
    # pydicom notes the encoding it actually found (some files contradict their transfer syntax).
    implicit, little = (bool(flag) for flag in dataset.original_encoding)
    pixel_pos = fp.tell()
    for warning in caught:
        if "end of file" in str(warning.message).lower():
            raise TruncatedFile(name, "the file ends inside its header")
    raw_elements = headers.snapshot(dataset)
    ds: HeaderLike = headers.view(dataset, raw_elements)
    deflated = ts == DeflatedExplicitVRLittleEndian

    sop_instance_uid = _uid(ds, "SOPInstanceUID", name)
    sop_class_uid = text_of(ds, "SOPClassUID") or sop_class_in_meta
    if pixel_pos >= size:
        raise NoPixelData(name, f"no pixel data in this {_sop_name(sop_class_uid)}")
    element = _read_element_header(fp, pixel_pos, bool(implicit), bool(little), size, name)
    if element.tag not in _PIXEL_TAGS:
        raise NoPixelData(name, f"no pixel data in this {_sop_name(sop_class_uid)}")
    _uid(ds, "SeriesInstanceUID", name)
    _uid(ds, "StudyInstanceUID", name)

    rows = _int_attr(ds, "Rows", name)
    cols = _int_attr(ds, "Columns", name)
    # Type 1 in the Image Pixel module, and pydicom will not decode without them: no defaults.
    samples = _int_attr(ds, "SamplesPerPixel", name)
    bits_allocated = _int_attr(ds, "BitsAllocated", name)
    bits_stored = _int_attr(ds, "BitsStored", name)
    representation = _int_attr(ds, "PixelRepresentation", name)
    if not text_of(ds, "PhotometricInterpretation"):
        raise MalformedDicom(name, "PhotometricInterpretation is missing")
    frames = _int_attr(ds, "NumberOfFrames", name, 1)
    if rows < 1 or cols < 1 or samples < 1 or frames < 1:
        raise MalformedDicom(name, f"impossible image size {rows}x{cols}, {samples} samples, {frames} frames")
    bits = bits_allocated
    if element.tag == FLOAT_PIXEL_DATA:
        bits = 32
    elif element.tag == DOUBLE_PIXEL_DATA:
        bits = 64
    expected = math.ceil(rows * cols * samples * frames * bits / 8)
    if text_of(ds, "PhotometricInterpretation").upper() == "YBR_FULL_422" and samples == 3:
        expected = expected // 3 * 2  # chroma subsampled: two values per pixel, not three
    photometric = text_of(ds, "PhotometricInterpretation").upper()
    fast = (
        element.tag == PIXEL_DATA
        and ts in _FAST_SYNTAXES
        and samples == 1
        and photometric in _FAST_PHOTOMETRIC
        and bits_allocated in (8, 16, 32, 64)
    )
    # Uncompressed frames are read one at a time; anything pydicom decodes is decoded whole.
    held_frames = 1 if fast else frames
    decoded = rows * cols * samples * held_frames * max(1, math.ceil(bits / 8))
    if decoded > limits.max_image_bytes:
        raise ImageTooLarge(
            name,
            f"{rows}x{cols} pixels x {held_frames} frame(s) x {samples} samples needs {decoded >> 20} MiB "
            f"in memory, above the cap of {limits.max_image_bytes >> 20} MiB",
        )

    encapsulated = element.encapsulated
    if encapsulated or deflated or not little:
        _check_decoder(ts, name)
    elif not ts.is_transfer_syntax:
        raise UnsupportedTransferSyntax(name, f"transfer syntax {ts} is unknown")
    if encapsulated != ts.is_encapsulated and element.tag == PIXEL_DATA:
        raise MalformedDicom(
            name,
            f"pixel data is {'encapsulated' if encapsulated else 'native'} "
            "but the transfer syntax says otherwise",
        )

    if encapsulated:
        if _count_fragments(fp, element.value_offset, size, name) < 2:
            raise PixelDataMismatch(name, "the compressed pixel data holds no image fragments")
    else:
        if element.value_offset + element.length > size:
            raise TruncatedFile(
                name,
                f"pixel data declares {element.length} bytes but the file ends after "
                f"{size - element.value_offset}",
            )
        if not expected <= element.length <= expected + 1:
            raise PixelDataMismatch(
                name,
                f"{rows} rows x {cols} columns x {frames} frames x {samples} samples "
                f"at {bits} bits needs "
                f"{expected} bytes of pixel data, the file has {element.length}",
            )

    dtype = predicted_dtype(element.tag, bits_allocated, representation, name)
    if deidentify is not None:
        deidentify(dataset, name)
        raw_elements = {}  # values changed: convert every element afresh
        ds = dataset
    series_uid = text_of(ds, "SeriesInstanceUID")
    meta = series_metas.get(series_uid) if series_metas is not None else None
    if meta is None:
        meta = series_meta(ds)
        if series_metas is not None:
            series_metas[series_uid] = meta
    reader: NativeFrames | DecodedFrames
    if fast:
        reader = NativeFrames(path, element.value_offset, rows, cols, dtype, bits_stored)
    else:
        reader = DecodedFrames(path, name, frames)

    frame_headers = headers.per_frame(dataset, frames, raw_elements)
    facts = frame_facts(ds, frames)
    sop_instance_uid = text_of(ds, "SOPInstanceUID")
    instance_number = _optional_int(ds.get("InstanceNumber"))
    sources = [
        SliceSource(
            sop_instance_uid=sop_instance_uid,
            frame=i + 1,
            channel=facts[i].channel,
            header_json=frame_headers[i],
            read_pixels=_frame_reader(reader, i),
            rows=rows,
            cols=cols,
            dtype=dtype,
            samples=samples,
            position=facts[i].position,
            orientation=facts[i].orientation,
            instance_number=instance_number,
            sop_class_uid=sop_class_uid,
            rescale_slope=facts[i].slope,
            rescale_intercept=facts[i].intercept,
            origin=name,
        )
        for i in range(frames)
    ]
    return ScannedFile(
        name=name,
        path=path,
        size=file_size,
        meta=meta,
        sources=sources,
        sop_class_uid=sop_class_uid,
        modality=text_of(ds, "Modality").upper(),
        rows=rows,
        cols=cols,
        samples=samples,
        pixel_spacing=_spacing(ds),
        orientation=facts[0].orientation,
        notes=tuple(str(w.message) for w in caught),
    )


def _spacing(ds: HeaderLike) -> tuple[float, float] | None:
    value = ds.get("PixelSpacing")
    try:
        return (float(value[0]), float(value[1])) if value is not None and len(value) == 2 else None
    except (TypeError, ValueError):
        return None


def _frame_reader(reader: NativeFrames | DecodedFrames, index: int) -> Callable[[], Any]:
    return lambda: reader.read(index)


def _optional_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _sop_name(sop_class_uid: str) -> str:
    name = UID(sop_class_uid).name if sop_class_uid else ""
    return f"{name} object" if name and name != sop_class_uid else "file"
