"""De-identification at ingest (PS3.15 basic profile) with a pseudonym map kept beside the store.

The profile itself is :func:`pacslab.export.deidentify_dataset` (dicognito for names, IDs,
UIDs, dates and addresses, then the profile's remaining removals, private tags and the
de-identification marks), the same code the export uses. The dicognito seed is a random
secret kept in ``pseudonyms.sqlite`` in the store folder, so the same patient gets the same
pseudonyms in every later ingest and re-ingesting is idempotent. That file links pseudonyms
to real identities: it is created readable by its owner only and must be protected like the
source data.
"""

from __future__ import annotations

import csv
import os
import secrets
import sqlite3
import threading
from pathlib import Path

from dicognito.anonymizer import Anonymizer
from pydicom import Dataset

from pacslab.ingest.errors import BurnedInAnnotation, MalformedDicom
from pacslab.store.records import utc_now

__all__ = ["MAPPED_KEYWORDS", "PSEUDONYM_MAP_NAME", "Deidentifier", "PseudonymMap"]

PSEUDONYM_MAP_NAME = "pseudonyms.sqlite"
MAPPED_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "AccessionNumber",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)


class PseudonymMap:
    """Original → pseudonym for the identifying attributes, and the de-identification seed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
               CREATE TABLE IF NOT EXISTS pseudonyms (
                   attribute TEXT NOT NULL, original TEXT NOT NULL, pseudonym TEXT NOT NULL,
                   first_seen TEXT NOT NULL, PRIMARY KEY (attribute, original));"""
        )
        self._db.execute(
            "INSERT OR IGNORE INTO settings(key, value) VALUES ('seed', ?)", (secrets.token_hex(32),)
        )
        self.seed: str = self._db.execute("SELECT value FROM settings WHERE key = 'seed'").fetchone()[0]

    def record(self, pairs: list[tuple[str, str, str]]) -> None:
        """Keep ``(attribute, original, pseudonym)`` triples (first mapping wins)."""
        now = utc_now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO pseudonyms(attribute, original, pseudonym, first_seen) "
                "VALUES (?, ?, ?, ?)",
                [(a, o, p, now) for a, o, p in pairs],
            )
            self._db.execute("COMMIT")

    def lookup(self, attribute: str, original: str) -> str | None:
        """The pseudonym given to ``original``, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT pseudonym FROM pseudonyms WHERE attribute = ? AND original = ?", (attribute, original)
            ).fetchone()
        return None if row is None else str(row[0])

    def export_csv(self, path: Path) -> Path:
        """Write the whole map as CSV (attribute, original, pseudonym, first_seen)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT attribute, original, pseudonym, first_seen FROM pseudonyms "
                "ORDER BY attribute, original"
            ).fetchall()
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["attribute", "original", "pseudonym", "first_seen"])
            writer.writerows(rows)
        return Path(path)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


class Deidentifier:
    """Applies dicognito to headers, holds back burned-in annotation, keeps the map."""

    def __init__(self, map_path: Path) -> None:
        self.map = PseudonymMap(map_path)
        self._anonymizer = Anonymizer(seed=self.map.seed)
        self._lock = threading.Lock()

    def __call__(self, ds: Dataset, name: str) -> None:
        """De-identify ``ds`` in place; raise :class:`BurnedInAnnotation` for burned-in images."""
        from pacslab.export.deidentify import deidentify_dataset
        from pacslab.export.errors import DeidentificationError

        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            raise BurnedInAnnotation(
                name, "BurnedInAnnotation is YES: patient data may be written in the pixels"
            )
        originals = {k: str(ds.get(k, "") or "") for k in MAPPED_KEYWORDS}
        try:
            with self._lock:
                deidentify_dataset(ds, self._anonymizer)
        except DeidentificationError as error:
            raise MalformedDicom(name, str(error)) from error
        pairs = [
            (k, original, str(ds.get(k, "") or ""))
            for k, original in originals.items()
            if original and original != str(ds.get(k, "") or "")
        ]
        if pairs:
            self.map.record(pairs)

    def close(self) -> None:
        """Close the pseudonym map."""
        self.map.close()
