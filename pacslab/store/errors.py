"""Named errors of the slice store; each message says what to do next."""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "JobNotFound",
    "SeriesFileError",
    "SeriesNotFound",
    "SliceIndexError",
    "StoreError",
    "StoreFull",
]


class StoreError(Exception):
    """Base class of every error raised by :mod:`pacslab.store`."""


class SeriesNotFound(StoreError, LookupError):
    """The catalog holds no series with this Series Instance UID."""

    def __init__(self, series_uid: str) -> None:
        self.series_uid = series_uid
        super().__init__(
            f"no series {series_uid!r} in the store; list what is there with SliceStore.list_series() "
            "or ingest the series first"
        )

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.series_uid,))


class JobNotFound(StoreError, LookupError):
    """The catalog holds no job with this id."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r} in the store; list recorded jobs with SliceStore.list_jobs()")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.job_id,))


class SliceIndexError(StoreError, IndexError):
    """A slice or channel index outside the series."""


class SeriesFileError(StoreError):
    """A series file is missing, unreadable or not in a format this version understands."""


class CatalogError(StoreError):
    """The SQLite catalog could not be opened or updated."""


class StoreFull(StoreError, OSError):
    """The disk holding the store has no room for what is being written.

    Nothing already stored is changed: the series being written keeps its previous version.
    """
