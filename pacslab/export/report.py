"""Measurements → a CSV table (always) and a DICOM SR TID 1500 referencing the SEG (optional).

A measurement table has one row per measured slice (or one row for the whole series) and one
numeric column per measurement. Reserved columns:

``sop_instance_uid``
    the source instance the row was measured on (absent or empty: the whole segment);
``segment``
    the segment number of the SEG the row belongs to (default 1 when the SEG has one segment);
``slice``
    the slice index in the series (kept in the CSV, not needed by the report).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pacslab.export.equipment import MANUFACTURER, software_version
from pacslab.export.errors import EmptyResult, MeasurementTableError, SourceMismatch
from pacslab.export.uids import content_key, result_uid

__all__ = [
    "RESERVED_COLUMNS",
    "measurement_columns",
    "measurement_concept",
    "measurement_report",
    "write_measurements_csv",
]

RESERVED_COLUMNS = ("sop_instance_uid", "segment", "slice")
SR_SERIES_NUMBER = 9100
_LOCAL_SCHEME = "99PACSLAB"

# Measurement names a processor is likely to use, with their SNOMED CT concept and usual unit.
_KNOWN: dict[str, tuple[Code, str]] = {
    "area": (codes.SCT.Area, "mm2"),
    "volume": (codes.SCT.Volume, "mm3"),
    "mean": (codes.SCT.Mean, "1"),
    "max": (codes.SCT.Maximum, "1"),
    "maximum": (codes.SCT.Maximum, "1"),
    "min": (codes.SCT.Minimum, "1"),
    "minimum": (codes.SCT.Minimum, "1"),
    "std": (codes.SCT.StandardDeviation, "1"),
    "sd": (codes.SCT.StandardDeviation, "1"),
    "median": (codes.SCT.Median, "1"),
    "diameter": (codes.SCT.Diameter, "mm"),
    "length": (codes.SCT.Length, "mm"),
    "perimeter": (codes.SCT.Perimeter, "mm"),
}

_PROCEDURES = {
    "CT": codes.LN.CTUnspecifiedBodyRegion,
    "MR": codes.LN.MRIUnspecifiedBodyRegion,
    "PT": codes.LN.PETUnspecifiedBodyRegion,
    "NM": codes.LN.NMUnspecifiedBodyRegion,
}


def measurement_columns(measurements: pd.DataFrame) -> list[str]:
    """The measurement columns of a table: every column that is not reserved."""
    return [str(c) for c in measurements.columns if str(c) not in RESERVED_COLUMNS]


def _name_key(name: str) -> str:
    return name.lower().replace(" ", "_").split("_")[0] if name else name


def measurement_concept(name: str) -> hd.sr.CodedConcept:
    """The coded concept of a measurement column: SNOMED CT when known, else a local code."""
    known = _KNOWN.get(name.lower()) or _KNOWN.get(_name_key(name))
    if known is not None:
        code = known[0]
        return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)
    # Short Code Value (SH) holds 16 characters: longer names get a stable digest.
    value = name if len(name) <= 16 else hashlib.sha1(name.encode()).hexdigest()[:16]
    return hd.sr.CodedConcept(value, _LOCAL_SCHEME, name[:64])


# Unit suffixes of column names (``area_mm2``, ``mean_hu``) and their UCUM codes.
_SUFFIX_UNITS = {
    "mm": "mm",
    "mm2": "mm2",
    "mm3": "mm3",
    "cm": "cm",
    "cm2": "cm2",
    "cm3": "cm3",
    "ml": "mL",
    "hu": "[hnsf'U]",
    "s": "s",
    "ms": "ms",
    "rad": "rad",
    "deg": "deg",
    "pct": "%",
    "percent": "%",
}


def _unit(name: str, units: Mapping[str, str] | None) -> hd.sr.CodedConcept:
    suffix = name.lower().rsplit("_", 1)[-1] if "_" in name else ""
    if units and name in units:
        ucum = units[name]
    elif suffix in _SUFFIX_UNITS:
        ucum = _SUFFIX_UNITS[suffix]
    else:
        known = _KNOWN.get(name.lower()) or _KNOWN.get(_name_key(name))
        ucum = known[1] if known else "1"
    meaning = "no units" if ucum == "1" else ucum
    return hd.sr.CodedConcept(ucum, "UCUM", meaning)


def write_measurements_csv(
    df: pd.DataFrame, path: Path | str, sources: Sequence[Dataset] | None = None
) -> Path:
    """Write a measurement table as CSV, atomically (a reader never sees half a file).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per measured slice (or segment), one column per measurement.
    path : path-like
        Destination file; its folder is created.
    sources : sequence of pydicom.Dataset, optional
        The series' headers in slice order; when given and the table has a ``slice`` column but
        no ``sop_instance_uid``, that column is added so each row names its source instance.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if df.empty:
        raise EmptyResult("the measurement table has no rows; the job measured nothing to export")
    table = df.copy()
    if sources is not None and "slice" in table.columns and "sop_instance_uid" not in table.columns:
        uids = [str(ds.SOPInstanceUID) for ds in sources]
        try:
            table.insert(1, "sop_instance_uid", [uids[int(i)] for i in table["slice"]])
        except IndexError as exc:
            raise MeasurementTableError(
                f"the table names slice {int(table['slice'].max())} but the series has {len(uids)} slices; "
                "pass the headers of the series that was measured"
            ) from exc
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    table.to_csv(partial, index=False)
    partial.replace(target)
    return target


def _segment_numbers(measurements: pd.DataFrame, segmentation: Dataset) -> list[int]:
    n_segments = len(segmentation.SegmentSequence)
    if "segment" not in measurements.columns:
        if n_segments != 1:
            raise MeasurementTableError(
                f"the SEG has {n_segments} segments; add a 'segment' column saying which one "
                "each row measures"
            )
        return [1] * len(measurements)
    numbers = [int(v) for v in measurements["segment"]]
    bad = sorted({n for n in numbers if not 1 <= n <= n_segments})
    if bad:
        raise MeasurementTableError(
            f"segment numbers {bad} are not in the SEG (it has segments 1..{n_segments})"
        )
    return numbers


def _measurement_items(
    measurements: pd.DataFrame,
    rows: Sequence[int],
    uids: Sequence[str],
    by_uid: Mapping[str, Dataset],
    units: Mapping[str, str] | None,
    algorithm: hd.sr.AlgorithmIdentification,
) -> list[hd.sr.Measurement]:
    items: list[hd.sr.Measurement] = []
    for row in rows:
        uid = uids[row]
        images = [hd.sr.SourceImageForMeasurement.from_source_image(by_uid[uid])] if uid else None
        for name in measurement_columns(measurements):
            value = float(measurements[name].iloc[row])
            if not np.isfinite(value):
                continue  # an unmeasurable slice (e.g. nothing found): left out here, kept in the CSV
            items.append(
                hd.sr.Measurement(
                    name=measurement_concept(name),
                    value=value,
                    unit=_unit(name, units),
                    referenced_images=images,
                    algorithm_id=algorithm,
                )
            )
    return items


def _check_table(measurements: pd.DataFrame, by_uid: Mapping[str, Dataset]) -> list[str]:
    """Validate the table; return each row's source SOP Instance UID ("" for none)."""
    if measurements.empty:
        raise EmptyResult("the measurement table has no rows; there is nothing to report")
    names = measurement_columns(measurements)
    if not names:
        raise MeasurementTableError(
            f"the table has only reserved columns {list(measurements.columns)}; "
            "add a numeric column per measurement"
        )
    non_numeric = [n for n in names if not pd.api.types.is_numeric_dtype(measurements[n])]
    if non_numeric:
        raise MeasurementTableError(
            f"measurement columns {non_numeric} are not numeric; SR values are numbers"
        )
    uids = (
        [str(v) if isinstance(v, str) and v else "" for v in measurements["sop_instance_uid"]]
        if "sop_instance_uid" in measurements.columns
        else [""] * len(measurements)
    )
    unknown = sorted({u for u in uids if u and u not in by_uid})
    if unknown:
        raise MeasurementTableError(
            f"rows name source instances not in the series (first {unknown[0]}); "
            "pass the headers of the series that was measured"
        )
    return uids


def measurement_report(
    segmentation: Dataset | None,
    measurements: pd.DataFrame,
    source_datasets: Sequence[Dataset],
    *,
    algorithm_name: str,
    algorithm_version: str,
    units: Mapping[str, str] | None = None,
    result_key: str | None = None,
    series_number: int = SR_SERIES_NUMBER,
) -> hd.sr.Comprehensive3DSR:
    """Build a TID 1500 Measurement Report of ``measurements``, over the segments of a SEG.

    Parameters
    ----------
    segmentation : pydicom.Dataset or None
        The SEG (e.g. from :func:`segmentation_from_mask`) the measurements belong to: one
        TID 1411 group per segment, referencing it. None: the measurements are of whole
        images, one TID 1501 group naming each measured image.
    measurements : pandas.DataFrame
        One row per measured slice or segment; numeric measurement columns plus the reserved
        ``sop_instance_uid`` / ``segment`` / ``slice`` columns (see the module docstring).
    source_datasets : sequence of pydicom.Dataset
        Headers of the measured (and segmented) instances, recorded as evidence.
    algorithm_name, algorithm_version : str
        The processor that measured.
    units : mapping of column to UCUM unit, optional
        E.g. ``{"area": "mm2"}``. Default: from the column's suffix (``area_mm2``, ``mean_hu``)
        or its usual unit (area mm2, volume mm3), else "1" (no units).
    result_key : str, optional
        Identifies the result (the job id) so the SR's UIDs are the same on every export.
    series_number : int
        Series Number of the new SR series.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Each table cell a numeric measurement naming the source image it was measured on.

    Raises
    ------
    EmptyResult, MeasurementTableError, SourceMismatch
    """
    if not source_datasets:
        raise SourceMismatch("no source instances were given; pass the headers of the measured series")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source_datasets}
    if segmentation is not None:
        referenced = {str(item.ReferencedSOPInstanceUID) for item in _seg_source_items(segmentation)}
        missing = sorted(referenced - set(by_uid))
        if missing:
            raise SourceMismatch(
                f"{len(missing)} source instances of the SEG were not given (first {missing[0]}); pass the "
                "headers of every slice the SEG references"
            )
    uids = _check_table(measurements, by_uid)
    names = measurement_columns(measurements)
    anchor = (
        str(segmentation.SOPInstanceUID)
        if segmentation is not None
        else str(source_datasets[0].SeriesInstanceUID)
    )
    key = result_key or content_key([measurements[names].to_numpy(dtype=np.float64)], anchor, *names)
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version)
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    evidence: list[Dataset] = list(source_datasets)
    if segmentation is None:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=result_uid(key, "sr-tracking"), identifier=algorithm_name[:64]
                ),
                algorithm_id=algorithm,
                measurements=_measurement_items(
                    measurements, range(len(measurements)), uids, by_uid, units, algorithm
                )
                or None,
            )
        )
    else:
        segments = _segment_numbers(measurements, segmentation)
        for number in sorted(set(segments)):
            rows = [row for row, segment in enumerate(segments) if segment == number]
            items = _measurement_items(measurements, rows, uids, by_uid, units, algorithm)
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=result_uid(key, "sr-tracking", str(number)),
                        identifier=str(segmentation.SegmentSequence[number - 1].SegmentLabel)[:64],
                    ),
                    referenced_segment=_referenced_segment(segmentation, number),
                    algorithm_id=algorithm,
                    measurements=items or None,
                )
            )
        evidence.insert(0, segmentation)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=result_uid(key, "sr-device"),
            name=f"{algorithm_name} {algorithm_version}"[:64],
            manufacturer_name=MANUFACTURER,
            model_name=software_version(),
        ),
    )
    modality = str(source_datasets[0].get("Modality", ""))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_PROCEDURES.get(modality, codes.SCT.ImagingProcedure),
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=result_uid(key, "sr-series", anchor),
        series_number=series_number,
        sop_instance_uid=result_uid(key, "sr", anchor),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"SR {algorithm_name} {algorithm_version}"[:64],
    )


def _referenced_segment(segmentation: Dataset, number: int) -> hd.sr.ReferencedSegment:
    """Reference one segment of a SEG (the whole segment, so no frame numbers) and its source series.

    highdicom's ``ReferencedSegment.from_segmentation`` expects the segment number in every
    frame's functional groups, which a single-segment SEG keeps in the shared ones.
    """
    series_uid = str(segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID)
    return hd.sr.ReferencedSegment(
        sop_class_uid=str(segmentation.SOPClassUID),
        sop_instance_uid=str(segmentation.SOPInstanceUID),
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
    )


def _seg_source_items(segmentation: Dataset) -> list[Dataset]:
    items: list[Dataset] = []
    for series in segmentation.get("ReferencedSeriesSequence", []):
        items.extend(series.ReferencedInstanceSequence)
    return items
