"""Records the catalog hands out: series, studies, instances and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = [
    "JOB_STATUSES",
    "InstanceRecord",
    "JobRecord",
    "JobStatus",
    "SeriesInfo",
    "StudyRecord",
    "utc_now",
]

JobStatus = Literal["queued", "running", "done", "cancelled", "failed"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "cancelled", "failed")


def utc_now() -> str:
    """The current time as ISO 8601 in UTC (the catalog's time format)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SeriesInfo:
    """What the catalog knows about one stored series (no HDF5 file is opened to build it).

    ``channels`` names the planes stored at every position: ``("",)`` for an ordinary series,
    ``("magnitude", "phase")`` for a complex MR acquisition, ``("red", "green", "blue")`` for
    colour. ``sop_instance_uids`` has one entry per slice (the first channel's instance; a
    multi-frame instance appears once per frame). ``complete`` is False while a new version is
    being written or after a writer died; the previous version, if any, stays readable.
    ``geometry_warnings`` lists why the slices do not form a regular volume (mixed
    orientation, duplicate positions, gaps, irregular spacing, no positions); empty for a
    regular volume.
    """

    series_uid: str
    study_uid: str
    patient_id: str
    patient_name: str
    modality: str
    series_description: str
    series_number: int | None
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
    sop_instance_uids: tuple[str, ...]
    path: Path
    complete: bool
    format_version: int
    geometry_warnings: tuple[str, ...] = ()
    frame_of_reference_uid: str = ""
    image_orientation: tuple[float, ...] = ()
    version: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_slices, rows, cols)``."""
        return (self.n_slices, self.rows, self.cols)


@dataclass(frozen=True)
class StudyRecord:
    """One study in the local store, with counts over its stored series."""

    study_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    study_date: str
    study_description: str
    accession_number: str
    modalities: tuple[str, ...]
    n_series: int
    n_instances: int


@dataclass(frozen=True)
class InstanceRecord:
    """Where one stored plane came from: instance, frame and its place in the series."""

    series_uid: str
    slice_index: int
    channel: int
    sop_instance_uid: str
    frame: int
    sop_class_uid: str
    instance_number: int | None
    position: float | None


@dataclass
class JobRecord:
    """A processing job as recorded in the catalog.

    ``created`` and ``finished`` are ISO 8601 UTC strings (see :func:`utc_now`).
    """

    job_id: str
    processor: str
    version: str
    params_json: str
    series_uid: str
    result_path: str
    status: JobStatus = "queued"
    total: int = 0
    done: int = 0
    failed: int = 0
    created: str = field(default_factory=utc_now)
    finished: str | None = None
