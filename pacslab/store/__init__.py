"""The local slice store: HDF5 series files and a SQLite catalog (the only h5py user)."""

from pacslab.store.errors import (
    CatalogError,
    JobNotFound,
    SeriesFileError,
    SeriesNotFound,
    SliceIndexError,
    StoreError,
    StoreFull,
)
from pacslab.store.records import InstanceRecord, JobRecord, JobStatus, SeriesInfo, StudyRecord, utc_now
from pacslab.store.series_file import FORMAT_VERSION, read_series_slices
from pacslab.store.slice_store import SliceStore
from pacslab.store.slices import SeriesMeta, SliceReadError, SliceSource
from pacslab.store.writer import WriteOutcome

__all__ = [
    "FORMAT_VERSION",
    "CatalogError",
    "InstanceRecord",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "SeriesFileError",
    "SeriesInfo",
    "SeriesMeta",
    "SeriesNotFound",
    "SliceIndexError",
    "SliceReadError",
    "SliceSource",
    "SliceStore",
    "StoreError",
    "StoreFull",
    "StudyRecord",
    "WriteOutcome",
    "read_series_slices",
    "utc_now",
]

# Job result files live in pacslab.store.results (ResultWriter, ResultReader, ResultLock and
# their errors); their ``Result*`` names are offered here on first use, so importing the store
# never depends on that module.


def __getattr__(name: str) -> object:
    if name.startswith("Result"):
        from pacslab.store import results

        if name in results.__all__:
            return getattr(results, name)
    raise AttributeError(f"module 'pacslab.store' has no attribute {name!r}")
