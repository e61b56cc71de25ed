"""A finished job → DICOM: reads its result file and its series' headers from the store.

The result file says what the job made (``image``, ``mask`` or ``measurements``); the job id
is the key of every UID, so exporting the same job twice gives the same instances.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydicom import Dataset

from pacslab.export.derived import derived_series
from pacslab.export.errors import EmptyResult, IncompleteResult, SourceMismatch, UnsupportedResult
from pacslab.export.report import measurement_report, write_measurements_csv
from pacslab.export.segmentation import SegmentLabels, segmentation_from_mask

if TYPE_CHECKING:
    from pacslab.store import SliceStore

__all__ = ["ExportedJob", "export_job", "job_sources"]


@dataclass
class ExportedJob:
    """The DICOM made from one job, and the table written beside it."""

    job_id: str
    kind: str
    datasets: list[Dataset]
    slices: list[int]
    csv_path: Path | None = None
    skipped: list[int] = field(default_factory=list)  # slices not done (partial export)


def job_sources(store: SliceStore, series_uid: str, uids: list[str], indices: list[int]) -> list[Dataset]:
    """Headers of the job's input slices, from the plane (channel) whose UIDs the job recorded.

    Raises
    ------
    SourceMismatch
        When no channel of the stored series holds the instances the job processed (the
        series was re-ingested since): run the job again.
    """
    info = store.series(series_uid)
    n_channels = max(1, len(info.channels))
    first = indices[0]
    for channel in range(n_channels):
        header = store.read_header(series_uid, first, channel)
        if not uids[first] or str(header.SOPInstanceUID) == uids[first]:
            break
    else:
        raise SourceMismatch(
            f"the stored series {series_uid} no longer holds instance {uids[first]} that the job "
            "processed (it was ingested again since); run the job again on the stored series"
        )
    headers = [store.read_header(series_uid, i, channel) for i in indices]
    for index, header in zip(indices, headers, strict=True):
        if uids[index] and str(header.SOPInstanceUID) != uids[index]:
            raise SourceMismatch(
                f"slice {index} of the stored series is {header.SOPInstanceUID}, but the job processed "
                f"{uids[index]}; run the job again on the stored series"
            )
    return headers


def _units_kept(processor: str, given: bool | None) -> bool:
    if given is not None:
        return given
    from pacslab.processing import UnknownProcessorError, registry

    try:
        return bool(getattr(registry.get(processor), "keeps_units", False))
    except UnknownProcessorError:  # a notebook processor not registered here: claim nothing
        return False


def _string_params(params: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): json.dumps(v) if not isinstance(v, str) else v for k, v in params.items()}


def _safe_name(job_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", job_id)


def export_job(
    store: SliceStore,
    job_id: str,
    *,
    allow_partial: bool = False,
    segment_labels: SegmentLabels | None = None,
    units_kept: bool | None = None,
    measurements_csv: Path | str | None = None,
    report: bool = False,
    segmentation: Dataset | None = None,
) -> ExportedJob:
    """Turn a job's result into DICOM datasets (and a CSV for measurements).

    Parameters
    ----------
    store : SliceStore
        The store holding the job record, its result file and its input series.
    job_id : str
        As listed by ``store.list_jobs()``; a job over several series has one record per
        series, ``"<job id>/<series uid>"``.
    allow_partial : bool
        Export only the done slices of an unfinished, cancelled or partly failed job.
    segment_labels : mapping or sequence, optional
        Mask jobs: the segment's name (default: the processor's name).
    units_kept : bool, optional
        Image jobs: whether the output keeps the input's units (HU). Default: what the
        processor declares (``keeps_units``), else False.
    measurements_csv : path-like, optional
        Measurement jobs: where the CSV goes (default ``<store>/jobs/<job>.measurements.csv``).
    report : bool
        Measurement jobs: also build a TID 1500 SR (referencing ``segmentation`` when given).
    segmentation : pydicom.Dataset, optional
        A SEG of the same series for the report to reference.

    Returns
    -------
    ExportedJob
        ``datasets`` is one SEG (mask), one instance per slice (image), or the SR if asked
        (measurements); send them with :func:`pacslab.export.send_to_pacs`.

    Raises
    ------
    IncompleteResult, EmptyResult, SourceMismatch, UnsupportedResult
        and the store's own errors for an unknown job or series.
    """
    from pacslab.store.results import ResultReader

    record = store.job(job_id)
    reader = ResultReader(record.result_path)
    provenance = reader.provenance
    kind = reader.kind
    done = reader.done_mask()
    slices = [int(i) for i in np.flatnonzero(done)]
    skipped = [int(i) for i in np.flatnonzero(~done)]
    if skipped and not allow_partial:
        raise IncompleteResult(job_id, len(slices), len(done))
    if not slices:
        raise EmptyResult(f"job {job_id!r} has no finished slice to export")
    uids = [str(u) for u in provenance.get("sop_instance_uids", [])]
    sources = job_sources(store, record.series_uid, uids, slices)
    processor, version = record.processor, record.version
    params = provenance.get("params", {}) or {}
    exported = ExportedJob(job_id, kind, [], slices, skipped=skipped)
    if kind == "mask":
        mask = np.stack([reader.read(i) for i in slices]).astype(np.uint8)
        seg = segmentation_from_mask(
            sources,
            mask,
            segment_labels or {1: processor},
            processor,
            version,
            result_key=job_id,
            algorithm_parameters=_string_params(params),
        )
        exported.datasets = [seg]
    elif kind == "image":
        images = np.stack([reader.read(i) for i in slices])
        description = f"{processor} {version} {json.dumps(params, sort_keys=True)}"
        keep = _units_kept(processor, units_kept)
        if images.ndim == 3:
            exported.datasets = derived_series(
                sources, images, processor, version, description, result_key=job_id, units_kept=keep
            )
        elif images.ndim == 4:
            # One derived series per output channel (e.g. FFT magnitude and phase).
            source_name = str(sources[0].get("SeriesDescription", ""))
            for channel in range(images.shape[-1]):
                exported.datasets += derived_series(
                    sources,
                    images[..., channel],
                    processor,
                    version,
                    f"{description} channel {channel}",
                    result_key=f"{job_id}#channel{channel}",
                    units_kept=False,
                    series_number=int(sources[0].get("SeriesNumber", 0) or 0) + 1000 + channel,
                    series_description=f"{processor} {version} ch{channel}: {source_name}",
                )
        else:
            raise UnsupportedResult(
                f"job {job_id!r} wrote images of shape {images.shape[1:]}; expected (rows, cols)"
            )
    elif kind == "measurements":
        table = reader.measurements().reset_index()
        exported.csv_path = write_measurements_csv(
            table, measurements_csv or store.jobs_dir / f"{_safe_name(job_id)}.measurements.csv"
        )
        if report:
            measured = table[
                ["sop_instance_uid", *[c for c in table.columns if c not in ("slice", "sop_instance_uid")]]
            ]
            exported.datasets = [
                measurement_report(
                    segmentation,
                    pd.DataFrame(measured),
                    sources,
                    algorithm_name=processor,
                    algorithm_version=version,
                    result_key=job_id,
                )
            ]
    else:
        raise UnsupportedResult(f"job {job_id!r} has result kind {kind!r}, which has no DICOM mapping")
    return exported
