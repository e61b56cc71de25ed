"""SliceStore: the local store of DICOM series as HDF5 files with a SQLite catalog."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom

from pacslab.store.catalog import Catalog
from pacslab.store.errors import SeriesFileError, SliceIndexError
from pacslab.store.locks import series_key, series_lock
from pacslab.store.quiet import quiet_pydicom
from pacslab.store.records import InstanceRecord, JobRecord, SeriesInfo, StudyRecord
from pacslab.store.series_file import SeriesFile
from pacslab.store.slices import SeriesMeta, SliceSource
from pacslab.store.writer import WriteOutcome, write_series

__all__ = ["SliceStore"]

CATALOG_NAME = "catalog.sqlite"
# Replaced series files stay this long so a worker given the old path can still open it.
SUPERSEDED_GRACE_S = 600.0
OPEN_FILES = 16


def _no_bulk_data(tag: str, vr: str, uri: str) -> None:
    """Bulk data (overlays, icons...) is not kept in the store: such elements come back empty."""


class SliceStore:
    """DICOM series on local disk: one HDF5 file per series, a SQLite catalog beside them.

    Listing and searching read only the catalog. Slices are read from the series files, which
    stay open (a few at a time) so that scrolling through a series costs one chunk read per
    slice. Only :meth:`write_series` (used by the ingest) writes series files.

    Parameters
    ----------
    root : Path
        Folder of the store; created with ``catalog.sqlite``, ``series/``, ``jobs/`` and
        ``inbox/`` when missing.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()
        for sub in ("series", "jobs", "inbox", "locks"):
            (self._root / sub).mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self._root / CATALOG_NAME)
        self._lock = threading.Lock()
        self._files: OrderedDict[Path, SeriesFile] = OrderedDict()
        self._paths: dict[str, Path] = {}
        self._paths_version = -1
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"SliceStore({str(self._root)!r})"

    # -- places ------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The store folder."""
        return self._root

    @property
    def jobs_dir(self) -> Path:
        """Folder for job result files."""
        return self._root / "jobs"

    @property
    def inbox_dir(self) -> Path:
        """Folder where ingests spool what they receive before it is stored."""
        return self._root / "inbox"

    # -- catalog -----------------------------------------------------------------------------
    def list_studies(
        self,
        patient_id: str | None = None,
        patient_name: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
        text: str | None = None,
    ) -> list[StudyRecord]:
        """Studies in the store matching every filter given.

        Parameters
        ----------
        patient_id, patient_name : str, optional
            DICOM wildcards ``*`` and ``?`` allowed; a name without wildcards matches anywhere
            in the name, ignoring case.
        study_date : str, optional
            ``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (either end may be left open).
        modality : str, optional
            Studies with at least one series of this modality.
        text : str, optional
            Found in the patient name or ID, accession number, study or series description.
        """
        return self.catalog.list_studies(patient_id, patient_name, study_date, modality, text)

    def list_series(self, study_uid: str | None = None) -> list[SeriesInfo]:
        """Series of one study, or of the whole store (from the catalog only)."""
        return self.catalog.list_series(study_uid, self._root)

    def series(self, series_uid: str) -> SeriesInfo:
        """One series; :class:`~pacslab.store.errors.SeriesNotFound` if it is not stored."""
        return self.catalog.series_info(series_uid, self._root)

    def instances(self, series_uid: str) -> list[InstanceRecord]:
        """Where each stored plane of a series came from (instance, frame, channel)."""
        self.series(series_uid)
        return self.catalog.instances(series_uid)

    def series_path(self, series_uid: str) -> Path:
        """The HDF5 file of the current version of a series (workers open it read-only)."""
        return self._path(series_uid)

    # -- reading -----------------------------------------------------------------------------
    def _path(self, series_uid: str) -> Path:
        version = self.catalog.data_version()
        with self._lock:
            if version != self._paths_version:
                self._paths.clear()
                self._paths_version = version
            path = self._paths.get(series_uid)
        if path is None:
            info = self.series(series_uid)
            if info.version == 0:
                raise SeriesFileError(
                    f"series {series_uid} has no stored version yet (it is being written, or its writer "
                    "stopped); wait for the ingest to finish or ingest the series again"
                )
            path = info.path
            with self._lock:
                self._paths[series_uid] = path
        return path

    def _file(self, series_uid: str) -> SeriesFile:
        path = self._path(series_uid)
        with self._lock:
            if os.getpid() != self._pid:
                # Handles opened before a fork belong to the parent process.
                self._files = OrderedDict()
                self._pid = os.getpid()
            series_file = self._files.get(path)
            if series_file is not None:
                self._files.move_to_end(path)
                return series_file
        series_file = SeriesFile(path)
        with self._lock:
            self._files[path] = series_file
            while len(self._files) > OPEN_FILES:
                _, old = self._files.popitem(last=False)
                old.close()
        return series_file

    def read_slice(
        self, series_uid: str, index: int, channel: int | str = 0, rescaled: bool = False
    ) -> np.ndarray:
        """One slice, ``(rows, cols)`` in the stored dtype, or float32 after the rescale.

        Parameters
        ----------
        series_uid : str
            Series Instance UID.
        index : int
            Slice index in stored order (along the slice normal); negative counts from the end.
        channel : int or str
            Channel for multi-channel series, by position or name (see ``SeriesInfo.channels``).
        rescaled : bool
            Apply this slice's RescaleSlope/RescaleIntercept (Hounsfield units for CT).
        """
        series_file = self._file(series_uid)
        pixels = series_file.read(index, channel)
        if not rescaled:
            return pixels
        slope, intercept = series_file.rescale(index, channel)
        out = pixels.astype(np.float32)
        if slope != 1.0:
            out *= np.float32(slope)
        if intercept != 0.0:
            out += np.float32(intercept)
        return out

    def read_plane(self, series_uid: str, index: int) -> np.ndarray:
        """Every channel of one slice: ``(rows, cols)`` or ``(rows, cols, channels)``."""
        return self._file(series_uid).read_plane(index)

    def read_slices(
        self, series_uid: str, indices: Sequence[int] | None = None, channel: int | str = 0
    ) -> np.ndarray:
        """Several slices (all when ``indices`` is None) as ``(n, rows, cols)``."""
        series_file = self._file(series_uid)
        chosen = range(series_file.n_slices) if indices is None else indices
        out = np.empty((len(chosen), series_file.shape[1], series_file.shape[2]), dtype=series_file.dtype)
        for i, index in enumerate(chosen):
            out[i] = series_file.read(int(index), channel)
        return out

    def read_header(self, series_uid: str, index: int, channel: int | str = 0) -> pydicom.Dataset:
        """The DICOM header of one stored plane, rebuilt from its DICOM JSON."""
        text = self._file(series_uid).header_json(index, channel)
        if not text:
            raise SliceIndexError(f"slice {index} of series {series_uid} has no image in channel {channel}")
        with quiet_pydicom():  # values pydicom warned about at ingest warn again here
            return pydicom.Dataset.from_json(json.loads(text), bulk_data_uri_handler=_no_bulk_data)

    # -- writing -----------------------------------------------------------------------------
    def write_series(
        self,
        meta: SeriesMeta,
        sources: Sequence[SliceSource],
        on_slice: Callable[[int, int], None] | None = None,
    ) -> WriteOutcome:
        """Store new planes of a series as a new version of its file (see :mod:`pacslab.store.writer`)."""
        outcome = write_series(self._root, self.catalog, meta, sources, on_slice)
        with self._lock:
            self._paths.pop(meta.series_uid, None)
        return outcome

    def delete_series(self, series_uid: str) -> None:
        """Remove a series from the store (its study and patient too when nothing else is left).

        The catalog forgets it at once; the file goes with the next :meth:`prune` after the
        grace period, so a worker still reading it is not cut off.
        """
        with series_lock(self._root / "locks", series_key(series_uid)):
            self.catalog.delete_series(series_uid)
        with self._lock:
            self._paths.pop(series_uid, None)

    def prune(self, grace_s: float = SUPERSEDED_GRACE_S) -> list[Path]:
        """Delete replaced series files older than ``grace_s`` and leftovers of dead writers.

        Returns the files removed.
        """
        removed: list[Path] = []
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
        gone: list[str] = []
        for rel, since in self.catalog.superseded():
            if datetime.fromisoformat(since) <= cutoff:
                (self._root / rel).unlink(missing_ok=True)
                removed.append(self._root / rel)
                gone.append(rel)
        if gone:
            self.catalog.forget_superseded(gone)
        for tmp in (self._root / "series").glob("*/*.h5.tmp"):
            key = tmp.name.split(".", 1)[0]
            with series_lock(self._root / "locks", key, blocking=False) as mine:
                if mine:
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        return removed

    # -- jobs --------------------------------------------------------------------------------
    def record_job(self, job: JobRecord) -> None:
        """Insert or update a job in the catalog."""
        self.catalog.record_job(job)

    def list_jobs(self) -> list[JobRecord]:
        """Every recorded job, newest first."""
        return self.catalog.list_jobs()

    def job(self, job_id: str) -> JobRecord:
        """One job; :class:`~pacslab.store.errors.JobNotFound` if unknown."""
        return self.catalog.job(job_id)

    def close(self) -> None:
        """Close open series files and this thread's catalog connection."""
        with self._lock:
            for series_file in self._files.values():
                series_file.close()
            self._files.clear()
        self.catalog.close()
