"""Results as DICOM: SEG, derived image series, measurement tables and SR, de-identified copies.

Pure construction functions take pydicom source headers and numpy arrays and return datasets;
:mod:`pacslab.export.job` reads a finished job from the store, and :mod:`pacslab.export.send`
writes the datasets to a folder or sends them to a PACS.
"""

from pacslab.export.deidentify import (
    DeidentifiedCopy,
    HeldBack,
    PrivateTag,
    deidentified_copy,
    deidentify_dataset,
    write_pseudonym_map,
)
from pacslab.export.derived import derived_series, derived_sop_class
from pacslab.export.errors import (
    DeidentificationError,
    EmptyResult,
    ExportError,
    IncompleteResult,
    MaskMismatch,
    MeasurementTableError,
    NonFiniteValues,
    SendIncomplete,
    SourceMismatch,
    UnlabelledSegment,
    UnsupportedResult,
)
from pacslab.export.job import ExportedJob, export_job, job_sources
from pacslab.export.report import measurement_report, write_measurements_csv
from pacslab.export.rescale import StoredValues, stored_values
from pacslab.export.segmentation import SegmentLabel, segmentation_from_mask
from pacslab.export.send import DeidentifiedExport, deidentified_export, send_to_pacs, write_folder
from pacslab.export.uids import result_uid
from pacslab.export.window import fitting_presets

__all__ = [
    "DeidentificationError",
    "DeidentifiedCopy",
    "DeidentifiedExport",
    "EmptyResult",
    "ExportError",
    "ExportedJob",
    "HeldBack",
    "IncompleteResult",
    "MaskMismatch",
    "MeasurementTableError",
    "NonFiniteValues",
    "PrivateTag",
    "SegmentLabel",
    "SendIncomplete",
    "SourceMismatch",
    "StoredValues",
    "UnlabelledSegment",
    "UnsupportedResult",
    "deidentified_copy",
    "deidentified_export",
    "deidentify_dataset",
    "derived_series",
    "derived_sop_class",
    "export_job",
    "fitting_presets",
    "job_sources",
    "measurement_report",
    "result_uid",
    "segmentation_from_mask",
    "send_to_pacs",
    "stored_values",
    "write_folder",
    "write_measurements_csv",
    "write_pseudonym_map",
]
