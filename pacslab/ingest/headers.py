"""DICOM headers → what the store keeps: DICOM JSON per plane, series facts, geometry, channels."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Protocol, cast

from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement

from pacslab.store import SeriesMeta

__all__ = [
    "BULK_DATA_THRESHOLD",
    "BULK_DATA_URI",
    "FrameFacts",
    "HeaderJson",
    "HeaderLike",
    "HeaderView",
    "channel_name",
    "frame_facts",
    "series_meta",
    "text_of",
]

# Binary values above this many bytes are left out of the stored JSON (DICOM JSON BulkDataURI).
BULK_DATA_THRESHOLD = 1024
BULK_DATA_URI = "pacslab:bulk-data-not-stored"
PER_FRAME_TAG = 0x52009230

_CHANNEL_WORDS = {
    "M": "magnitude",
    "MAGNITUDE": "magnitude",
    "P": "phase",
    "PHASE": "phase",
    "R": "real",
    "REAL": "real",
    "I": "imaginary",
    "IMAGINARY": "imaginary",
}


def _bulk(_element: DataElement) -> str:
    return BULK_DATA_URI


class HeaderLike(Protocol):
    """What the functions here read from: a pydicom Dataset or a :class:`HeaderView`."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __contains__(self, key: str) -> bool: ...


class _Known:
    """One distinct encoded element: its value converted by pydicom, and its JSON text."""

    __slots__ = ("element", "text")

    def __init__(self, element: DataElement | None, text: str | None) -> None:
        self.element = element
        self.text = text


_Bucket = dict[tuple[Any, ...], _Known]


def _ambiguous(tag: int) -> bool:
    """Whether pydicom picks this tag's VR from other elements when the file does not say it."""
    found = _AMBIGUOUS.get(tag)
    if found is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        found = _AMBIGUOUS[tag] = " or " in vr
    return found


_AMBIGUOUS: dict[int, bool] = {}
# What the conversion of a sequence read without VRs may depend on, beyond its own bytes.
_SQ_CONTEXT = (0x00280100, 0x00280103)


def _element_key(tag: int, raw: Any, raw_elements: dict[int, RawDataElement]) -> tuple[Any, ...] | None:
    """What pydicom's conversion of an encoded element depends on (with the charset and
    encoding of the dataset), or None if it must be converted afresh each time."""
    if type(raw) is not RawDataElement:
        return None
    vr = raw.VR
    if vr is not None and vr != "UN":
        return (tag, vr, raw.value)
    # Without an explicit VR pydicom looks the VR up: for a private tag under its creator,
    # for a few public tags from other elements (not cached), for a sequence with its items.
    if tag >> 16 & 1:
        creator = raw_elements.get(tag & 0xFFFF0000 | (tag & 0xFF00) >> 8) if tag & 0xFF00 else None
        return (tag, vr, raw.value, creator.value if creator is not None else None)
    if _ambiguous(tag):
        return None
    context = tuple(getattr(raw_elements.get(t), "value", None) for t in _SQ_CONTEXT)
    return (tag, vr, raw.value, context)


# Values whose DICOM JSON is plain: one UID, or integer or decimal strings without oddities
# (no empty, padded-inside, over-long or non-finite parts). These change from slice to slice
# (SOPInstanceUID, InstanceNumber, ImagePositionPatient, SliceLocation); anything else, and
# these under other settings, is left to pydicom.
_PLAIN = {
    "UI": re.compile(rb"[0-9.]{1,64}\x00?"),
    "IS": re.compile(rb"[+-]?[0-9]{1,11}(\\[+-]?[0-9]{1,11})* ?"),
    "DS": re.compile(rb"[+-]?[0-9]{1,14}(\.[0-9]{0,14})?(\\[+-]?[0-9]{1,14}(\.[0-9]{0,14})?)* ?"),
}
_MAX_PART = {"IS": 12, "DS": 16}


def _plain_json(tag: int, raw: RawDataElement) -> str | None:
    """DICOM JSON text of an element whose value converts trivially, without pydicom's
    element machinery, or None; equal to what ``to_json_dict`` gives (see the tests)."""
    vr = raw.VR
    if vr is None:
        return None
    pattern = _PLAIN.get(vr)
    value = raw.value
    if pattern is None or not value or pattern.fullmatch(value) is None:
        return None
    if config.settings.reading_validation_mode == config.RAISE:
        return None  # pydicom may refuse the value
    if config.use_DS_decimal or config.use_DS_numpy or config.use_IS_numpy:
        return None
    text = value.decode("ascii").rstrip(" \x00")
    if vr == "UI":
        if text.startswith(".") or text.endswith(".") or ".." in text:
            return None  # pydicom would warn about it: let it
        return f'"{tag:08X}":' + json.dumps({"vr": "UI", "Value": [text]})
    parts = text.split("\\")
    if any(len(part) > _MAX_PART[vr] for part in parts):
        return None
    number = int if vr == "IS" else float
    return f'"{tag:08X}":' + json.dumps({"vr": vr, "Value": [number(part) for part in parts]})


class HeaderView:
    """Attribute values of one dataset, converted once per distinct encoded element.

    pydicom converts an element's bytes on first access; across the slices of a series the
    same bytes recur, so their converted values are shared (values are never modified).
    Sequences are always read from the dataset itself.
    """

    def __init__(self, ds: Dataset, raw_elements: dict[int, RawDataElement], bucket: _Bucket) -> None:
        self._ds = ds
        self._raw = raw_elements
        self._bucket = bucket
        # Freshly read, every element is still encoded: one missing here is missing.
        self._complete = len(raw_elements) == len(ds)

    def get(self, key: str, default: Any = None) -> Any:
        tag = _TAGS.get(key)
        if tag is None:
            tag = _TAGS[key] = tag_for_keyword(key)
        raw = self._raw.get(tag) if tag is not None else None
        if raw is None:
            return default if self._complete and tag is not None else self._ds.get(key, default)
        if raw.VR == "SQ":
            return self._ds.get(key, default)
        cache_key = _element_key(cast(int, tag), raw, self._raw)
        if cache_key is None:
            return self._ds.get(key, default)
        known = self._bucket.get(cache_key)
        if known is None or known.element is None:
            element = self._ds[cast(int, tag)]
            if element.VR == "SQ":
                return element.value
            if known is None:
                self._bucket[cache_key] = _Known(element, None)
            else:
                known.element = element
            return element.value
        return known.element.value

    def __contains__(self, key: str) -> bool:
        tag = _TAGS.get(key)
        if tag is not None and self._complete:
            return tag in self._raw
        return key in self._ds


_TAGS: dict[str, int | None] = {}


class HeaderJson:
    """DICOM JSON of datasets, reusing what was converted for elements already seen.

    The slices of a series repeat most of their header byte for byte, so each distinct raw
    element is converted by pydicom once and its value and JSON text reused; the result is
    the same text pydicom's ``to_json_dict`` gives.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._buckets: dict[tuple[Any, ...], _Bucket] = {}
        self._max = max_entries

    def _bucket(self, ds: Dataset, raw_elements: dict[int, RawDataElement]) -> _Bucket:
        """The elements known under the character set and encoding of ``ds``."""
        charset = raw_elements.get(0x00080005)
        context = (
            charset.value if charset is not None else repr(ds.get("SpecificCharacterSet")),
            ds.original_encoding,
        )
        bucket = self._buckets.get(context)
        if bucket is None or len(bucket) > self._max:
            bucket = self._buckets[context] = {}
        return bucket

    def view(self, ds: Dataset, raw_elements: dict[int, RawDataElement]) -> HeaderView:
        """Cached attribute access to ``ds`` (see :class:`HeaderView`)."""
        return HeaderView(ds, raw_elements, self._bucket(ds, raw_elements))

    @staticmethod
    def snapshot(ds: Dataset) -> dict[int, RawDataElement]:
        """The still-encoded elements of a freshly read dataset (take it before any access)."""
        return {int(tag): raw for tag, raw in ds.items() if isinstance(raw, RawDataElement)}

    def fragments(self, ds: Dataset, raw_elements: dict[int, RawDataElement] | None = None) -> dict[int, str]:
        """``"TAG":{...}`` JSON text of each top-level element, by tag.

        ``raw_elements`` (from :meth:`snapshot`) lets unchanged elements be looked up by their
        encoded bytes even after pydicom has converted them; pass None if ``ds`` was modified.
        """
        raw_elements = raw_elements or {}
        bucket = self._bucket(ds, raw_elements)
        if len(raw_elements) == len(ds):
            items: Any = raw_elements.items()
        else:
            tags = ds.keys()  # tags only: iterating a Dataset would convert every element
            items = ((int(tag), raw_elements.get(int(tag)) or ds.get_item(tag)) for tag in tags)
        out: dict[int, str] = {}
        for tag, raw in items:
            key = _element_key(tag, raw, raw_elements)
            known = bucket.get(key) if key is not None else None
            if known is not None and known.text is not None:
                out[tag] = known.text
                continue
            plain = _plain_json(tag, raw) if type(raw) is RawDataElement else None
            if plain is not None:
                if known is not None:
                    known.text = plain
                elif key is not None:
                    bucket[key] = _Known(None, plain)
                out[tag] = plain
                continue
            element = ds[tag]
            text = f'"{tag:08X}":' + json.dumps(
                element.to_json_dict(bulk_data_element_handler=_bulk, bulk_data_threshold=BULK_DATA_THRESHOLD)
            )
            if known is not None:
                known.text = text
            elif key is not None:
                # A sequence's value is not shared (its items belong to this dataset).
                bucket[key] = _Known(element if element.VR != "SQ" else None, text)
            out[tag] = text
        return out

    @staticmethod
    def join(fragments: dict[int, str]) -> str:
        """One JSON object from element fragments."""
        return "{" + ",".join(fragments.values()) + "}"

    def dataset(self, ds: Dataset, raw_elements: dict[int, RawDataElement] | None = None) -> str:
        """DICOM JSON text of a whole dataset."""
        return self.join(self.fragments(ds, raw_elements))

    def per_frame(
        self, ds: Dataset, n_frames: int, raw_elements: dict[int, RawDataElement] | None = None
    ) -> list[str]:
        """One header per frame: the shared elements plus only that frame's functional groups."""
        fragments = self.fragments(ds, raw_elements)
        groups = ds.get("PerFrameFunctionalGroupsSequence") if PER_FRAME_TAG in fragments else None
        if groups is None or len(groups) != n_frames:
            text = self.join(fragments)
            return [text] * n_frames
        base = {tag: text for tag, text in fragments.items() if tag != PER_FRAME_TAG}
        headers = []
        for item in groups:
            item_json = item.to_json_dict(BULK_DATA_THRESHOLD, _bulk)
            frame = f'"{PER_FRAME_TAG:08X}":' + json.dumps({"vr": "SQ", "Value": [item_json]})
            headers.append(self.join({**base, PER_FRAME_TAG: frame}))
        return headers


def text_of(ds: HeaderLike, keyword: str) -> str:
    """A header value as text ('' when absent); multi-valued values joined with '\\'.

    NUL characters (never valid in DICOM text, but found in corrupt or hostile files) are
    dropped: neither HDF5 attributes nor file systems accept them.
    """
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value).strip()
    return text.replace("\x00", "")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def window_presets(ds: HeaderLike) -> tuple[tuple[str, float, float], ...]:
    """WindowCenter/WindowWidth pairs with their explanations."""
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is None or widths is None:
        return ()
    centers = list(centers) if _is_multi(centers) else [centers]
    widths = list(widths) if _is_multi(widths) else [widths]
    names = ds.get("WindowCenterWidthExplanation", [])
    names = list(names) if _is_multi(names) else [names]
    presets = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        c, w = _float(center), _float(width)
        if c is None or w is None or w <= 0:
            continue
        label = str(names[i]).strip() if i < len(names) and str(names[i]).strip() else f"preset {i + 1}"
        presets.append((label, c, w))
    return tuple(presets)


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def series_meta(ds: HeaderLike) -> SeriesMeta:
    """Patient, study and series facts of the series this instance belongs to."""
    spacing = _floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    thickness = _float(ds.get("SliceThickness"))
    between = _float(ds.get("SpacingBetweenSlices"))
    shared = _first_item(ds.get("SharedFunctionalGroupsSequence"))
    measures = _first_item(shared.get("PixelMeasuresSequence")) if shared is not None else None
    if measures is not None:
        spacing = spacing or _floats(measures.get("PixelSpacing"), 2)
        thickness = thickness if thickness is not None else _float(measures.get("SliceThickness"))
        between = between if between is not None else _float(measures.get("SpacingBetweenSlices"))
    photometric = text_of(ds, "PhotometricInterpretation") or "MONOCHROME2"
    return SeriesMeta(
        series_uid=text_of(ds, "SeriesInstanceUID"),
        study_uid=text_of(ds, "StudyInstanceUID"),
        patient_id=text_of(ds, "PatientID"),
        patient_name=text_of(ds, "PatientName"),
        patient_birth_date=text_of(ds, "PatientBirthDate"),
        patient_sex=text_of(ds, "PatientSex"),
        study_date=text_of(ds, "StudyDate"),
        study_time=text_of(ds, "StudyTime"),
        study_description=text_of(ds, "StudyDescription"),
        accession_number=text_of(ds, "AccessionNumber"),
        modality=text_of(ds, "Modality").upper(),
        series_description=text_of(ds, "SeriesDescription"),
        series_number=_int(ds.get("SeriesNumber")),
        frame_of_reference_uid=text_of(ds, "FrameOfReferenceUID"),
        pixel_spacing=(spacing[0], spacing[1]) if spacing else None,
        slice_thickness=thickness,
        spacing_between_slices=between,
        window_presets=window_presets(ds),
        photometric_interpretation=photometric,
        rescale_type=text_of(ds, "RescaleType"),
    )


def _first_item(sequence: Any) -> Dataset | None:
    try:
        return sequence[0] if sequence else None
    except (TypeError, IndexError):
        return None


def channel_name(image_type: Any, complex_component: Any = None) -> str:
    """Which channel of an acquisition an image is: magnitude, phase, real, imaginary or ''.

    Enhanced images say it in ComplexImageComponent; classic MR images in the third and
    later values of ImageType (``M``, ``P``, ``R``, ``I``, as Siemens, GE and Philips write).
    """
    if complex_component:
        word = _CHANNEL_WORDS.get(str(complex_component).strip().upper())
        if word:
            return word
    if image_type is None:
        return ""
    values = list(image_type) if _is_multi(image_type) else [image_type]
    for value in values[2:]:
        word = _CHANNEL_WORDS.get(str(value).strip().upper())
        if word:
            return word
    return ""


class FrameFacts:
    """Geometry, rescale and channel of one frame."""

    __slots__ = ("channel", "intercept", "orientation", "position", "slope")

    def __init__(
        self,
        position: tuple[float, float, float] | None,
        orientation: tuple[float, float, float, float, float, float] | None,
        slope: float,
        intercept: float,
        channel: str,
    ) -> None:
        self.position = position
        self.orientation = orientation
        self.slope = slope
        self.intercept = intercept
        self.channel = channel


def _group(item: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    for source in (item, shared):
        if source is not None:
            found = _first_item(source.get(keyword))
            if found is not None:
                return found
    return None


def _as3(values: tuple[float, ...] | None) -> tuple[float, float, float] | None:
    return (values[0], values[1], values[2]) if values else None


def _as6(values: tuple[float, ...] | None) -> tuple[float, float, float, float, float, float] | None:
    return (values[0], values[1], values[2], values[3], values[4], values[5]) if values else None


def frame_facts(ds: HeaderLike, n_frames: int) -> list[FrameFacts]:
    """Per-frame position, orientation, rescale and channel (functional groups when present)."""
    slope = _float(ds.get("RescaleSlope"))
    intercept = _float(ds.get("RescaleIntercept"))
    top_channel = channel_name(ds.get("ImageType"), ds.get("ComplexImageComponent"))
    position = _as3(_floats(ds.get("ImagePositionPatient"), 3))
    orientation = _as6(_floats(ds.get("ImageOrientationPatient"), 6))
    if n_frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [FrameFacts(position, orientation, slope or 1.0, intercept or 0.0, top_channel)]

    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _first_item(ds.get("SharedFunctionalGroupsSequence"))
    if per_frame is not None and len(per_frame) != n_frames:
        per_frame = None
    offsets: Sequence[Any] | None = ds.get("GridFrameOffsetVector")
    facts = []
    for i in range(n_frames):
        item = per_frame[i] if per_frame is not None else None
        plane_pos = _group(item, shared, "PlanePositionSequence")
        plane_orient = _group(item, shared, "PlaneOrientationSequence")
        transform = _group(item, shared, "PixelValueTransformationSequence")
        frame_type = _group(item, shared, "MRImageFrameTypeSequence")
        f_position = (
            _as3(_floats(plane_pos.get("ImagePositionPatient"), 3)) if plane_pos is not None else None
        )
        f_orient = (
            _as6(_floats(plane_orient.get("ImageOrientationPatient"), 6))
            if plane_orient is not None
            else None
        )
        f_orient = f_orient or orientation
        if f_position is None and position is not None and f_orient is not None and _is_multi(offsets):
            # RT Dose style: one position plus an offset per frame along the normal.
            step = _float(offsets[i]) if offsets is not None and i < len(offsets) else None
            if step is not None:
                row, col = f_orient[:3], f_orient[3:]
                normal = (
                    row[1] * col[2] - row[2] * col[1],
                    row[2] * col[0] - row[0] * col[2],
                    row[0] * col[1] - row[1] * col[0],
                )
                f_position = (
                    position[0] + step * normal[0],
                    position[1] + step * normal[1],
                    position[2] + step * normal[2],
                )
        f_slope = _float(transform.get("RescaleSlope")) if transform is not None else None
        f_intercept = _float(transform.get("RescaleIntercept")) if transform is not None else None
        channel = top_channel
        if frame_type is not None:
            channel = (
                channel_name(frame_type.get("FrameType"), frame_type.get("ComplexImageComponent")) or channel
            )
        facts.append(
            FrameFacts(
                f_position,
                f_orient if f_position is not None else None,
                f_slope if f_slope is not None else (slope or 1.0),
                f_intercept if f_intercept is not None else (intercept or 0.0),
                channel,
            )
        )
    return facts
