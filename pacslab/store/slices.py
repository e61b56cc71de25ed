"""What a producer (the ingest) hands to the store: one source per image plane, plus series facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["PixelReader", "SeriesMeta", "SliceReadError", "SliceSource"]

PixelReader = Callable[[], np.ndarray]


@dataclass(frozen=True)
class SliceSource:
    """One image plane to store: where its pixels come from and what it is.

    ``read_pixels`` returns ``(rows, cols)`` or, for colour, ``(rows, cols, samples)``; it is
    called once, while the series file is written, so a large series never sits in memory.
    ``frame`` is the 1-based frame number inside its instance (1 for single-frame images).
    """

    sop_instance_uid: str
    frame: int
    channel: str
    header_json: str
    read_pixels: PixelReader
    rows: int
    cols: int
    dtype: str
    samples: int = 1
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, float, float, float, float, float] | None = None
    instance_number: int | None = None
    sop_class_uid: str = ""
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    origin: str = ""

    @property
    def key(self) -> tuple[str, int]:
        """Identity of the plane: re-sending it replaces, never duplicates."""
        return (self.sop_instance_uid, self.frame)


@dataclass(frozen=True)
class SeriesMeta:
    """Patient, study and series facts the catalog lists (taken from the newest instance)."""

    series_uid: str
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    modality: str = ""
    series_description: str = ""
    series_number: int | None = None
    frame_of_reference_uid: str = ""
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    window_presets: tuple[tuple[str, float, float], ...] = ()
    photometric_interpretation: str = "MONOCHROME2"
    rescale_type: str = ""


class SliceReadError(Exception):
    """Reading the pixels of one source failed while its series was written.

    The writer stops, leaves the previous version of the series in place and raises this;
    the producer can drop ``source`` and write the series again.
    """

    def __init__(self, source: SliceSource, cause: BaseException) -> None:
        self.source = source
        self.cause = cause
        super().__init__(f"{source.origin or source.sop_instance_uid}: {cause}")
