"""Images → derived series: valid IODs, honest rescale, references and fitting windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage
from scipy import ndimage

from pacslab.export import MaskMismatch, NonFiniteValues, UnsupportedResult, derived_series


def _real_values(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_denoised_ct_stays_ct_with_honest_rescale(
    tmp_path: Path, ct_sources, ct_hu, dciodvfy, dcmdump, save_all
) -> None:
    denoised = ndimage.gaussian_filter(ct_hu, (0, 1.0, 1.0))
    out = derived_series(
        ct_sources,
        denoised,
        "gaussian",
        "2.0",
        "Gaussian denoising, sigma 1 px",
        result_key="job-7",
        derivation_code=codes.cid7203.Smoothing,
    )
    paths = save_all(out, tmp_path)
    for path in paths:
        assert dciodvfy(path).errors == []

    back = [pydicom.dcmread(p) for p in paths]
    slope = float(back[0].RescaleSlope)
    assert slope < 0.1  # a float result gets a fine step, not rounding to whole HU
    for ds, expected, source in zip(back, denoised, ct_sources, strict=True):
        assert ds.SOPClassUID == CTImageStorage
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SOPInstanceUID != source.SOPInstanceUID
        assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert ds.DerivationDescription == "Gaussian denoising, sigma 1 px"
        assert ds.DerivationCodeSequence[0].CodeMeaning == "Smoothing"
        assert "gaussian 2.0" in ds.SeriesDescription
        assert ds.RescaleType == "HU"
        reference = ds.SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert reference.ReferencedSOPClassUID == source.SOPClassUID
        np.testing.assert_allclose(_real_values(ds), expected, atol=slope / 2 + 1e-6)
    assert len({ds.SeriesInstanceUID for ds in back}) == 1
    # The source's brain/abdomen/lung/bone windows still fit HU values.
    assert list(back[0].WindowCenterWidthExplanation) == ["BRAIN", "ABDOMEN", "LUNG", "BONE"]

    dump = dcmdump(paths[0])
    assert "SourceImageSequence" in dump
    assert str(ct_sources[0].SOPInstanceUID) in dump


def test_integer_result_is_written_exactly(ct_sources, ct_hu) -> None:
    ct_sources[0].private_block(0x0043, "VENDOR RECON", create=True).add_new(0x01, "DS", "1.5")
    ct_sources[0].SmallestImagePixelValue = 0  # described the old pixels
    rounded = np.rint(ndimage.median_filter(ct_hu, size=(1, 3, 3))).astype(np.int16)
    out = derived_series(ct_sources, rounded, "median", "1", "median 3x3")
    assert float(out[0].RescaleSlope) == 1.0
    assert not [element for element in out[0] if element.tag.is_private]
    assert "SmallestImagePixelValue" not in out[0]
    for ds, expected in zip(out, rounded, strict=True):
        np.testing.assert_array_equal(_real_values(ds), expected)


def test_new_units_get_a_window_from_the_data(tmp_path: Path, ct_sources, ct_hu, dciodvfy, save_all) -> None:
    edges = np.hypot(ndimage.sobel(ct_hu, axis=1), ndimage.sobel(ct_hu, axis=2)) / 4000.0
    out = derived_series(ct_sources, edges, "sobel", "1", "edge magnitude", units_kept=False)
    ds = out[0]
    assert ds.RescaleType == "US"
    assert ds.WindowCenterWidthExplanation == "DATA"
    low, high = np.percentile(edges, [1, 99])
    assert float(ds.WindowCenter) == pytest.approx((low + high) / 2, rel=1e-3)
    assert float(ds.WindowWidth) == pytest.approx(max(high - low, 1.0), rel=1e-3)
    for path in save_all(out, tmp_path):
        assert dciodvfy(path).errors == []


def test_stored_value_input_is_rescaled_first(ct_sources, ct_hu) -> None:
    stored = np.stack([ds.pixel_array for ds in ct_sources]).astype(np.float32)
    out = derived_series(ct_sources, stored, "identity", "1", "copy", rescaled=False)
    np.testing.assert_allclose(np.stack([_real_values(ds) for ds in out]), ct_hu, atol=1e-6)


def test_uids_are_deterministic_per_job_and_source(ct_sources, ct_hu) -> None:
    first = derived_series(ct_sources, ct_hu, "p", "1", "d", result_key="job-1")
    again = derived_series(ct_sources, ct_hu + 1, "p", "1", "d", result_key="job-1")
    other = derived_series(ct_sources, ct_hu, "p", "1", "d", result_key="job-2")
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    assert first[0].SeriesInstanceUID == again[0].SeriesInstanceUID
    assert not {d.SOPInstanceUID for d in first} & {d.SOPInstanceUID for d in other}
    assert len({d.SOPInstanceUID for d in first}) == len(ct_sources)
    # A part of the series keeps the UIDs its slices had in the whole.
    part = derived_series(ct_sources[2:5], ct_hu[2:5], "p", "1", "d", result_key="job-1")
    assert [d.SOPInstanceUID for d in part] == [d.SOPInstanceUID for d in first[2:5]]


def test_integer_mr_stays_mr(tmp_path: Path, mr_magnitude_sources, dciodvfy, save_all) -> None:
    values = np.stack([ds.pixel_array for ds in mr_magnitude_sources]).astype(np.int32) // 2
    out = derived_series(mr_magnitude_sources, values, "halve", "1", "halved")
    assert {ds.SOPClassUID for ds in out} == {MRImageStorage}
    assert "RescaleSlope" not in out[0]
    for ds, expected in zip(out, values, strict=True):
        np.testing.assert_array_equal(ds.pixel_array, expected)
    for path in save_all(out, tmp_path):
        assert dciodvfy(path).errors == []


def test_float_mr_becomes_secondary_capture(tmp_path: Path, mr_magnitude_sources, dciodvfy, save_all) -> None:
    values = np.stack([ds.pixel_array for ds in mr_magnitude_sources]).astype(np.float64) / 3.0 - 50.0
    out = derived_series(mr_magnitude_sources, values, "third", "1", "divided by three")
    paths = save_all(out, tmp_path)
    for path in paths:
        assert dciodvfy(path).errors == []
    back = [pydicom.dcmread(p) for p in paths]
    slope = float(back[0].RescaleSlope)
    for ds, expected, source in zip(back, values, mr_magnitude_sources, strict=True):
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.Modality == "MR"
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        np.testing.assert_allclose(_real_values(ds), expected, atol=slope / 2 + 1e-6)


def test_bad_images_are_refused(ct_sources, ct_hu) -> None:
    broken = ct_hu.copy()
    broken[2, 5, 5] = np.nan
    with pytest.raises(NonFiniteValues, match="1 values are NaN"):
        derived_series(ct_sources, broken, "p", "1", "d")
    with pytest.raises(MaskMismatch, match="7 source instances"):
        derived_series(ct_sources[:7], ct_hu, "p", "1", "d")
    with pytest.raises(UnsupportedResult, match="grayscale"):
        derived_series(ct_sources, np.stack([ct_hu] * 3, axis=-1), "p", "1", "d")
    with pytest.raises(UnsupportedResult, match="complex"):
        derived_series(ct_sources, ct_hu * 1j, "p", "1", "d")
