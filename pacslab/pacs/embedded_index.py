"""SQLite index of the embedded PACS: patients, studies, series and instances.

Each entity row keeps the attributes of its own level as DICOM JSON (bulk data left out), so a
C-FIND can answer any return key of its level, and the counts a study browser asks for
(``NumberOfStudyRelatedInstances``, ``ModalitiesInStudy`` ...) come from SQL aggregates.
SQL narrows the candidates by the hierarchy's unique keys; :mod:`.embedded_matching` decides.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

from pacslab.pacs.embedded_matching import (
    LEVELS,
    json_tag,
    level_of,
    match_identifier,
    query_values,
)

__all__ = ["InvalidIdentifierError", "PacsIndex", "StoredInstance"]

# Query/Retrieve information models, by the UID fragment shared by their FIND/GET/MOVE classes.
PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1."
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT PRIMARY KEY,
    header TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(patient_id),
    header TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL,
    header TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series(series_uid),
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    instance_number INTEGER,
    file TEXT NOT NULL,
    header TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
"""

# Never copied into the index: pixel and other bulk data, which stay in the stored file.
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_MAX_ELEMENT_JSON = 8192
# SQLite's default limit on bound parameters is 999 in older builds.
_CHUNK = 500

# Unique key of each level and the SQL column that holds it.
_UNIQUE = {
    "PATIENT": ("PatientID", "p.patient_id"),
    "STUDY": ("StudyInstanceUID", "st.study_uid"),
    "SERIES": ("SeriesInstanceUID", "se.series_uid"),
    "IMAGE": ("SOPInstanceUID", "i.sop_instance_uid"),
}

_SELECT = {
    "PATIENT": """
        SELECT p.patient_id, p.header, NULL, NULL, NULL,
               (SELECT COUNT(*) FROM studies s2 WHERE s2.patient_id = p.patient_id),
               (SELECT COUNT(*) FROM series se2 JOIN studies s2 ON se2.study_uid = s2.study_uid
                 WHERE s2.patient_id = p.patient_id),
               (SELECT COUNT(*) FROM instances i2 JOIN series se2 ON i2.series_uid = se2.series_uid
                 JOIN studies s2 ON se2.study_uid = s2.study_uid WHERE s2.patient_id = p.patient_id),
               NULL, NULL
        FROM patients p""",
    "STUDY": """
        SELECT st.study_uid, p.header, st.header, NULL, NULL,
               NULL,
               (SELECT COUNT(*) FROM series se2 WHERE se2.study_uid = st.study_uid),
               (SELECT COUNT(*) FROM instances i2 JOIN series se2 ON i2.series_uid = se2.series_uid
                 WHERE se2.study_uid = st.study_uid),
               (SELECT GROUP_CONCAT(DISTINCT se2.modality) FROM series se2
                 WHERE se2.study_uid = st.study_uid AND se2.modality != ''),
               (SELECT GROUP_CONCAT(DISTINCT i2.sop_class_uid) FROM instances i2
                 JOIN series se2 ON i2.series_uid = se2.series_uid WHERE se2.study_uid = st.study_uid)
        FROM studies st JOIN patients p ON st.patient_id = p.patient_id""",
    "SERIES": """
        SELECT se.series_uid, p.header, st.header, se.header, NULL,
               NULL, NULL,
               (SELECT COUNT(*) FROM instances i2 WHERE i2.series_uid = se.series_uid),
               NULL, NULL
        FROM series se JOIN studies st ON se.study_uid = st.study_uid
        JOIN patients p ON st.patient_id = p.patient_id""",
    "IMAGE": """
        SELECT i.sop_instance_uid, p.header, st.header, se.header, i.header,
               NULL, NULL, NULL, NULL, NULL
        FROM instances i JOIN series se ON i.series_uid = se.series_uid
        JOIN studies st ON se.study_uid = st.study_uid
        JOIN patients p ON st.patient_id = p.patient_id""",
}

# Names of the aggregate columns per level, as the attributes they answer.
_COUNTS = {
    "PATIENT": ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                "NumberOfPatientRelatedInstances", None, None),
    "STUDY": (None, "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
              "ModalitiesInStudy", "SOPClassesInStudy"),
    "SERIES": (None, None, "NumberOfSeriesRelatedInstances", None, None),
    "IMAGE": (None, None, None, None, None),
}  # fmt: skip
_COUNT_VR = {"ModalitiesInStudy": "CS", "SOPClassesInStudy": "UI"}


class InvalidIdentifierError(ValueError):
    """A C-FIND/C-GET/C-MOVE identifier the information model cannot answer."""


@dataclass(frozen=True)
class StoredInstance:
    """One stored file, as a retrieve needs it."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    file: str  # relative to the PACS root


def _element_json(elem: DataElement) -> dict[str, Any] | None:
    if elem.VR in _BULK_VRS or elem.tag.is_private or elem.tag.group in (0x0000, 0x0002):
        return None
    try:
        value = elem.to_json_dict(None, 1024)
    except (ValueError, TypeError, AttributeError):
        # A malformed value cannot be answered; the instance is still stored and retrievable.
        return None
    return value if len(json.dumps(value)) <= _MAX_ELEMENT_JSON else None


def split_levels(ds: Dataset) -> dict[str, dict[str, Any]]:
    """The attributes of ``ds`` as DICOM JSON, grouped by query/retrieve level."""
    levels: dict[str, dict[str, Any]] = {level: {} for level in LEVELS}
    for elem in ds:
        value = _element_json(elem)
        if value is not None:
            levels[level_of(int(elem.tag))][json_tag(elem.tag)] = value
    return levels


def _uid_list(identifier: Dataset, keyword: str) -> list[str] | None:
    """Values of a unique key when it selects entities exactly (no wildcard); else None."""
    if keyword not in identifier:
        return None
    values = query_values(identifier[keyword])
    if not values or any("*" in v or "?" in v for v in values):
        return None
    return values


def _model_root(model: str) -> str:
    if model.startswith(PATIENT_ROOT):
        return "PATIENT"
    if model.startswith(STUDY_ROOT):
        return "STUDY"
    raise InvalidIdentifierError(f"unsupported query/retrieve information model {model}")


def query_level(identifier: Dataset, model: str) -> str:
    """The QueryRetrieveLevel of ``identifier``, checked against the information model."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in LEVELS:
        raise InvalidIdentifierError(f"QueryRetrieveLevel must be one of {LEVELS}, got {level!r}")
    if _model_root(model) == "STUDY" and level == "PATIENT":
        raise InvalidIdentifierError("the Study Root model has no PATIENT level; use Patient Root")
    return level


class PacsIndex:
    """The SQLite index of one embedded PACS.

    Parameters
    ----------
    path : Path
        The SQLite file; created with its tables when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # SQLite allows one writer; C-STOREs arrive on several association threads.
        self._write_lock = threading.Lock()
        # One connection per thread: opening and closing per call made every close a WAL
        # checkpoint, the main cost of indexing.
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, inside a transaction committed on success."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0)
            # In WAL mode NORMAL keeps the index consistent after a crash without an fsync
            # per commit; an instance lost that way is simply sent again.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        with db:
            yield db

    def add(self, ds: Dataset, file: str, transfer_syntax_uid: str) -> bool:
        """Index one stored instance; returns ``True`` when its SOP Instance UID was new.

        The first instance of a patient, study or series sets that entity's attributes.
        """
        levels = split_levels(ds)
        patient_id = str(ds.get("PatientID", "") or "")
        study_uid = str(ds.StudyInstanceUID)
        series_uid = str(ds.SeriesInstanceUID)
        sop_uid = str(ds.SOPInstanceUID)
        number = ds.get("InstanceNumber")
        with self._write_lock, self._connect() as db:
            new = (
                db.execute("SELECT 1 FROM instances WHERE sop_instance_uid = ?", (sop_uid,)).fetchone()
                is None
            )
            db.execute(
                "INSERT OR IGNORE INTO patients VALUES (?, ?)",
                (patient_id, json.dumps(levels["PATIENT"])),
            )
            db.execute(
                "INSERT OR IGNORE INTO studies VALUES (?, ?, ?)",
                (study_uid, patient_id, json.dumps(levels["STUDY"])),
            )
            db.execute(
                "INSERT OR IGNORE INTO series VALUES (?, ?, ?, ?)",
                (series_uid, study_uid, str(ds.get("Modality", "") or ""), json.dumps(levels["SERIES"])),
            )
            db.execute(
                "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sop_uid,
                    series_uid,
                    str(ds.SOPClassUID),
                    transfer_syntax_uid,
                    int(number) if number is not None and str(number).strip() else None,
                    file,
                    json.dumps(levels["IMAGE"]),
                ),
            )
        return new

    def count(self, table: str = "instances") -> int:
        """How many rows ``table`` (patients, studies, series, instances) holds."""
        if table not in {"patients", "studies", "series", "instances"}:
            raise ValueError(f"unknown table {table!r}; use patients, studies, series or instances")
        with self._connect() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def _records(self, level: str, identifier: Dataset) -> Iterator[tuple[str, dict[str, Any]]]:
        """Candidate (unique key, record) pairs at ``level``, narrowed by exact unique keys."""
        conditions, params = [], []
        for lvl in LEVELS[: LEVELS.index(level) + 1]:
            keyword, column = _UNIQUE[lvl]
            values = _uid_list(identifier, keyword)
            if values is not None:
                conditions.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        sql = _SELECT[level] + (" WHERE " + " AND ".join(conditions) if conditions else "")
        with self._connect() as db:
            rows = db.execute(sql, params).fetchall()
        for key, *headers_and_counts in rows:
            record: dict[str, Any] = {}
            for header in headers_and_counts[:4]:
                if header:
                    record.update(json.loads(header))
            for name, value in zip(_COUNTS[level], headers_and_counts[4:], strict=True):
                if name is None:
                    continue
                tag = json_tag(Tag(name))
                if name in _COUNT_VR:
                    values = sorted(value.split(",")) if value else []
                    record[tag] = {"vr": _COUNT_VR[name], "Value": values}
                else:
                    record[tag] = {"vr": "IS", "Value": [int(value or 0)]}
            yield key, record

    def matches(self, identifier: Dataset, model: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The (unique key, record) pairs matching a C-FIND identifier.

        Raises
        ------
        InvalidIdentifierError
            When the level is missing or not part of the information model ``model``.
        """
        level = query_level(identifier, model)
        for key, record in self._records(level, identifier):
            if match_identifier(identifier, record, level):
                yield key, record

    def instances(self, identifier: Dataset, model: str) -> list[StoredInstance]:
        """Every stored instance under the entities a C-GET/C-MOVE identifier matches."""
        level = query_level(identifier, model)
        keys = [key for key, _ in self.matches(identifier, model)]
        column = {
            "PATIENT": "st.patient_id",
            "STUDY": "se.study_uid",
            "SERIES": "i.series_uid",
            "IMAGE": "i.sop_instance_uid",
        }[level]
        found: list[StoredInstance] = []
        with self._connect() as db:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                rows = db.execute(
                    "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.file"
                    " FROM instances i JOIN series se ON i.series_uid = se.series_uid"
                    " JOIN studies st ON se.study_uid = st.study_uid"
                    f" WHERE {column} IN ({', '.join('?' * len(chunk))})"
                    " ORDER BY st.study_uid, se.series_uid, i.instance_number, i.sop_instance_uid",
                    chunk,
                ).fetchall()
                found.extend(StoredInstance(*row) for row in rows)
        return found
