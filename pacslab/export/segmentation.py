"""Masks → DICOM Segmentation (highdicom), one segment per label, referencing the sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pacslab.export.equipment import DEVICE_SERIAL_NUMBER, MANUFACTURER, software_version
from pacslab.export.errors import MaskMismatch, UnlabelledSegment, UnsupportedResult
from pacslab.export.sources import check_sources, check_stack
from pacslab.export.uids import content_key, result_uid

__all__ = ["SegmentLabel", "SegmentLabels", "segment_descriptions", "segmentation_from_mask"]

# Series numbers of exported objects sit above the scanner's range so viewers list them last.
SEG_SERIES_NUMBER = 9000


@dataclass(frozen=True)
class SegmentLabel:
    """What one label of a mask means: a name and, when known, its coded category and type.

    The defaults (Tissue / Tissue) are the generic choice when a processor does not say what it
    segments; pass codes from ``pydicom.sr.codedict.codes`` (e.g. ``codes.SCT.Liver``) when it does.
    """

    label: str
    category: Code = codes.cid7150.Tissue
    property_type: Code = codes.SCT.Tissue


SegmentLabels = Mapping[int, str | SegmentLabel] | Sequence[str | SegmentLabel]


def _label_table(segment_labels: SegmentLabels) -> dict[int, SegmentLabel]:
    if isinstance(segment_labels, Mapping):
        items = list(segment_labels.items())
    else:
        items = list(enumerate(segment_labels, start=1))
    if not items:
        raise UnlabelledSegment([])
    table: dict[int, SegmentLabel] = {}
    for value, entry in items:
        if int(value) < 1:
            raise MaskMismatch(
                f"label value {value} cannot be a segment: 0 is background, values must be ≥ 1"
            )
        table[int(value)] = entry if isinstance(entry, SegmentLabel) else SegmentLabel(str(entry))
    return dict(sorted(table.items()))


def segment_descriptions(
    segment_labels: SegmentLabels,
    algorithm_name: str,
    algorithm_version: str,
    algorithm_family: Code = codes.cid7162.HistogramAnalysis,
    algorithm_parameters: Mapping[str, str] | None = None,
) -> list[hd.seg.SegmentDescription]:
    """Return one highdicom segment description per label, numbered 1, 2, ... in label order.

    Parameters
    ----------
    segment_labels : mapping of label value to name (or :class:`SegmentLabel`), or a sequence for labels 1..n
    algorithm_name, algorithm_version : str
        The processor that made the mask; recorded as the segment's algorithm identification.
    algorithm_family : pydicom Code
        Family from CID 7162 (default Histogram Analysis, the family of threshold-style processors).
    algorithm_parameters : mapping of str to str, optional
        The processor's parameters, recorded beside its name.

    Returns
    -------
    list of highdicom.seg.SegmentDescription
    """
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name,
        family=algorithm_family,
        version=algorithm_version,
        source=MANUFACTURER,
        parameters=dict(algorithm_parameters) if algorithm_parameters else None,
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=entry.label[:64],
            segmented_property_category=entry.category,
            segmented_property_type=entry.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=None,
            tracking_id=None,
        )
        for number, entry in enumerate(_label_table(segment_labels).values(), start=1)
    ]


def _binary_pixels(mask: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Map label values to consecutive segment numbers 1..n, as the SEG label map needs."""
    if mask.dtype == np.bool_:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise UnsupportedResult(
            f"a binary segmentation needs an integer or boolean label mask, not {mask.dtype}; "
            "pass fractional=True for probabilities in [0, 1]"
        )
    if mask.size and int(mask.min()) < 0:
        raise UnsupportedResult("the mask holds negative label values; labels are 0 (background) or positive")
    present = np.unique(mask)
    unlabelled = sorted(set(present.tolist()) - {0} - set(values))
    if unlabelled:
        raise UnlabelledSegment(unlabelled)
    lookup = np.zeros(max(int(present.max()) if present.size else 0, *values) + 1, dtype=np.uint16)
    for number, value in enumerate(values, start=1):
        lookup[value] = number
    numbered = lookup[mask]
    return numbered.astype(np.uint8) if len(values) < 256 else numbered


def _fractional_pixels(mask: np.ndarray, n_segments: int) -> np.ndarray:
    if not np.issubdtype(mask.dtype, np.floating):
        raise UnsupportedResult(
            f"a fractional segmentation needs floating-point values in [0, 1], not {mask.dtype}; "
            "pass fractional=False for a label mask"
        )
    stack = mask if mask.ndim == 4 else mask[..., np.newaxis]
    if stack.shape[-1] != n_segments:
        raise MaskMismatch(
            f"the fractional mask has {stack.shape[-1]} segment channels but {n_segments} labels were "
            "given; give one label per channel (last axis)"
        )
    if not np.all(np.isfinite(stack)) or stack.min() < 0.0 or stack.max() > 1.0:
        raise UnsupportedResult(
            "fractional mask values must be finite and within [0, 1]; clip or normalise the probabilities"
        )
    return stack.astype(np.float32)


def segmentation_from_mask(
    source_datasets: Sequence[Dataset],
    mask: np.ndarray,
    segment_labels: SegmentLabels,
    algorithm_name: str,
    algorithm_version: str,
    fractional: bool = False,
    *,
    result_key: str | None = None,
    algorithm_family: Code = codes.cid7162.HistogramAnalysis,
    algorithm_parameters: Mapping[str, str] | None = None,
    series_number: int = SEG_SERIES_NUMBER,
    series_description: str | None = None,
) -> hd.seg.Segmentation:
    """Build a DICOM Segmentation of ``mask`` over its source instances.

    Parameters
    ----------
    source_datasets : sequence of pydicom.Dataset
        Headers of the source slices, one per mask slice, in mask order (pixel data not needed).
    mask : numpy.ndarray
        Binary: integer/boolean label mask (slices, rows, columns), 0 is background.
        Fractional: float probabilities in [0, 1], (slices, rows, columns) for one segment or
        (slices, rows, columns, segments).
    segment_labels : mapping or sequence
        ``{label value: name or SegmentLabel}``; a sequence stands for labels 1..n. Fractional
        masks take one entry per channel.
    algorithm_name, algorithm_version : str
        The processor and its version, written as every segment's algorithm identification.
    fractional : bool
        Write a FRACTIONAL (probability) segmentation instead of a BINARY one.
    result_key : str, optional
        Identifies the result (the job id). The same key and sources give the same UIDs, so
        re-sending replaces rather than duplicates. Default: a digest of the mask and sources.
    algorithm_family : pydicom Code
        CID 7162 family of the algorithm.
    algorithm_parameters : mapping of str to str, optional
        Parameters recorded in the algorithm identification.
    series_number : int
        Series Number of the new SEG series.
    series_description : str, optional
        Default ``"SEG <algorithm> <version>"``.

    Returns
    -------
    highdicom.seg.Segmentation
        A single multi-frame instance in the sources' study, in a new series.

    Raises
    ------
    SourceMismatch, MaskMismatch, UnlabelledSegment, UnsupportedResult
    """
    check_sources(source_datasets)
    mask = np.asarray(mask)
    check_stack(source_datasets, mask, "mask")
    table = _label_table(segment_labels)
    if fractional:
        if list(table) != list(range(1, len(table) + 1)):
            raise MaskMismatch(
                "a fractional mask's labels are its channels: number them 1..n (or pass a sequence of names)"
            )
        pixels = _fractional_pixels(mask, len(table))
    else:
        pixels = _binary_pixels(mask, list(table))
    source_uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    key = result_key or content_key([mask], algorithm_name, algorithm_version, *source_uids)
    source_series = str(source_datasets[0].SeriesInstanceUID)
    return hd.seg.Segmentation(
        source_images=list(source_datasets),
        pixel_array=pixels,
        segmentation_type=(
            hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
        ),
        segment_descriptions=segment_descriptions(
            table, algorithm_name, algorithm_version, algorithm_family, algorithm_parameters
        ),
        series_instance_uid=result_uid(key, "seg-series", source_series),
        series_number=series_number,
        sop_instance_uid=result_uid(key, "seg", source_series),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER,
        software_versions=software_version(),
        device_serial_number=DEVICE_SERIAL_NUMBER,
        series_description=(series_description or f"SEG {algorithm_name} {algorithm_version}")[:64],
        # An empty mask (nothing found) is still a result: keep its frames rather than none.
        omit_empty_frames=bool(np.any(pixels)),
        content_label="SEGMENTATION",
        content_description=f"{algorithm_name} {algorithm_version}"[:64],
    )
