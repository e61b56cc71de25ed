"""The SQLite catalog: patients, studies, series, instances and jobs.

Listing and searching read only this database. It runs in WAL mode so readers never block the
writer; every change is one ``BEGIN IMMEDIATE`` transaction, so two writers (threads or
processes) queue instead of interleaving.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacslab.store.errors import CatalogError, JobNotFound, SeriesNotFound, StoreFull
from pacslab.store.records import InstanceRecord, JobRecord, SeriesInfo, StudyRecord, utc_now
from pacslab.store.slices import SeriesMeta

__all__ = ["Catalog", "SeriesContent", "date_range_clause", "wildcard_to_like"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT PRIMARY KEY,
    patient_name TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(patient_id),
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    study_description TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL DEFAULT '',
    series_description TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    n_slices INTEGER NOT NULL DEFAULT 0,
    rows INTEGER NOT NULL DEFAULT 0,
    cols INTEGER NOT NULL DEFAULT 0,
    channels TEXT NOT NULL DEFAULT '[""]',
    dtype TEXT NOT NULL DEFAULT '',
    pixel_spacing TEXT NOT NULL DEFAULT '[1.0, 1.0]',
    slice_thickness REAL,
    spacing_between_slices REAL,
    rescale_slope REAL NOT NULL DEFAULT 1.0,
    rescale_intercept REAL NOT NULL DEFAULT 0.0,
    window_presets TEXT NOT NULL DEFAULT '[]',
    geometry_warnings TEXT NOT NULL DEFAULT '[]',
    frame_of_reference_uid TEXT NOT NULL DEFAULT '',
    image_orientation TEXT NOT NULL DEFAULT '[]',
    path TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 0,
    format_version INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE TABLE IF NOT EXISTS instances (
    series_uid TEXT NOT NULL REFERENCES series(series_uid) ON DELETE CASCADE,
    slice_index INTEGER NOT NULL,
    channel INTEGER NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    frame INTEGER NOT NULL,
    sop_class_uid TEXT NOT NULL DEFAULT '',
    instance_number INTEGER,
    position REAL,
    PRIMARY KEY (series_uid, slice_index, channel)
);
CREATE INDEX IF NOT EXISTS instances_sop ON instances(sop_instance_uid);
CREATE TABLE IF NOT EXISTS superseded_files (path TEXT PRIMARY KEY, since TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    processor TEXT NOT NULL,
    version TEXT NOT NULL,
    params_json TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    result_path TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    created TEXT NOT NULL,
    finished TEXT
);
"""

_SERIES_SELECT = """
SELECT s.*, st.patient_id AS patient_id, COALESCE(p.patient_name, '') AS patient_name
FROM series s
JOIN studies st ON st.study_uid = s.study_uid
LEFT JOIN patients p ON p.patient_id = st.patient_id
"""


@dataclass(frozen=True)
class SeriesContent:
    """What a finished series file holds, for the catalog row and its instance rows."""

    n_slices: int
    rows: int
    cols: int
    channels: tuple[str, ...]
    dtype: str
    pixel_spacing: tuple[float, float]
    slice_thickness: float | None
    spacing_between_slices: float | None
    rescale_slope: float
    rescale_intercept: float
    window_presets: tuple[tuple[str, float, float], ...]
    geometry_warnings: tuple[str, ...]
    image_orientation: tuple[float, ...]
    format_version: int
    instances: tuple[tuple[int, int, str, int, str, int | None, float | None], ...]


def wildcard_to_like(pattern: str) -> str:
    """DICOM wildcards (``*``, ``?``) to a SQL LIKE pattern (escape character ``\\``)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def date_range_clause(column: str, value: str) -> tuple[str, list[str]]:
    """A DICOM date or range (``20240101``, ``20240101-20241231``, ``-2024``, ``2024-``) as SQL."""
    value = value.strip()
    if "-" not in value:
        return f"{column} = ?", [value]
    low, high = (part.strip() for part in value.split("-", 1))
    clauses, params = [], []
    if low:
        clauses.append(f"{column} >= ?")
        params.append(low)
    if high:
        clauses.append(f"{column} <= ?")
        params.append(high.ljust(8, "9") if len(high) < 8 else high)
    return (" AND ".join(clauses) or "1", params)


def _is_disk_full(error: sqlite3.Error) -> bool:
    return "disk is full" in str(error) or "disk I/O error" in str(error)


class Catalog:
    """Thread-safe access to the catalog database (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        db = self.connection()
        row = self._schema_version(db)
        if row is None:
            # A new catalog: create it (IF NOT EXISTS: another process may be doing the same).
            try:
                db.executescript(_SCHEMA)
            except sqlite3.Error as error:
                raise CatalogError(f"cannot create the store catalog {self.path}: {error}") from error
            with self.transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO catalog_meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            row = self._schema_version(db)
        assert row is not None
        if int(row[0]) > SCHEMA_VERSION:
            raise CatalogError(
                f"the store catalog {self.path} has schema version {row[0]}, newer than this pacslab "
                f"understands ({SCHEMA_VERSION}); upgrade pacslab"
            )

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> sqlite3.Row | None:
        try:
            return db.execute("SELECT value FROM catalog_meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # no such table: a new catalog
            return None

    # -- connections -------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed series must survive a power cut, not only a killed process.
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as error:
                raise CatalogError(
                    f"cannot open the store catalog {self.path}: {error}; check the folder is writable "
                    "and on a local disk (SQLite WAL does not work on network shares)"
                ) from error
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite ``PRAGMA data_version``)."""
        return int(self.connection().execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a full disk becomes :class:`StoreFull`."""
        db = self.connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as error:
            if _is_disk_full(error):
                raise StoreFull(
                    f"the disk holding the store catalog {self.path} is full; free space and try again "
                    "(nothing stored was changed)"
                ) from error
            raise CatalogError(f"store catalog {self.path}: {error}") from error

    # -- series writes -----------------------------------------------------------------------
    def series_row(self, series_uid: str) -> sqlite3.Row | None:
        """The raw series row, or None."""
        return (
            self.connection().execute("SELECT * FROM series WHERE series_uid = ?", (series_uid,)).fetchone()
        )

    def _upsert_patient_study(self, db: sqlite3.Connection, meta: SeriesMeta) -> None:
        db.execute(
            """INSERT INTO patients(patient_id, patient_name, birth_date, sex) VALUES (?, ?, ?, ?)
               ON CONFLICT(patient_id) DO UPDATE SET patient_name = excluded.patient_name,
                 birth_date = excluded.birth_date, sex = excluded.sex""",
            (meta.patient_id, meta.patient_name, meta.patient_birth_date, meta.patient_sex),
        )
        db.execute(
            """INSERT INTO studies(study_uid, patient_id, study_date, study_time, study_description,
                 accession_number) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(study_uid) DO UPDATE SET patient_id = excluded.patient_id,
                 study_date = excluded.study_date, study_time = excluded.study_time,
                 study_description = excluded.study_description,
                 accession_number = excluded.accession_number""",
            (
                meta.study_uid,
                meta.patient_id,
                meta.study_date,
                meta.study_time,
                meta.study_description,
                meta.accession_number,
            ),
        )

    def begin_write(self, meta: SeriesMeta) -> bool | None:
        """Mark a series incomplete before its new file is written.

        Returns the previous ``complete`` flag, or None when the series is new.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT complete FROM series WHERE series_uid = ?", (meta.series_uid,)
            ).fetchone()
            self._upsert_patient_study(db, meta)
            if row is None:
                db.execute(
                    """INSERT INTO series(series_uid, study_uid, modality, series_description, series_number,
                         frame_of_reference_uid, complete, updated) VALUES (?, ?, ?, ?, ?, ?, 0, ?)""",
                    (
                        meta.series_uid,
                        meta.study_uid,
                        meta.modality,
                        meta.series_description,
                        meta.series_number,
                        meta.frame_of_reference_uid,
                        utc_now(),
                    ),
                )
                return None
            db.execute(
                "UPDATE series SET complete = 0, updated = ? WHERE series_uid = ?",
                (utc_now(), meta.series_uid),
            )
            return bool(row["complete"])

    def abort_write(self, series_uid: str, previous: bool | None) -> None:
        """Undo :meth:`begin_write` after a clean failure: the old version stands as it was."""
        with self.transaction() as db:
            if previous is None:
                db.execute("DELETE FROM series WHERE series_uid = ? AND version = 0", (series_uid,))
                self._delete_orphans(db)
            else:
                db.execute("UPDATE series SET complete = ? WHERE series_uid = ?", (int(previous), series_uid))

    @staticmethod
    def _delete_orphans(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM studies WHERE study_uid NOT IN (SELECT study_uid FROM series)")
        db.execute("DELETE FROM patients WHERE patient_id NOT IN (SELECT patient_id FROM studies)")

    def commit_series(
        self, meta: SeriesMeta, content: SeriesContent, path: str, version: int, old_path: str | None
    ) -> None:
        """Point the series at its new file and replace its instance rows, in one transaction."""
        with self.transaction() as db:
            self._upsert_patient_study(db, meta)
            db.execute(
                """UPDATE series SET study_uid = ?, modality = ?, series_description = ?, series_number = ?,
                     n_slices = ?, rows = ?, cols = ?, channels = ?, dtype = ?, pixel_spacing = ?,
                     slice_thickness = ?, spacing_between_slices = ?, rescale_slope = ?,
                     rescale_intercept = ?,
                     window_presets = ?, geometry_warnings = ?, frame_of_reference_uid = ?,
                     image_orientation = ?, path = ?, version = ?, complete = 1, format_version = ?,
                     updated = ?
                   WHERE series_uid = ?""",
                (
                    meta.study_uid,
                    meta.modality,
                    meta.series_description,
                    meta.series_number,
                    content.n_slices,
                    content.rows,
                    content.cols,
                    json.dumps(list(content.channels)),
                    content.dtype,
                    json.dumps(list(content.pixel_spacing)),
                    content.slice_thickness,
                    content.spacing_between_slices,
                    content.rescale_slope,
                    content.rescale_intercept,
                    json.dumps([list(p) for p in content.window_presets]),
                    json.dumps(list(content.geometry_warnings)),
                    meta.frame_of_reference_uid,
                    json.dumps(list(content.image_orientation)),
                    path,
                    version,
                    content.format_version,
                    utc_now(),
                    meta.series_uid,
                ),
            )
            db.execute("DELETE FROM instances WHERE series_uid = ?", (meta.series_uid,))
            db.executemany(
                """INSERT INTO instances(series_uid, slice_index, channel, sop_instance_uid, frame,
                     sop_class_uid,
                     instance_number, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                [(meta.series_uid, *row) for row in content.instances],
            )
            if old_path and old_path != path:
                db.execute(
                    "INSERT OR REPLACE INTO superseded_files(path, since) VALUES (?, ?)",
                    (old_path, utc_now()),
                )
            self._delete_orphans(db)

    def delete_series(self, series_uid: str) -> str | None:
        """Remove a series and its instances (its file joins the superseded list); returns its path."""
        with self.transaction() as db:
            row = db.execute("SELECT path FROM series WHERE series_uid = ?", (series_uid,)).fetchone()
            if row is None:
                raise SeriesNotFound(series_uid)
            db.execute("DELETE FROM instances WHERE series_uid = ?", (series_uid,))
            db.execute("DELETE FROM series WHERE series_uid = ?", (series_uid,))
            if row["path"]:
                db.execute(
                    "INSERT OR REPLACE INTO superseded_files(path, since) VALUES (?, ?)",
                    (row["path"], utc_now()),
                )
            self._delete_orphans(db)
            return str(row["path"]) or None

    def superseded(self) -> list[tuple[str, str]]:
        """Files replaced by a newer version: ``(relative path, since)``."""
        rows = self.connection().execute("SELECT path, since FROM superseded_files").fetchall()
        return [(r["path"], r["since"]) for r in rows]

    def forget_superseded(self, paths: Sequence[str]) -> None:
        """Drop removed files from the superseded list."""
        with self.transaction() as db:
            db.executemany("DELETE FROM superseded_files WHERE path = ?", [(p,) for p in paths])

    # -- reads ---------------------------------------------------------------------------------
    def _series_info(self, row: sqlite3.Row, root: Path) -> SeriesInfo:
        uids = self.connection().execute(
            "SELECT sop_instance_uid FROM instances WHERE series_uid = ? AND channel = 0 "
            "ORDER BY slice_index",
            (row["series_uid"],),
        )
        return SeriesInfo(
            series_uid=row["series_uid"],
            study_uid=row["study_uid"],
            patient_id=row["patient_id"],
            patient_name=row["patient_name"],
            modality=row["modality"],
            series_description=row["series_description"],
            series_number=row["series_number"],
            n_slices=row["n_slices"],
            rows=row["rows"],
            cols=row["cols"],
            channels=tuple(json.loads(row["channels"])),
            dtype=row["dtype"],
            pixel_spacing=_pair(json.loads(row["pixel_spacing"])),
            slice_thickness=row["slice_thickness"],
            spacing_between_slices=row["spacing_between_slices"],
            rescale_slope=row["rescale_slope"],
            rescale_intercept=row["rescale_intercept"],
            window_presets=tuple(
                (str(n), float(c), float(w)) for n, c, w in json.loads(row["window_presets"])
            ),
            sop_instance_uids=tuple(r[0] for r in uids),
            path=root / row["path"] if row["path"] else Path(),
            complete=bool(row["complete"]),
            format_version=row["format_version"],
            geometry_warnings=tuple(json.loads(row["geometry_warnings"])),
            frame_of_reference_uid=row["frame_of_reference_uid"],
            image_orientation=tuple(json.loads(row["image_orientation"])),
            version=row["version"],
        )

    def series_info(self, series_uid: str, root: Path) -> SeriesInfo:
        """One series, or :class:`SeriesNotFound`."""
        row = self.connection().execute(_SERIES_SELECT + " WHERE s.series_uid = ?", (series_uid,)).fetchone()
        if row is None:
            raise SeriesNotFound(series_uid)
        return self._series_info(row, root)

    def list_series(self, study_uid: str | None, root: Path) -> list[SeriesInfo]:
        """Series of one study (or all), by study, series number and UID."""
        sql = _SERIES_SELECT
        params: list[Any] = []
        if study_uid is not None:
            sql += " WHERE s.study_uid = ?"
            params.append(study_uid)
        sql += " ORDER BY s.study_uid, s.series_number IS NULL, s.series_number, s.series_uid"
        return [self._series_info(row, root) for row in self.connection().execute(sql, params).fetchall()]

    def list_studies(
        self,
        patient_id: str | None = None,
        patient_name: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
        text: str | None = None,
    ) -> list[StudyRecord]:
        """Studies matching every given filter (DICOM wildcards in IDs and names)."""
        clauses: list[str] = []
        params: list[Any] = []
        if patient_id:
            clauses.append("st.patient_id LIKE ? ESCAPE '\\'")
            params.append(wildcard_to_like(patient_id))
        if patient_name:
            pattern = wildcard_to_like(patient_name)
            if "*" not in patient_name and "?" not in patient_name:
                pattern = f"%{pattern}%"
            clauses.append("COALESCE(p.patient_name, '') LIKE ? ESCAPE '\\'")
            params.append(pattern)
        if study_date:
            clause, values = date_range_clause("st.study_date", study_date)
            clauses.append(clause)
            params.extend(values)
        if modality:
            clauses.append(
                "EXISTS (SELECT 1 FROM series m WHERE m.study_uid = st.study_uid AND m.modality = ?)"
            )
            params.append(modality.upper())
        if text:
            needle = f"%{wildcard_to_like(text)}%"
            fields = ("p.patient_name", "st.patient_id", "st.study_description", "st.accession_number")
            clauses.append(
                "("
                + " OR ".join(f"COALESCE({f}, '') LIKE ? ESCAPE '\\'" for f in fields)
                + " OR EXISTS (SELECT 1 FROM series d WHERE d.study_uid = st.study_uid"
                " AND d.series_description LIKE ? ESCAPE '\\'))"
            )
            params.extend([needle] * (len(fields) + 1))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = (
            self.connection()
            .execute(
                f"""SELECT st.*, COALESCE(p.patient_name, '') AS patient_name,
                  COALESCE(p.birth_date, '') AS birth_date,
                  (SELECT group_concat(DISTINCT s.modality) FROM series s WHERE s.study_uid = st.study_uid)
                    AS modalities,
                  (SELECT count(*) FROM series s WHERE s.study_uid = st.study_uid) AS n_series,
                  (SELECT count(DISTINCT i.sop_instance_uid) FROM instances i
                     JOIN series s ON s.series_uid = i.series_uid
                     WHERE s.study_uid = st.study_uid AND i.sop_instance_uid != '') AS n_instances
                FROM studies st LEFT JOIN patients p ON p.patient_id = st.patient_id
                {where}
                ORDER BY st.study_date DESC, st.study_uid""",
                params,
            )
            .fetchall()
        )
        return [
            StudyRecord(
                study_uid=r["study_uid"],
                patient_id=r["patient_id"],
                patient_name=r["patient_name"],
                patient_birth_date=r["birth_date"],
                study_date=r["study_date"],
                study_description=r["study_description"],
                accession_number=r["accession_number"],
                modalities=tuple(sorted(m for m in (r["modalities"] or "").split(",") if m)),
                n_series=r["n_series"],
                n_instances=r["n_instances"],
            )
            for r in rows
        ]

    def instances(self, series_uid: str) -> list[InstanceRecord]:
        """Every stored plane of a series, in slice then channel order."""
        rows = (
            self.connection()
            .execute(
                "SELECT * FROM instances WHERE series_uid = ? ORDER BY slice_index, channel", (series_uid,)
            )
            .fetchall()
        )
        return [
            InstanceRecord(
                series_uid=r["series_uid"],
                slice_index=r["slice_index"],
                channel=r["channel"],
                sop_instance_uid=r["sop_instance_uid"],
                frame=r["frame"],
                sop_class_uid=r["sop_class_uid"],
                instance_number=r["instance_number"],
                position=r["position"],
            )
            for r in rows
        ]

    def stored_keys(self, series_uid: str) -> set[tuple[str, int]]:
        """``(SOP Instance UID, frame)`` of every plane stored for a series."""
        rows = self.connection().execute(
            "SELECT sop_instance_uid, frame FROM instances WHERE series_uid = ? AND sop_instance_uid != ''",
            (series_uid,),
        )
        return {(r[0], r[1]) for r in rows}

    # -- jobs ----------------------------------------------------------------------------------
    def record_job(self, job: JobRecord) -> None:
        """Insert or update a job row."""
        with self.transaction() as db:
            db.execute(
                """INSERT OR REPLACE INTO jobs(job_id, processor, version, params_json, series_uid,
                     result_path, status, total, done, failed, created, finished)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    job.job_id,
                    job.processor,
                    job.version,
                    job.params_json,
                    job.series_uid,
                    job.result_path,
                    job.status,
                    job.total,
                    job.done,
                    job.failed,
                    job.created,
                    job.finished,
                ),
            )

    def list_jobs(self) -> list[JobRecord]:
        """Every job, newest first."""
        rows = self.connection().execute("SELECT * FROM jobs ORDER BY created DESC, job_id").fetchall()
        return [_job(r) for r in rows]

    def job(self, job_id: str) -> JobRecord:
        """One job, or :class:`JobNotFound`."""
        row = self.connection().execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    return (float(values[0]), float(values[1])) if len(values) >= 2 else (1.0, 1.0)


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"],
        processor=row["processor"],
        version=row["version"],
        params_json=row["params_json"],
        series_uid=row["series_uid"],
        result_path=row["result_path"],
        status=row["status"],
        total=row["total"],
        done=row["done"],
        failed=row["failed"],
        created=row["created"],
        finished=row["finished"],
    )
