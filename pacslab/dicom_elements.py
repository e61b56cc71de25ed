"""Ordinary little endian data sets read with ``struct``, giving what pydicom's reader gives.

pydicom's ``read_dataset`` reads element by element through a generator, several microseconds
per element; an ingest reads thousands of file headers and a C-FIND of 2,000 matches decodes
2,000 identifiers and 2,000 command sets. :func:`walk_elements` reads the top-level elements of
an ordinary data set (defined lengths, VRs pydicom knows, tags ascending) into the same
``RawDataElement`` values ``read_dataset`` holds before any value is converted, and
:func:`dataset_of` makes them the Dataset ``read_dataset`` would return. Anything out of the
ordinary is handed back (None) for pydicom to read, so odd and broken data meet exactly its
checks and warnings.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Container
from typing import Any, cast

import pydicom
from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.tag import BaseTag

__all__ = ["READ_AHEAD", "Elements", "dataset_of", "decode_plain", "encodings_of", "walk_elements"]

Elements = dict[BaseTag, RawDataElement]

# When a buffer ends before the walk is done, ask for this much more than the next element head.
READ_AHEAD = 16 << 10
_UNDEFINED = 0xFFFFFFFF
_SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
# Every two-letter value representation pydicom knows, as encoded in an explicit VR data set.
_KNOWN_VRS = {vr.encode(): str(vr) for vr in pydicom.valuerep.VR if len(vr) == 2}
_KNOWN_LONG_VRS = {str(vr) for vr in pydicom.valuerep.EXPLICIT_VR_LENGTH_32}
_EMPTY_VALUES: dict[str | None, Any] = {
    vr: empty_value_for_VR(vr, raw=True) for vr in [None, *_KNOWN_VRS.values()]
}
_ELEMENT_HEAD = struct.Struct("<HH2sH").unpack_from
_IMPLICIT_HEAD = struct.Struct("<HHL").unpack_from
_LONG_LENGTH = struct.Struct("<L").unpack_from


def walk_elements(
    buf: bytes,
    start: int,
    base: int,
    implicit: bool,
    *,
    stop_tags: Container[int] = (),
    to_end: bool = False,
) -> tuple[Elements, int] | int | None:
    """The top-level elements of an ordinary little endian data set, still encoded.

    Returns the elements before the first of ``stop_tags`` and that tag's offset in ``buf``;
    with ``to_end``, the elements up to the end of ``buf`` and ``len(buf)`` when it ends on an
    element boundary; otherwise the number of bytes needed to get further; or None for
    anything out of the ordinary (an undefined length, a VR pydicom would guess at, tags out of
    order, an item tag). ``base`` is the offset of ``buf[0]`` in its file.
    """
    end = len(buf)
    pos = start
    elements: Elements = {}
    previous = -1
    if not implicit and end >= pos + 6 and buf[pos + 4 : pos + 6] not in _KNOWN_VRS:
        return None
    if implicit and end >= pos + 6 and 0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B:
        return None  # looks explicit: pydicom switches, with a warning
    known_vrs, long_vrs, empty = _KNOWN_VRS, _KNOWN_LONG_VRS, _EMPTY_VALUES
    while True:
        if pos + 8 > end:
            if to_end and pos == end:
                return elements, pos
            return pos + 8 + READ_AHEAD
        vr: str | None
        if implicit:
            group, elem, length = _IMPLICIT_HEAD(buf, pos)
            vr = None
            value_pos = pos + 8
        else:
            group, elem, vr_bytes, length = _ELEMENT_HEAD(buf, pos)
            vr = known_vrs.get(vr_bytes)
            if vr is None:
                return None
            value_pos = pos + 8
            if vr in long_vrs:
                if pos + 12 > end:
                    return pos + 12 + READ_AHEAD
                (length,) = _LONG_LENGTH(buf, pos + 8)
                value_pos = pos + 12
        tag = group << 16 | elem
        if tag in stop_tags:
            return elements, pos
        if tag <= previous or group == 0xFFFE or length == _UNDEFINED:
            return None
        pos = value_pos + length
        if pos > end:
            return pos + READ_AHEAD
        key = BaseTag(tag)
        elements[key] = RawDataElement(
            key, vr, length, buf[value_pos:pos] if length else empty[vr], base + value_pos, implicit, True
        )
        previous = tag


@functools.lru_cache(maxsize=64)
def _cached_encodings(value: bytes | None, vr: str | None, implicit: bool) -> tuple[str, ...]:
    raw = RawDataElement(_SPECIFIC_CHARACTER_SET, vr, len(value or b""), value, 0, implicit, True)
    return tuple(convert_encodings(cast(Any, convert_raw_data_element(raw).value)))


def encodings_of(charset: RawDataElement) -> list[str]:
    """The Python codecs of a still-encoded Specific Character Set, as ``read_dataset`` sets them."""
    return list(_cached_encodings(charset.value, charset.VR, charset.is_implicit_VR))


def dataset_of(elements: Elements, implicit: bool) -> Dataset:
    """The Dataset ``read_dataset`` returns for these elements of a little endian data set."""
    dataset = Dataset(cast(Any, elements), parent_encoding=default_encoding)
    charset = elements.get(_SPECIFIC_CHARACTER_SET)
    dataset.set_original_encoding(
        implicit, True, encodings_of(charset) if charset is not None else default_encoding
    )
    return dataset


def decode_plain(data: bytes, implicit: bool) -> Dataset | None:
    """A whole little endian data set (a command set, a C-FIND identifier) as ``read_dataset``
    reads it, or None when it is not ordinary (a sequence of undefined length, a bad length)."""
    walked = walk_elements(data, 0, 0, implicit, to_end=True)
    if not isinstance(walked, tuple):
        return None
    return dataset_of(walked[0], implicit)
