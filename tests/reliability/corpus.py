"""The malformed corpus: pydicom's bundled test files and seeded mutants of small ones.

Mutants are the three kinds fuzzers and broken transfers produce: truncations, bit flips
(half of them in the header), and corrupted length fields of data elements (file meta and
dataset). Every file is ingested into a store of its own, so files sharing UIDs (pydicom's
test files do) never meet.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.filereader import _read_file_meta_info, data_element_generator
from pydicom.uid import DeflatedExplicitVRLittleEndian

__all__ = [
    "BASE_FILES",
    "TEST_FILES",
    "Mutant",
    "bundled_files",
    "element_length_fields",
    "meta_end",
    "mutants",
]

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Small files with pixel data, one per encoding family: explicit/implicit/big-endian native,
# colour, multi-frame RLE, JPEG baseline, JPEG 2000, JPEG-LS, deflated, 32-bit RT dose.
BASE_FILES = (
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "rtdose_1frame.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "JPEG2000.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "image_dfl.dcm",
)
KINDS = ("truncation", "bit flip", "length field")
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


@dataclass(frozen=True)
class Mutant:
    """One mutated file: where it came from, how it was broken, its bytes."""

    name: str
    base: str
    kind: str
    data: bytes


def bundled_files() -> list[Path]:
    """Every test file shipped in pydicom's wheel (no download), DICOM or not, in every folder."""
    return sorted(p for p in TEST_FILES.rglob("*") if p.is_file() and p.suffix != ".py")


def _dataset_encoding(data: bytes) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of a Part 10 file."""
    fp = BytesIO(data)
    fp.seek(132)
    meta = _read_file_meta_info(fp)
    ts = pydicom.uid.UID(str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1")))
    if ts == DeflatedExplicitVRLittleEndian:
        return False, True, True
    return ts.is_implicit_VR, ts.is_little_endian, False


def meta_end(data: bytes) -> int:
    """Offset of the first byte after the file meta group of a Part 10 file."""
    fp = BytesIO(data)
    fp.seek(132)
    end = 132
    for raw in data_element_generator(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2):
        end = raw.value_tell + (raw.length if raw.length != 0xFFFFFFFF else 0)
    return end


def element_length_fields(data: bytes) -> list[tuple[int, int, bool]]:
    """(offset, size in bytes, little endian) of the length field of each top-level element.

    File meta elements and, unless deflated, the dataset's elements up to the pixel data.
    """
    fields: list[tuple[int, int, bool]] = []
    fp = BytesIO(data)
    fp.seek(132)
    for raw in data_element_generator(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2):
        long = raw.VR in _LONG_VRS
        fields.append((raw.value_tell - (4 if long else 2), 4 if long else 2, True))
    implicit, little, deflated = _dataset_encoding(data)
    if deflated:
        return fields
    fp = BytesIO(data)
    fp.seek(meta_end(data))
    try:
        for raw in data_element_generator(fp, implicit, little, defer_size=256):
            long = implicit or raw.VR in _LONG_VRS
            fields.append((raw.value_tell - (4 if long else 2), 4 if long else 2, little))
            if raw.tag == 0x7FE00010:
                break
    except Exception:  # a base file pydicom walks only partly: use what was found
        pass
    return fields


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def _flip(data: bytes, rng: random.Random, header_end: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        # Half the flips hit the header, where they change meaning rather than pixel values.
        upper = header_end if rng.random() < 0.5 and header_end > 0 else len(out)
        position = rng.randrange(0, max(1, upper))
        out[position] ^= 1 << rng.randrange(8)
    return bytes(out)


def _corrupt_length(data: bytes, rng: random.Random, fields: list[tuple[int, int, bool]]) -> bytes:
    out = bytearray(data)
    offset, size, little = rng.choice(fields)
    fmt = ("<" if little else ">") + ("H" if size == 2 else "L")
    (old,) = struct.unpack_from(fmt, out, offset)
    top = 0xFFFF if size == 2 else 0xFFFFFFFF
    new = rng.choice(
        [0, 1, old + 1, old - 1, old * 2, old + 2, top, top - 1, 0x7FFFFFFF & top, rng.randrange(top)]
    )
    struct.pack_into(fmt, out, offset, new & top)
    return bytes(out)


def mutants(count: int, seed: int = 20261122) -> Iterator[Mutant]:
    """``count`` mutants of :data:`BASE_FILES`, the same ones for the same ``seed``."""
    rng = random.Random(seed)
    bases = [(name, (TEST_FILES / name).read_bytes()) for name in BASE_FILES]
    fields = {name: element_length_fields(data) for name, data in bases}
    for number in range(count):
        name, data = bases[number % len(bases)]
        kind = KINDS[(number // len(bases)) % len(KINDS)]
        if kind == "truncation":
            mutated = _truncate(data, rng)
        elif kind == "bit flip":
            header_end = fields[name][-1][0] if fields[name] else 0
            mutated = _flip(data, rng, header_end)
        else:
            mutated = _corrupt_length(data, rng, fields[name])
        yield Mutant(f"mutant-{number:05d}-{kind.replace(' ', '-')}-{name}", name, kind, mutated)
