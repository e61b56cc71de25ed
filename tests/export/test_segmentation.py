"""Masks → DICOM Segmentation: validated by dciodvfy, read back by pydicom/highdicom, dumped by DCMTK."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from pacslab.export import (
    MaskMismatch,
    SegmentLabel,
    SourceMismatch,
    UnlabelledSegment,
    UnsupportedResult,
    segmentation_from_mask,
)


def _label_mask(hu: np.ndarray) -> np.ndarray:
    """Brain (label 1) and skull (label 3) of the phantom; label 2 deliberately unused."""
    mask = np.zeros(hu.shape, dtype=np.uint8)
    mask[(hu > 20) & (hu < 200)] = 1
    mask[hu > 500] = 3
    return mask


def _read_back_labels(seg: hd.seg.Segmentation, sources: list[pydicom.Dataset]) -> np.ndarray:
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in sources],
        combine_segments=True,
        skip_overlap_checks=True,
    )
    return np.asarray(pixels)


def test_binary_seg_round_trips_and_validates(tmp_path: Path, ct_sources, ct_hu, dciodvfy, dcmdump) -> None:
    mask = _label_mask(ct_hu)
    seg = segmentation_from_mask(
        ct_sources, mask, {1: "brain", 3: "skull"}, "threshold", "1.2", result_key="job-42"
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)

    assert dciodvfy(path).errors == []

    back = hd.seg.segread(path)
    assert back.SegmentationType == "BINARY"
    assert str(back.StudyInstanceUID) == str(ct_sources[0].StudyInstanceUID)
    assert str(back.FrameOfReferenceUID) == str(ct_sources[0].FrameOfReferenceUID)
    assert [s.SegmentLabel for s in back.SegmentSequence] == ["brain", "skull"]
    for item in back.SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "threshold"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("threshold", "1.2")
    # Segment numbers are 1..n; label 3 is segment 2.
    expected = np.where(mask == 3, 2, mask)
    np.testing.assert_array_equal(_read_back_labels(back, ct_sources), expected)

    dump = dcmdump(path)
    assert "ReferencedSeriesSequence" in dump
    assert str(ct_sources[0].SeriesInstanceUID) in dump
    for ds in ct_sources:
        if mask[ct_sources.index(ds)].any():
            assert str(ds.SOPInstanceUID) in dump


def test_fractional_seg_round_trips_within_one_step(tmp_path: Path, ct_sources, ct_hu, dciodvfy) -> None:
    probability = np.clip((ct_hu + 1000.0) / 2000.0, 0.0, 1.0).astype(np.float32)
    seg = segmentation_from_mask(
        ct_sources, probability, ["tissue probability"], "soft", "0.1", fractional=True
    )
    path = tmp_path / "fractional.dcm"
    seg.save_as(path, enforce_file_format=True)

    assert dciodvfy(path).errors == []
    back = hd.seg.segread(path)
    assert back.SegmentationType == "FRACTIONAL"
    pixels = back.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in ct_sources],
        rescale_fractional=True,
    )
    np.testing.assert_allclose(np.asarray(pixels)[..., 0], probability, atol=0.5 / 255 + 1e-6)


def test_fractional_seg_takes_one_channel_per_segment(ct_sources, ct_hu) -> None:
    low = np.clip((200.0 - ct_hu) / 1200.0, 0, 1)
    high = np.clip(ct_hu / 1000.0, 0, 1)
    seg = segmentation_from_mask(
        ct_sources,
        np.stack([low, high], axis=-1).astype(np.float32),
        {1: "soft", 2: "dense"},
        "soft",
        "0.1",
        fractional=True,
    )
    assert len(seg.SegmentSequence) == 2


def test_uids_depend_only_on_result_key_and_sources(ct_sources, ct_hu) -> None:
    mask = _label_mask(ct_hu)
    first = segmentation_from_mask(
        ct_sources, mask, {1: "brain", 3: "skull"}, "threshold", "1", result_key="a"
    )
    again = segmentation_from_mask(
        ct_sources, mask, {1: "brain", 3: "skull"}, "threshold", "1", result_key="a"
    )
    other = segmentation_from_mask(
        ct_sources, mask, {1: "brain", 3: "skull"}, "threshold", "1", result_key="b"
    )
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    assert first.SOPInstanceUID != other.SOPInstanceUID
    assert first.SeriesInstanceUID != other.SeriesInstanceUID
    # Without a key, the content decides: same mask → same UIDs, another mask → others.
    by_content = segmentation_from_mask(ct_sources, mask, {1: "b", 3: "s"}, "t", "1")
    assert (
        by_content.SOPInstanceUID
        == segmentation_from_mask(ct_sources, mask, {1: "b", 3: "s"}, "t", "1").SOPInstanceUID
    )
    assert (
        by_content.SOPInstanceUID
        != segmentation_from_mask(ct_sources, mask > 0, {1: "b"}, "t", "1").SOPInstanceUID
    )


def test_segment_label_codes_are_written(ct_sources, ct_hu) -> None:
    mask = (ct_hu > 500).astype(np.uint8)
    seg = segmentation_from_mask(
        ct_sources,
        mask,
        {1: SegmentLabel("skull", codes.cid7150.AnatomicalStructure, codes.SCT.Bone)},
        "t",
        "1",
    )
    item = seg.SegmentSequence[0]
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Bone.value
    assert item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"


def test_unlabelled_values_are_named(ct_sources, ct_hu) -> None:
    with pytest.raises(UnlabelledSegment, match=r"\[3\]") as info:
        segmentation_from_mask(ct_sources, _label_mask(ct_hu), {1: "brain"}, "t", "1")
    assert info.value.labels == (3,)


def test_mask_must_match_the_sources(ct_sources, ct_hu) -> None:
    mask = _label_mask(ct_hu)
    with pytest.raises(MaskMismatch, match="7 source instances"):
        segmentation_from_mask(ct_sources[:7], mask, {1: "a", 3: "b"}, "t", "1")
    with pytest.raises(MaskMismatch, match="keep the source geometry"):
        segmentation_from_mask(ct_sources, mask[:, :32, :32], {1: "a", 3: "b"}, "t", "1")
    with pytest.raises(MaskMismatch, match="slices, rows, columns"):
        segmentation_from_mask(ct_sources, mask[0], {1: "a", 3: "b"}, "t", "1")


def test_bad_mask_values_are_refused(ct_sources, ct_hu) -> None:
    with pytest.raises(UnsupportedResult, match="negative"):
        segmentation_from_mask(ct_sources, -_label_mask(ct_hu).astype(np.int16), {1: "a"}, "t", "1")
    with pytest.raises(UnsupportedResult, match="fractional=True"):
        segmentation_from_mask(ct_sources, ct_hu / 1000.0, {1: "a"}, "t", "1")
    with pytest.raises(UnsupportedResult, match=r"within \[0, 1\]"):
        segmentation_from_mask(ct_sources, ct_hu, {1: "a"}, "t", "1", fractional=True)
    with pytest.raises(MaskMismatch, match="background"):
        segmentation_from_mask(ct_sources, _label_mask(ct_hu), {0: "a", 1: "b", 3: "c"}, "t", "1")


def test_sources_must_be_one_study(ct_sources, ct_hu) -> None:
    mask = (ct_hu > 500).astype(np.uint8)
    with pytest.raises(SourceMismatch, match="no source instances"):
        segmentation_from_mask([], mask[:0], {1: "a"}, "t", "1")
    ct_sources[3].StudyInstanceUID = "1.2.3.4"
    with pytest.raises(SourceMismatch, match="2 studies"):
        segmentation_from_mask(ct_sources, mask, {1: "a"}, "t", "1")
    del ct_sources[3].StudyInstanceUID
    with pytest.raises(SourceMismatch, match="lacks StudyInstanceUID"):
        segmentation_from_mask(ct_sources, mask, {1: "a"}, "t", "1")


def test_nothing_found_is_still_a_valid_seg(tmp_path: Path, ct_sources, dciodvfy) -> None:
    seg = segmentation_from_mask(ct_sources, np.zeros((8, 64, 64), np.uint8), ["lesion"], "detector", "1")
    path = tmp_path / "empty.dcm"
    seg.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    pixels = hd.seg.segread(path).get_pixels_by_source_instance(
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in ct_sources]
    )
    assert not np.asarray(pixels).any()
