"""C-FIND matching for the embedded PACS (DICOM PS3.4 C.2.2.2), as pure functions.

A stored entity is a *record*: a DICOM JSON mapping (``{"00100010": {"vr": "PN", "Value": [...]}}``)
merged from the patient, study, series and instance levels at and above the query level. A query
is a pydicom identifier. Each key of the identifier is matched against the record:

* an empty value (or a lone ``*``) matches everything and only asks for the value back;
* UID keys may list several UIDs (``1.2\\1.3``): any of them matches;
* DA, TM and DT keys accept ranges ``a-b``, ``-b`` and ``a-``;
* string keys accept the wildcards ``*`` and ``?``; person names match case-insensitively;
* a multi-valued query or record (``ModalitiesInStudy``, ``ImageType``) matches when any value
  of the one matches any value of the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag, Tag

__all__ = [
    "LEVELS",
    "Record",
    "json_tag",
    "level_of",
    "match_identifier",
    "match_values",
    "query_values",
    "record_values",
    "response_identifier",
]

Record = Mapping[str, Mapping[str, Any]]

# Query/retrieve levels from the top of the hierarchy down.
LEVELS: tuple[str, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# Attributes of the patient, study and series levels (PS3.4 tables C.6-1 to C.6-3 and the
# modules they come from); everything else belongs to the image level.
_PATIENT = (
    "PatientName PatientID IssuerOfPatientID IssuerOfPatientIDQualifiersSequence TypeOfPatientID "
    "PatientBirthDate PatientBirthTime PatientSex OtherPatientIDsSequence OtherPatientNames "
    "PatientBirthName PatientMotherBirthName EthnicGroup PatientComments PatientSpeciesDescription "
    "PatientBreedDescription ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization "
    "PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence "
    "ReferencedPatientSequence QualityControlSubject StrainDescription "
    "NumberOfPatientRelatedStudies NumberOfPatientRelatedSeries NumberOfPatientRelatedInstances"
)
_STUDY = (
    "StudyDate StudyTime AccessionNumber IssuerOfAccessionNumberSequence StudyID StudyInstanceUID "
    "ReferringPhysicianName ReferringPhysicianIdentificationSequence StudyDescription "
    "ProcedureCodeSequence PhysiciansOfRecord NameOfPhysiciansReadingStudy "
    "AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence ReferencedStudySequence "
    "PatientAge PatientSize PatientWeight Occupation AdditionalPatientHistory MedicalAlerts "
    "Allergies SmokingStatus PregnancyStatus ReasonForPerformedProcedureCodeSequence "
    "ModalitiesInStudy SOPClassesInStudy NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances"
)
_SERIES = (
    "Modality SeriesInstanceUID SeriesNumber SeriesDescription SeriesDescriptionCodeSequence "
    "SeriesDate SeriesTime Laterality PerformingPhysicianName ProtocolName OperatorsName "
    "BodyPartExamined PatientPosition PerformedProcedureStepID PerformedProcedureStepStartDate "
    "PerformedProcedureStepStartTime PerformedProcedureStepDescription RequestAttributesSequence "
    "ReferencedPerformedProcedureStepSequence AnatomicalOrientationType SmallestPixelValueInSeries "
    "LargestPixelValueInSeries Manufacturer InstitutionName InstitutionAddress StationName "
    "InstitutionalDepartmentName ManufacturerModelName DeviceSerialNumber SoftwareVersions "
    "FrameOfReferenceUID PositionReferenceIndicator NumberOfSeriesRelatedInstances"
)


def _tags(keywords: str) -> frozenset[int]:
    found = (tag_for_keyword(k) for k in keywords.split())
    return frozenset(t for t in found if t is not None)


_LEVEL_TAGS: dict[str, frozenset[int]] = {
    "PATIENT": _tags(_PATIENT),
    "STUDY": _tags(_STUDY),
    "SERIES": _tags(_SERIES),
}

_STRING_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_NUMBER_VRS = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})
_RANGE_VRS = frozenset({"DA", "DT", "TM"})
# Keys that describe the request rather than the stored data.
_NOT_MATCHED = frozenset(
    {
        int(Tag("QueryRetrieveLevel")),
        int(Tag("SpecificCharacterSet")),
        int(Tag("RetrieveAETitle")),
        int(Tag("InstanceAvailability")),
        int(Tag("TimezoneOffsetFromUTC")),
        int(Tag("QueryRetrieveView")),
    }
)


def level_of(tag: int) -> str:
    """The query/retrieve level an attribute belongs to (``"IMAGE"`` for all others)."""
    for level, tags in _LEVEL_TAGS.items():
        if tag in tags:
            return level
    return "IMAGE"


def json_tag(tag: int | BaseTag) -> str:
    """The DICOM JSON key of ``tag`` (``"00100010"``)."""
    return f"{int(tag):08X}"


def query_values(elem: DataElement) -> list[str]:
    """The values of an identifier key as strings; empty for universal matching."""
    value = elem.value
    if value is None or elem.VR == "SQ":
        return []
    items = list(value) if elem.VM > 1 else [value]
    texts = [str(v).strip() for v in items]
    if all(t in ("", "*") for t in texts):
        return []
    return [t for t in texts if t]


def record_values(element: Mapping[str, Any] | None) -> list[str]:
    """The values of a DICOM JSON element as strings (person names in alphabetic form)."""
    if not element:
        return []
    values = []
    for value in element.get("Value", []):
        if isinstance(value, Mapping):
            values.append(str(value.get("Alphabetic", "")))
        else:
            values.append(str(value).strip())
    return values


@lru_cache(maxsize=256)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _normalise_time(vr: str, value: str) -> str:
    # ACR-NEMA style separators (``2024.01.31``, ``12:30``) still occur in old files.
    return value.replace(".", "") if vr == "DA" else value.replace(":", "") if vr == "TM" else value


def _normalise_name(value: str) -> str:
    return value.rstrip("=").rstrip("^").strip()


def _match_range(vr: str, query: str, value: str) -> bool:
    value = _normalise_time(vr, value)
    if "-" not in query or (vr == "DT" and query.count("-") != 1):
        return _normalise_time(vr, query) == value
    lower, upper = (_normalise_time(vr, part.strip()) for part in query.split("-", 1))
    if lower and value < lower:
        return False
    # An upper bound covers everything it is a prefix of: ``-1200`` includes ``120059.9``.
    return not upper or value[: len(upper)] <= upper


def _match_one(vr: str, query: str, value: str) -> bool:
    if vr in _RANGE_VRS:
        return _match_range(vr, query, value)
    if vr in _NUMBER_VRS:
        try:
            return float(query) == float(value)
        except ValueError:
            return query == value
    if vr in _STRING_VRS:
        ignore_case = vr == "PN"
        if vr == "PN":
            query, value = _normalise_name(query), _normalise_name(value)
        if "*" in query or "?" in query:
            return _wildcard(query, ignore_case).fullmatch(value) is not None
        return query.casefold() == value.casefold() if ignore_case else query == value
    return query == value


def match_values(vr: str, query: list[str], stored: list[str]) -> bool:
    """Whether stored values match query values of representation ``vr``.

    Parameters
    ----------
    vr : str
        Value representation of the attribute (``"PN"``, ``"DA"``, ``"UI"`` ...).
    query : list of str
        The identifier's values; empty means universal matching.
    stored : list of str
        The record's values; empty never matches a non-empty query.

    Returns
    -------
    bool
        ``True`` when any query value matches any stored value.
    """
    if not query:
        return True
    return any(_match_one(vr, q, v) for q in query for v in stored)


def match_identifier(identifier: Dataset, record: Record, level: str) -> bool:
    """Whether ``record`` matches every key of ``identifier`` that applies at ``level``.

    Keys of levels below ``level``, sequences and private keys are return-only: they do not
    restrict the match.
    """
    depth = LEVELS.index(level)
    for elem in identifier:
        tag = int(elem.tag)
        if tag in _NOT_MATCHED or elem.tag.is_private or elem.tag.group in (0x0000, 0x0002):
            continue
        if LEVELS.index(level_of(tag)) > depth:
            continue
        wanted = query_values(elem)
        if wanted and not match_values(elem.VR, wanted, record_values(record.get(json_tag(tag)))):
            return False
    return True


def _is_ascii(element: Mapping[str, Any]) -> bool:
    return json.dumps(element, ensure_ascii=False).isascii()


def response_identifier(identifier: Dataset, record: Record, level: str) -> Dataset:
    """The C-FIND response for a matching ``record``: every key the identifier asked for.

    Keys the record lacks, and keys of levels below ``level``, come back empty. The unique
    keys of ``level`` and the levels above it are always returned.
    """
    depth = LEVELS.index(level)
    wanted: dict[str, Any] = {}
    for elem in identifier:
        tag = int(elem.tag)
        if tag in _NOT_MATCHED or elem.tag.is_private or elem.tag.group in (0x0000, 0x0002):
            continue
        key = json_tag(tag)
        stored = record.get(key) if LEVELS.index(level_of(tag)) <= depth else None
        wanted[key] = dict(stored) if stored else {"vr": elem.VR}
    for keyword in _UNIQUE_KEYS[: depth + 1]:
        key = json_tag(Tag(keyword))
        if key not in wanted and key in record:
            wanted[key] = dict(record[key])
    response = Dataset.from_json(wanted)
    response.QueryRetrieveLevel = level
    if not all(_is_ascii(element) for element in wanted.values()):
        response.SpecificCharacterSet = "ISO_IR 192"
    return response


_UNIQUE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
