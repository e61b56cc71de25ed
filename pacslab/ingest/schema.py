"""File-set schemas: what an upload must be, checked before anything is written."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from pacslab.ingest.reading import ScannedFile
from pacslab.store.geometry import plan_slices

__all__ = ["FileSetSchema", "UploadedFile", "file_problems", "set_problems"]

_ORIENTATION_TOLERANCE = 1e-3
_SPACING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FileSetSchema:
    """A declarative contract for an upload; every rule left at its default allows anything.

    Attributes
    ----------
    min_files, max_files : int
        Number of files in the upload (``max_files`` None: no limit).
    max_file_bytes, max_total_bytes : int or None
        Size of each file, and of all files together.
    sop_classes : tuple of str
        Allowed SOP Class UIDs (empty: any image).
    modalities : tuple of str
        Allowed modalities (empty: any).
    single_series : bool
        All files must belong to one series.
    consistent_geometry : bool
        Within each series: equal Rows/Columns, pixel spacing and orientation, and slice
        positions regularly spaced without duplicates or gaps.
    """

    min_files: int = 1
    max_files: int | None = None
    max_file_bytes: int | None = None
    max_total_bytes: int | None = None
    sop_classes: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    single_series: bool = False
    consistent_geometry: bool = False


@dataclass(frozen=True)
class UploadedFile:
    """Name and size of one file as received."""

    name: str
    size: int


def file_problems(schema: FileSetSchema, files: Sequence[UploadedFile]) -> list[str]:
    """Rules about the files themselves: count and sizes (no file is opened)."""
    problems: list[str] = []
    if len(files) < schema.min_files:
        problems.append(f"{len(files)} file(s) sent, at least {schema.min_files} required")
    if schema.max_files is not None and len(files) > schema.max_files:
        problems.append(f"{len(files)} files sent, at most {schema.max_files} allowed")
    if schema.max_file_bytes is not None:
        problems.extend(
            f"{f.name}: {f.size} bytes, above the limit of {schema.max_file_bytes} bytes per file"
            for f in files
            if f.size > schema.max_file_bytes
        )
    total = sum(f.size for f in files)
    if schema.max_total_bytes is not None and total > schema.max_total_bytes:
        problems.append(f"{total} bytes in all, above the limit of {schema.max_total_bytes} bytes")
    return problems


def _close(a: Sequence[float] | None, b: Sequence[float] | None, tolerance: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=tolerance) for x, y in zip(a, b, strict=True))


def set_problems(schema: FileSetSchema, scanned: Sequence[ScannedFile]) -> list[str]:
    """Rules about the DICOM content of the accepted files, per file and per set."""
    problems: list[str] = []
    for f in scanned:
        if schema.sop_classes and f.sop_class_uid not in schema.sop_classes:
            problems.append(f"{f.name}: SOP class {f.sop_class_uid} is not allowed")
        if schema.modalities and f.modality not in {m.upper() for m in schema.modalities}:
            problems.append(f"{f.name}: modality {f.modality or '(none)'} is not allowed")
    by_series: dict[str, list[ScannedFile]] = defaultdict(list)
    for f in scanned:
        by_series[f.meta.series_uid].append(f)
    if schema.single_series and len(by_series) > 1:
        problems.append(f"{len(by_series)} series sent, exactly one allowed")
    if schema.consistent_geometry:
        for series_uid, files in by_series.items():
            first = files[0]
            for f in files[1:]:
                if (f.rows, f.cols) != (first.rows, first.cols):
                    problems.append(
                        f"{f.name}: {f.rows}x{f.cols} differs from {first.rows}x{first.cols} in its series"
                    )
                if not _close(f.pixel_spacing, first.pixel_spacing, _SPACING_TOLERANCE):
                    problems.append(
                        f"{f.name}: pixel spacing {f.pixel_spacing} differs from {first.pixel_spacing}"
                    )
                if not _close(f.orientation, first.orientation, _ORIENTATION_TOLERANCE):
                    problems.append(f"{f.name}: orientation differs from the rest of its series")
            plan = plan_slices([s for f in files for s in f.sources])
            problems.extend(f"series {series_uid}: {warning}" for warning in plan.warnings)
    return problems
