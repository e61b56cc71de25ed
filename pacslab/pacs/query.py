"""User filters → DICOM query keys: C-FIND identifiers and QIDO-RS parameters; answers → records.

Everything here is pure: no network, no state. The transports call these functions and
:func:`find_studies` (which needs a query runner) so that both speak the same filters.

Filter rules (what a user types):

- names and descriptions: ``*`` and ``?`` wildcards as typed; a value without wildcards is a
  prefix (``Doe`` finds ``Doe^Peter``); ``Doe, Peter`` is read as ``Doe^Peter``;
- IDs, accession numbers, modality and UIDs: exact (UIDs may be a list);
- dates: ``20240131``, ``2024-01-31``, ranges ``20240101-20240131``, open ranges
  ``20240101-`` / ``-20240131``, a :class:`datetime.date`, or a ``(start, end)`` pair with
  ``None`` for an open end.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PN_DELIMS, TEXT_VR_DELIMS

from pacslab.dicom_elements import encodings_of
from pacslab.pacs.client import InstanceMatch, PatientMatch, SeriesMatch, StudyMatch
from pacslab.pacs.errors import QueryFilterError

__all__ = [
    "LEVELS",
    "Answer",
    "Level",
    "QueryFilters",
    "RetrieveRequest",
    "StudyQueryOutcome",
    "answer_text",
    "date_filter",
    "find_identifier",
    "find_studies",
    "instance_from",
    "make_filters",
    "patient_from",
    "qido_fields",
    "qido_params",
    "record_from",
    "series_from",
    "study_from",
]

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
# One query answer: a C-FIND identifier, or a QIDO-RS result in DICOM JSON.
Answer = Dataset | Mapping[str, Any]
LEVELS: tuple[Level, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# Attributes asked back at each level (return keys), in addition to the matching keys.
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "STUDY": (
        "StudyInstanceUID",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "Rows",
        "Columns",
    ),
}

# Which filter goes to which attribute, and at which levels it is a matching key.
_FILTER_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "patient_name": ("PatientName", ("PATIENT", "STUDY")),
    "patient_id": ("PatientID", ("PATIENT", "STUDY", "SERIES", "IMAGE")),
    "patient_birth_date": ("PatientBirthDate", ("PATIENT", "STUDY")),
    "accession_number": ("AccessionNumber", ("STUDY",)),
    "study_date": ("StudyDate", ("STUDY",)),
    "modality": ("Modality", ("SERIES",)),
    "study_description": ("StudyDescription", ("STUDY",)),
    "series_description": ("SeriesDescription", ("SERIES",)),
    "study_uid": ("StudyInstanceUID", ("STUDY", "SERIES", "IMAGE")),
    "series_uid": ("SeriesInstanceUID", ("SERIES", "IMAGE")),
    "sop_instance_uid": ("SOPInstanceUID", ("IMAGE",)),
}

_DATE = r"\d{4}-?\d{2}-?\d{2}"
_RANGE = re.compile(rf"^(?P<start>{_DATE})?\s*(?:-|–|\.\.|to)\s*(?P<end>{_DATE})?$")
_SINGLE = re.compile(rf"^{_DATE}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


@dataclass(frozen=True)
class QueryFilters:
    """Checked, normalised filters (build with :func:`make_filters`)."""

    patient_name: str | None = None
    patient_id: str | None = None
    patient_birth_date: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    modality: str | None = None
    study_description: str | None = None
    series_description: str | None = None
    study_uid: tuple[str, ...] = ()
    series_uid: tuple[str, ...] = ()
    sop_instance_uid: tuple[str, ...] = ()
    limit: int | None = None

    def without(self, *names: str) -> QueryFilters:
        """A copy with the named filters cleared."""
        cleared: dict[str, Any] = {n: () if n.endswith("uid") else None for n in names}
        return replace(self, **cleared)


def _text(name: str, value: object, max_len: int = 64) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise QueryFilterError(name, value, "expected text")
    text = value.strip()
    if not text:
        return None
    if "\\" in text:
        raise QueryFilterError(name, value, "a backslash is not allowed (it separates DICOM values)")
    if not text.isprintable():
        raise QueryFilterError(name, value, "control characters are not allowed")
    if len(text) > max_len:
        raise QueryFilterError(name, value, f"at most {max_len} characters")
    return text


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _pattern(name: str, value: object) -> str | None:
    """Names and descriptions: wildcards as typed, otherwise a prefix match."""
    text = _text(name, value)
    if text is None:
        return None
    return text if _has_wildcard(text) else f"{text}*"


def _person_name(name: str, value: object) -> str | None:
    text = _text(name, value)
    if text is None:
        return None
    if "^" not in text and "," in text:
        family, _, given = text.partition(",")
        text = f"{family.strip()}^{given.strip()}"
    return text if _has_wildcard(text) else f"{text}*"


def _exact(name: str, value: object) -> str | None:
    """IDs and accession numbers: matched as typed (wildcards only if the user typed them)."""
    return _text(name, value)


def _parse_day(name: str, original: object, text: str) -> datetime.date:
    digits = text.replace("-", "")
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise QueryFilterError(name, original, f"{text!r} is not a calendar date") from None


def date_filter(name: str, value: object) -> str | None:
    """Turn a user's date or date range into a DICOM DA match value (``YYYYMMDD[-YYYYMMDD]``).

    Raises
    ------
    QueryFilterError
        When the value is not a date, a range, or the range ends before it starts.
    """
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.date().strftime("%Y%m%d")
    if isinstance(value, datetime.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise QueryFilterError(name, value, "a range is a (start, end) pair")
        start, end = (date_filter(name, v) for v in value)
        if start is None and end is None:
            return None
        return _range(name, value, start, end)
    if not isinstance(value, str):
        raise QueryFilterError(name, value, "expected a date like 20240131 or 2024-01-31, or a range")
    text = value.strip()
    if not text:
        return None
    if _SINGLE.match(text):
        return _parse_day(name, value, text).strftime("%Y%m%d")
    match = _RANGE.match(text)
    if not match or not (match["start"] or match["end"]):
        raise QueryFilterError(
            name,
            value,
            "expected a date (20240131, 2024-01-31) or a range (20240101-20240131, 20240101-, -20240131)",
        )
    start = _parse_day(name, value, match["start"]).strftime("%Y%m%d") if match["start"] else None
    end = _parse_day(name, value, match["end"]).strftime("%Y%m%d") if match["end"] else None
    return _range(name, value, start, end)


def _range(name: str, original: object, start: str | None, end: str | None) -> str:
    if start and end and start > end:
        raise QueryFilterError(name, original, f"the range ends ({end}) before it starts ({start})")
    return f"{start or ''}-{end or ''}"


def _uids(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items: Sequence[object]
    if isinstance(value, str):
        items = [v for v in re.split(r"[\\,\s]+", value) if v]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise QueryFilterError(name, value, "expected a UID or a list of UIDs")
    out = []
    for item in items:
        if not isinstance(item, str) or not _UID.match(item.strip()) or len(item.strip()) > 64:
            raise QueryFilterError(name, item, "not a DICOM UID (digits and dots, at most 64 characters)")
        out.append(item.strip())
    return tuple(dict.fromkeys(out))


def _modality(value: object) -> str | None:
    text = _text("modality", value, max_len=16)
    if text is None:
        return None
    text = text.upper()
    if not _MODALITY.match(text):
        raise QueryFilterError("modality", value, "expected a DICOM modality code such as CT, MR or CR")
    return text


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QueryFilterError("limit", value, "expected a positive whole number")
    return value


def make_filters(**filters: object) -> QueryFilters:
    """Check and normalise user filters.

    Parameters
    ----------
    **filters
        Any of the fields of :class:`QueryFilters`; ``None`` or empty text means no filter.

    Raises
    ------
    QueryFilterError
        For an unknown filter name or a value that cannot be queried.
    """
    known = set(QueryFilters.__dataclass_fields__)
    for name, value in filters.items():
        if name not in known:
            raise QueryFilterError(name, value, f"unknown filter (known: {', '.join(sorted(known))})")
    return QueryFilters(
        patient_name=_person_name("patient_name", filters.get("patient_name")),
        patient_id=_exact("patient_id", filters.get("patient_id")),
        patient_birth_date=date_filter("patient_birth_date", filters.get("patient_birth_date")),
        accession_number=_exact("accession_number", filters.get("accession_number")),
        study_date=date_filter("study_date", filters.get("study_date")),
        modality=_modality(filters.get("modality")),
        study_description=_pattern("study_description", filters.get("study_description")),
        series_description=_pattern("series_description", filters.get("series_description")),
        study_uid=_uids("study_uid", filters.get("study_uid")),
        series_uid=_uids("series_uid", filters.get("series_uid")),
        sop_instance_uid=_uids("sop_instance_uid", filters.get("sop_instance_uid")),
        limit=_limit(filters.get("limit")),
    )


def _needs_utf8(filters: QueryFilters) -> bool:
    values = (filters.patient_name, filters.study_description, filters.series_description, filters.patient_id)
    return any(v is not None and not v.isascii() for v in values)


def find_identifier(level: Level, filters: QueryFilters, modalities_in_study: bool = True) -> Dataset:
    """The C-FIND identifier for ``level``: matching keys from ``filters`` plus return keys.

    Parameters
    ----------
    level : {"PATIENT", "STUDY", "SERIES", "IMAGE"}
        The Query/Retrieve level.
    filters : QueryFilters
        From :func:`make_filters`.
    modalities_in_study : bool
        At study level, match ``modality`` on ModalitiesInStudy (set False for a PACS that
        does not support it; the caller then filters through a series-level query).
    """
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    # UTF-8 answers, and UTF-8 matching values when the user typed non-ASCII text.
    ds.SpecificCharacterSet = "ISO_IR 192" if _needs_utf8(filters) else ""
    for keyword in RETURN_KEYS[level]:
        setattr(ds, keyword, None)
    for name, (keyword, levels) in _FILTER_KEYS.items():
        value = getattr(filters, name)
        if level not in levels or not value:
            continue
        setattr(ds, keyword, "\\".join(value) if isinstance(value, tuple) else value)
    if level == "STUDY" and filters.modality and modalities_in_study:
        ds.ModalitiesInStudy = filters.modality
    return ds


def qido_params(level: Level, filters: QueryFilters) -> dict[str, str]:
    """QIDO-RS search filters (attribute keyword → value) for ``level``."""
    params: dict[str, str] = {}
    for name, (keyword, levels) in _FILTER_KEYS.items():
        value = getattr(filters, name)
        if level not in levels or not value:
            continue
        params[keyword] = ",".join(value) if isinstance(value, tuple) else value
    if level == "STUDY" and filters.modality:
        params["ModalitiesInStudy"] = filters.modality
    return params


def qido_fields(level: Level) -> list[str]:
    """Attributes to ask for with ``includefield`` (those QIDO-RS does not return by default)."""
    return list(RETURN_KEYS[level])


@dataclass(frozen=True)
class RetrieveRequest:
    """What to retrieve: a study, a series, or instances of a series."""

    level: str
    study_uid: str
    series_uid: str = ""
    sop_instance_uids: tuple[str, ...] = ()

    @classmethod
    def make(
        cls, study_uid: str, series_uid: str | None = None, sop_instance_uids: Sequence[str] | None = None
    ) -> RetrieveRequest:
        """Check the UIDs and build the request (level from what is given)."""
        study = make_filters(study_uid=study_uid).study_uid
        if len(study) != 1:
            raise QueryFilterError("study_uid", study_uid, "give exactly one Study Instance UID")
        if series_uid is None:
            return cls("STUDY", study[0])
        series = make_filters(series_uid=series_uid).series_uid
        if len(series) != 1:
            raise QueryFilterError("series_uid", series_uid, "give exactly one Series Instance UID")
        if sop_instance_uids is None:
            return cls("SERIES", study[0], series[0])
        uids = make_filters(sop_instance_uid=list(sop_instance_uids)).sop_instance_uid
        if not uids:
            raise QueryFilterError(
                "sop_instance_uids", sop_instance_uids, "give at least one SOP Instance UID"
            )
        return cls("IMAGE", study[0], series[0], uids)

    def identifier(self) -> Dataset:
        """The C-GET/C-MOVE identifier."""
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        ds.StudyInstanceUID = self.study_uid
        if self.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = self.series_uid
        if self.level == "IMAGE":
            ds.SOPInstanceUID = list(self.sop_instance_uids)
        return ds


class _Answer:
    """Reads the few attributes a record needs from one answer.

    A C-FIND answer arrives as still-encoded elements; pydicom's full conversion of each
    (about 100 us) made reading 2,000 answers slower than receiving them. Text is decoded here
    straight from the element's bytes with pydicom's own character-set decoding; every other
    value goes through pydicom as usual. A QIDO-RS answer is read from its DICOM JSON as is
    (building a pydicom data set from it cost as much again).
    """

    def __init__(self, answer: Answer) -> None:
        self.json: Mapping[str, Any] | None = None if isinstance(answer, Dataset) else answer
        self.ds = answer if isinstance(answer, Dataset) else Dataset()
        # The elements as they are (raw until something converted them), by tag as a plain int.
        self.elements: dict[int, Any] = {int(tag): elem for tag, elem in self.ds.items()}
        self._encodings: list[str] | None = None

    def _json_text(self, tag: int) -> str:
        assert self.json is not None
        element = self.json.get(f"{tag:08X}")
        values = element.get("Value") if element else None
        if not values:
            return ""
        parts = []
        for value in values:
            if isinstance(value, Mapping):  # a person name: its component groups
                groups = [str(value.get(g, "")) for g in ("Alphabetic", "Ideographic", "Phonetic")]
                parts.append("=".join(groups).rstrip("="))
            else:
                parts.append(str(value))
        return "\\".join(parts).strip()

    def _codecs(self) -> list[str]:
        if self._encodings is None:
            charset = self.elements.get(_SPECIFIC_CHARACTER_SET)
            if isinstance(charset, RawDataElement):
                self._encodings = encodings_of(charset)
            else:
                self._encodings = convert_encodings(charset.value or None if charset is not None else None)
        return self._encodings

    def text(self, keyword: str) -> str:
        tag = _tag_of(keyword)
        if tag is None:
            return ""
        if self.json is not None:
            return self._json_text(tag)
        elem = self.elements.get(tag)
        if elem is None:
            return ""
        if isinstance(elem, RawDataElement):
            vr = elem.VR or dictionary_VR(tag)
            if vr in _TEXT_VRS:
                if not elem.value:
                    return ""
                delimiters = PN_DELIMS if vr == "PN" else TEXT_VR_DELIMS
                if vr in _CHARSET_VRS:
                    text = decode_bytes(elem.value, self._codecs(), delimiters)
                else:
                    text = elem.value.decode("ascii", errors="replace")
                return text.strip(" \x00")
        value = self.ds[tag].value
        if value is None:
            return ""
        if isinstance(value, MultiValue | list | tuple):
            return "\\".join(str(v) for v in value)
        return str(value).strip()

    def number(self, keyword: str) -> int | None:
        text = self.text(keyword)
        try:
            return int(text) if text else None
        except ValueError:
            return None

    def values(self, keyword: str) -> tuple[str, ...]:
        return tuple(v for v in self.text(keyword).split("\\") if v)


_SPECIFIC_CHARACTER_SET = 0x00080005
_tag_of = functools.lru_cache(maxsize=256)(tag_for_keyword)
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"}
)
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})


def answer_text(answer: Answer, keyword: str) -> str:
    """The value of ``keyword`` in one answer, as text ("" when absent)."""
    return _Answer(answer).text(keyword)


def patient_from(ds: Answer) -> PatientMatch:
    """A :class:`PatientMatch` from a C-FIND answer or a QIDO-RS JSON data set."""
    a = _Answer(ds)
    return PatientMatch(
        patient_id=a.text("PatientID"),
        patient_name=a.text("PatientName"),
        patient_birth_date=a.text("PatientBirthDate"),
        patient_sex=a.text("PatientSex"),
        n_studies=a.number("NumberOfPatientRelatedStudies"),
    )


def study_from(ds: Answer) -> StudyMatch:
    """A :class:`StudyMatch` from a C-FIND answer or a QIDO-RS JSON data set."""
    a = _Answer(ds)
    return StudyMatch(
        study_uid=a.text("StudyInstanceUID"),
        patient_id=a.text("PatientID"),
        patient_name=a.text("PatientName"),
        patient_birth_date=a.text("PatientBirthDate"),
        study_date=a.text("StudyDate"),
        study_time=a.text("StudyTime"),
        accession_number=a.text("AccessionNumber"),
        study_description=a.text("StudyDescription"),
        modalities=a.values("ModalitiesInStudy"),
        n_series=a.number("NumberOfStudyRelatedSeries"),
        n_instances=a.number("NumberOfStudyRelatedInstances"),
    )


def series_from(ds: Answer) -> SeriesMatch:
    """A :class:`SeriesMatch` from a C-FIND answer or a QIDO-RS JSON data set."""
    a = _Answer(ds)
    return SeriesMatch(
        series_uid=a.text("SeriesInstanceUID"),
        study_uid=a.text("StudyInstanceUID"),
        modality=a.text("Modality"),
        series_number=a.number("SeriesNumber"),
        series_description=a.text("SeriesDescription"),
        series_date=a.text("SeriesDate"),
        body_part=a.text("BodyPartExamined"),
        n_instances=a.number("NumberOfSeriesRelatedInstances"),
        patient_id=a.text("PatientID"),
        patient_name=a.text("PatientName"),
    )


def instance_from(ds: Answer) -> InstanceMatch:
    """An :class:`InstanceMatch` from a C-FIND answer or a QIDO-RS JSON data set."""
    a = _Answer(ds)
    return InstanceMatch(
        sop_instance_uid=a.text("SOPInstanceUID"),
        sop_class_uid=a.text("SOPClassUID"),
        series_uid=a.text("SeriesInstanceUID"),
        study_uid=a.text("StudyInstanceUID"),
        instance_number=a.number("InstanceNumber"),
        rows=a.number("Rows"),
        columns=a.number("Columns"),
    )


RECORD_TYPES: Mapping[str, type] = {
    "PATIENT": PatientMatch,
    "STUDY": StudyMatch,
    "SERIES": SeriesMatch,
    "IMAGE": InstanceMatch,
}
_CONVERTERS: Mapping[str, Callable[[Answer], Any]] = {
    "PATIENT": patient_from,
    "STUDY": study_from,
    "SERIES": series_from,
    "IMAGE": instance_from,
}


def record_from(level: Level, ds: Answer) -> Any:
    """The record type of ``level`` built from one answer."""
    return _CONVERTERS[level](ds)


# A query runner: (level, filters, modalities_in_study) -> (answers, truncated)
QueryRunner = Callable[[Level, QueryFilters, bool], tuple[list[Answer], bool]]


@dataclass
class StudyQueryOutcome:
    """Study answers plus what was learnt about the PACS's ModalitiesInStudy support."""

    studies: list[StudyMatch]
    truncated: bool
    modalities_in_study: bool | None
    messages: list[str] = field(default_factory=list)


def find_studies(
    run: QueryRunner, filters: QueryFilters, modalities_in_study: bool | None
) -> StudyQueryOutcome:
    """Study-level query with the modality filter made reliable.

    ``modalities_in_study`` is what is known about the PACS: True (it matches
    ModalitiesInStudy), False (it does not), None (unknown yet). When the answers show the
    PACS ignored the key (studies without the modality, or no ModalitiesInStudy at all), or
    nothing matched and support is unknown, the modality is matched through a series-level
    query (Modality) and the studies are narrowed to those.
    """
    messages: list[str] = []
    if not filters.modality:
        answers, truncated = run("STUDY", filters, True)
        return StudyQueryOutcome([study_from(a) for a in answers], truncated, modalities_in_study)
    modality = filters.modality
    if modalities_in_study is not False:
        answers, truncated = run("STUDY", filters, True)
        studies = [study_from(a) for a in answers]
        if studies and all(modality in s.modalities for s in studies):
            return StudyQueryOutcome(studies, truncated, True)
        if not studies and modalities_in_study:
            return StudyQueryOutcome(studies, truncated, True)
        messages.append("the PACS does not match ModalitiesInStudy; matched Modality at series level")
    # Series-level matching of the modality, then the study filters on those studies.
    series_filters = QueryFilters(
        modality=modality, study_uid=filters.study_uid, patient_id=filters.patient_id
    )
    series, _ = run("SERIES", series_filters, True)
    wanted: dict[str, set[str]] = {}
    for answer in series:
        match = series_from(answer)
        if match.study_uid and match.modality.upper() == modality:
            wanted.setdefault(match.study_uid, set()).add(match.modality)
    if not wanted:
        return StudyQueryOutcome([], False, False, messages)
    study_filters = replace(filters.without("modality", "study_uid"), study_uid=tuple(wanted))
    if filters.study_uid:
        study_filters = replace(study_filters, study_uid=tuple(u for u in wanted if u in filters.study_uid))
    answers, truncated = run("STUDY", study_filters, False)
    studies = []
    for a in answers:
        study = study_from(a)
        if study.study_uid in wanted:
            mods = tuple(sorted(set(study.modalities) | wanted[study.study_uid]))
            studies.append(replace(study, modalities=mods))
    return StudyQueryOutcome(studies, truncated, False, messages)
