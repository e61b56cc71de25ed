"""Named errors of the export: each message says what was wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DeidentificationError",
    "EmptyResult",
    "ExportError",
    "IncompleteResult",
    "MaskMismatch",
    "MeasurementTableError",
    "NonFiniteValues",
    "SendIncomplete",
    "SourceMismatch",
    "UnlabelledSegment",
    "UnsupportedResult",
]


class ExportError(Exception):
    """Base class: a result could not be turned into DICOM or sent."""


class SourceMismatch(ExportError):
    """The source datasets cannot be referenced together (no sources, mixed series, missing UIDs)."""


class MaskMismatch(ExportError):
    """A mask or image stack does not line up with its source instances (count or size)."""


class UnlabelledSegment(ExportError):
    """A mask holds label values for which no segment description was given."""

    def __init__(self, labels: Sequence[int]) -> None:
        self.labels = tuple(int(v) for v in labels)
        super().__init__(
            f"the mask contains label values {list(self.labels)} with no entry in segment_labels; "
            "give each label a description (segment_labels={value: 'name', ...}) or set those voxels to 0"
        )


class EmptyResult(ExportError):
    """There is nothing to export (an all-zero mask, no done slices, an empty table)."""


class NonFiniteValues(ExportError):
    """An image holds NaN or infinite values, which DICOM pixel data cannot carry."""


class UnsupportedResult(ExportError):
    """The result kind or pixel type has no DICOM mapping here."""


class IncompleteResult(ExportError):
    """The job has not written every slice; exporting it would silently drop slices."""

    def __init__(self, job_id: str, done: int, total: int) -> None:
        self.job_id = job_id
        self.done = done
        self.total = total
        super().__init__(
            f"job {job_id!r} has {done} of {total} slices done; wait for it to finish or resume it, "
            "or pass allow_partial=True to export only the finished slices"
        )


class MeasurementTableError(ExportError):
    """The measurement table lacks columns or holds values the report cannot encode."""


class DeidentificationError(ExportError):
    """A dataset could not be de-identified; nothing of it was written."""


class SendIncomplete(ExportError):
    """The PACS did not accept every instance; ``statuses`` holds the status of each one.

    Re-sending the same result is safe: the UIDs are the same, so instances already
    stored are replaced rather than duplicated.
    """

    def __init__(self, statuses: Sequence[Any], failed: Sequence[str]) -> None:
        self.statuses = list(statuses)
        self.failed = list(failed)
        super().__init__(
            f"the PACS refused {len(self.failed)} of {len(self.statuses)} instances "
            f"(first: {self.failed[0] if self.failed else '-'}); check the PACS log and its "
            "accepted SOP classes, then send again (same UIDs, so nothing is duplicated)"
        )
