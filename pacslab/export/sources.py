"""Checks that source instances can be referenced and line up with a result stack."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset

from pacslab.export.errors import MaskMismatch, SourceMismatch

__all__ = ["check_sources", "check_stack"]

_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")


def check_sources(sources: Sequence[Dataset]) -> None:
    """Raise :class:`SourceMismatch` unless the sources are one study's referencable instances."""
    if len(sources) == 0:
        raise SourceMismatch(
            "no source instances were given; pass the headers of the series the result came from"
        )
    for position, ds in enumerate(sources):
        missing = [keyword for keyword in _REQUIRED if keyword not in ds]
        if missing:
            raise SourceMismatch(
                f"source instance {position} lacks {', '.join(missing)}; pass the full headers "
                "(SliceStore.read_header) rather than a reduced copy"
            )
    studies = {str(ds.StudyInstanceUID) for ds in sources}
    if len(studies) > 1:
        raise SourceMismatch(
            f"the sources belong to {len(studies)} studies; a derived object belongs to one study, "
            "so export each study's result separately"
        )
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    if len(set(uids)) != len(uids):
        raise SourceMismatch(
            "the same source SOP Instance UID appears twice; pass one header per slice of the result"
        )


def check_stack(sources: Sequence[Dataset], stack: np.ndarray, what: str) -> None:
    """Raise :class:`MaskMismatch` unless ``stack`` has one (rows, cols) plane per source."""
    if stack.ndim < 3:
        raise MaskMismatch(
            f"the {what} has shape {stack.shape}; expected (slices, rows, columns) with one slice per source"
        )
    if stack.shape[0] != len(sources):
        raise MaskMismatch(
            f"the {what} has {stack.shape[0]} slices but {len(sources)} source instances were given; "
            "pass the headers of exactly the slices the result covers, in the same order"
        )
    for position, ds in enumerate(sources):
        if (int(ds.Rows), int(ds.Columns)) != tuple(stack.shape[1:3]):
            raise MaskMismatch(
                f"slice {position} of the {what} is {stack.shape[1]}x{stack.shape[2]} but its source "
                f"{ds.SOPInstanceUID} is {ds.Rows}x{ds.Columns}; results must keep the source geometry"
            )
