"""Images → a derived series in the source's study (same IOD where valid, else Secondary Capture)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from pacslab.export.equipment import MANUFACTURER, software_version
from pacslab.export.errors import UnsupportedResult
from pacslab.export.rescale import StoredValues, stored_values
from pacslab.export.sources import check_sources, check_stack
from pacslab.export.uids import content_key, result_uid
from pacslab.export.window import WindowPreset, fitting_presets, source_presets

__all__ = ["derived_series", "derived_sop_class"]

# Derived series numbers sit above the scanner's so viewers list them after the originals.
SERIES_NUMBER_OFFSET = 1000

# Attributes of the source that describe its pixel values or its vendor's private world and
# would be false for the new pixels: dropped, then rewritten where the IOD needs them.
_PIXEL_DESCRIPTIONS = (
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "IconImageSequence",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "VOILUTFunction",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "DerivationCodeSequence",
    "DerivationDescription",
    "SourceImageSequence",
    "ContributingEquipmentSequence",
)


_DROPPED = frozenset(_PIXEL_DESCRIPTIONS)


def _single_frame_monochrome(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) == 1 and str(
        ds.get("PhotometricInterpretation", "MONOCHROME2")
    ).startswith("MONOCHROME")


def _has_identity_rescale(ds: Dataset) -> bool:
    return float(ds.get("RescaleSlope", 1) or 1) == 1.0 and float(ds.get("RescaleIntercept", 0) or 0) == 0.0


def derived_sop_class(sources: Sequence[Dataset], encoded: StoredValues) -> UID:
    """Pick the SOP class of the derived images: the source's where its IOD can hold them.

    CT Image Storage carries any rescale, so a CT stays CT. MR Image Storage has no rescale,
    so an MR stays MR only when the values are integers written as they are. Anything else
    becomes Secondary Capture.
    """
    sop_class = UID(str(sources[0].SOPClassUID))
    if not all(_single_frame_monochrome(ds) for ds in sources):
        return SecondaryCaptureImageStorage
    if sop_class == CTImageStorage:
        return CTImageStorage
    if (
        sop_class == MRImageStorage
        and encoded.exact
        and encoded.intercept == 0.0
        and all(_has_identity_rescale(ds) for ds in sources)
    ):
        return MRImageStorage
    return SecondaryCaptureImageStorage


def _source_image_item(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    purpose = codes.cid7202.SourceImageForImageProcessingOperation
    code = Dataset()
    code.CodeValue = purpose.value
    code.CodingSchemeDesignator = purpose.scheme_designator
    code.CodeMeaning = purpose.meaning
    item.PurposeOfReferenceCodeSequence = DicomSequence([code])
    return item


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _contributing_equipment(processor_name: str, processor_version: str, now: dt.datetime) -> Dataset:
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=MANUFACTURER,
        software_versions=software_version(),
        contribution_datetime=now,
        contribution_description=f"{processor_name} {processor_version}"[:64],
    )


def _image_type(ds: Dataset) -> list[str]:
    raw = ds.get("ImageType", [])
    values = [str(v) for v in raw] if not isinstance(raw, str) else [raw]
    return ["DERIVED", "SECONDARY", *values[2:]]


def _set_windows(ds: Dataset, presets: Sequence[WindowPreset]) -> None:
    ds.WindowCenter = [round(c, 4) for _, c, _ in presets]
    ds.WindowWidth = [round(w, 4) for _, _, w in presets]
    ds.WindowCenterWidthExplanation = [name[:64] for name, _, _ in presets]


def _set_pixels(ds: Dataset, pixels: np.ndarray, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()


def _file_meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta


def _patient_orientation(ds: Dataset) -> tuple[str, str]:
    """Row and column directions as patient letters, from the source's geometry."""
    if "ImageOrientationPatient" in ds:
        cosines = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
        letters = (("R", "L"), ("A", "P"), ("F", "H"))
        out = []
        for direction in cosines:
            axis = int(np.argmax(np.abs(direction)))
            out.append(letters[axis][int(direction[axis] > 0)])
        return out[0], out[1]
    if "PatientOrientation" in ds and len(ds.PatientOrientation) == 2:
        return str(ds.PatientOrientation[0]), str(ds.PatientOrientation[1])
    raise UnsupportedResult(
        "the source has neither ImageOrientationPatient nor PatientOrientation, so a Secondary "
        "Capture cannot say how the image lies; export it from a series with geometry"
    )


def _same_iod_image(
    source: Dataset, pixels: np.ndarray, encoded: StoredValues, sop_class: UID, units_kept: bool
) -> Dataset:
    # Copy element by element, leaving out the old pixels (the bulk of the copy) and whatever
    # describes them, and private elements whose meaning for the new pixels nobody knows.
    ds = Dataset()
    for element in source:
        if not element.tag.is_private and element.keyword not in _DROPPED:
            ds.add(copy.deepcopy(element))
    ds.SOPClassUID = sop_class
    if "PatientPosition" not in ds:  # Type 2C for CT/MR: present, empty when unknown
        ds.PatientPosition = ""
    _set_pixels(ds, pixels, encoded.signed)
    if sop_class == CTImageStorage:
        ds.RescaleSlope = encoded.slope
        ds.RescaleIntercept = encoded.intercept
        source_type = str(source.get("RescaleType", "HU") or "HU")
        ds.RescaleType = source_type if units_kept else "US"
    return ds


def _secondary_capture(
    source: Dataset,
    pixels: np.ndarray,
    encoded: StoredValues,
    series_uid: str,
    series_number: int,
    sop_uid: str,
    instance_number: int,
    units_kept: bool,
) -> Dataset:
    unsigned = pixels.astype(np.int32) - (-32768 if encoded.signed else 0)
    intercept = encoded.intercept + (-32768.0 if encoded.signed else 0.0) * encoded.slope
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=unsigned.astype(np.uint16),
        photometric_interpretation=hd.PhotometricInterpretationValues.MONOCHROME2,
        bits_allocated=16,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=_patient_orientation(source),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    image.RescaleSlope = encoded.slope
    image.RescaleIntercept = intercept
    image.RescaleType = str(source.get("RescaleType", "US") or "US") if units_kept else "US"
    # Keep the modality so the series is listed with its source, and any burned-in text flag.
    for keyword in ("Modality", "BurnedInAnnotation"):
        if keyword in source:
            setattr(image, keyword, source.get(keyword))
    return image


def derived_series(
    source_datasets: Sequence[Dataset],
    images: np.ndarray,
    processor_name: str,
    processor_version: str,
    description: str,
    *,
    result_key: str | None = None,
    rescaled: bool = True,
    units_kept: bool = True,
    series_number: int | None = None,
    series_description: str | None = None,
    derivation_code: Code | None = None,
) -> list[Dataset]:
    """Build a derived image series from processed slices, one instance per source slice.

    Parameters
    ----------
    source_datasets : sequence of pydicom.Dataset
        Headers of the source slices (pixel data not needed), one per image, in image order.
    images : numpy.ndarray
        The processed slices, (slices, rows, columns), in real-world units (HU for a CT)
        unless ``rescaled`` is False.
    processor_name, processor_version : str
        Named in the Series Description and the Contributing Equipment.
    description : str
        What was done, written as the Derivation Description (e.g. "Gaussian denoising, sigma=1").
    result_key : str, optional
        Identifies the result (the job id): the same key and sources give the same Series and
        SOP Instance UIDs. Default: a digest of the images and sources.
    rescaled : bool
        False when ``images`` are in the source's stored units; its rescale is applied first.
    units_kept : bool
        True when the processor keeps the source's units (a denoised CT is still HU); False
        writes Rescale Type "US" (unspecified).
    series_number : int, optional
        Default: the source's Series Number + 1000.
    series_description : str, optional
        Default: ``"<processor> <version>: <source description>"`` (64 characters at most).
    derivation_code : pydicom Code, optional
        CID 7203 code of the derivation (e.g. ``codes.cid7203.Smoothing``).

    Returns
    -------
    list of pydicom.Dataset
        One instance per slice: CT Image Storage for CT sources, MR Image Storage for MR sources
        when the values are integers, Secondary Capture otherwise; same study, new series.

    Raises
    ------
    SourceMismatch, MaskMismatch, NonFiniteValues, UnsupportedResult
    """
    check_sources(source_datasets)
    values = np.asarray(images)
    check_stack(source_datasets, values, "image stack")
    if values.ndim != 3:
        raise UnsupportedResult(
            f"derived images must be grayscale (slices, rows, columns), got shape {values.shape}"
        )
    if np.iscomplexobj(values):
        raise UnsupportedResult("complex images have no DICOM pixel encoding; export magnitude or phase")
    if not rescaled:
        values = np.stack(
            [
                values[i] * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
                for i, ds in enumerate(source_datasets)
            ]
        )
    encoded = stored_values(values)
    sop_class = derived_sop_class(source_datasets, encoded)
    first = source_datasets[0]
    source_series = str(first.SeriesInstanceUID)
    key = result_key or content_key(
        [values], processor_name, processor_version, *(str(ds.SOPInstanceUID) for ds in source_datasets)
    )
    series_uid = result_uid(key, "derived-series", source_series)
    number = series_number if series_number is not None else int(first.get("SeriesNumber", 0) or 0) + 1000
    name = series_description or f"{processor_name} {processor_version}: {first.get('SeriesDescription', '')}"
    presets = fitting_presets(values, source_presets(first) if units_kept else [])
    now = dt.datetime.now()
    equipment = _contributing_equipment(processor_name, processor_version, now)
    out: list[Dataset] = []
    for index, source in enumerate(source_datasets):
        sop_uid = result_uid(key, "derived", str(source.SOPInstanceUID))
        instance_number = int(source.get("InstanceNumber", index + 1) or index + 1)
        if sop_class == SecondaryCaptureImageStorage:
            ds = _secondary_capture(
                source,
                encoded.pixels[index],
                encoded,
                series_uid,
                number,
                sop_uid,
                instance_number,
                units_kept,
            )
        else:
            ds = _same_iod_image(source, encoded.pixels[index], encoded, sop_class, units_kept)
            ds.SOPInstanceUID = sop_uid
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.InstanceNumber = instance_number
        ds.SeriesDescription = name.strip().rstrip(":")[:64]
        ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
        ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
        ds.ImageType = _image_type(source)
        ds.DerivationDescription = description[:1024]
        if derivation_code is not None:
            ds.DerivationCodeSequence = DicomSequence([_code_item(derivation_code)])
        ds.SourceImageSequence = DicomSequence([_source_image_item(source)])
        if not {"Laterality", "ImageLaterality", "BodyPartExamined"} & set(ds.dir()):
            # Type 2C when the body part may be paired; with no body part named, empty says "unknown".
            ds.Laterality = ""
        ds.ContributingEquipmentSequence = DicomSequence([equipment])
        _set_windows(ds, presets)
        _file_meta(ds)
        out.append(ds)
    return out
