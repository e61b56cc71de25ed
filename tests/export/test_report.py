"""Measurements → CSV and TID 1500 SR referencing the SEG."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pytest

from pacslab.export import (
    EmptyResult,
    MeasurementTableError,
    SourceMismatch,
    measurement_report,
    segmentation_from_mask,
    write_measurements_csv,
)

PIXEL_AREA_MM2 = 0.25 * 8 * 8  # phantom spacing at 64 columns is 4 mm


@pytest.fixture
def labelled(ct_sources, ct_hu):
    mask = np.zeros(ct_hu.shape, dtype=np.uint8)
    mask[(ct_hu > 20) & (ct_hu < 200)] = 1
    mask[ct_hu > 500] = 2
    seg = segmentation_from_mask(ct_sources, mask, {1: "brain", 2: "skull"}, "threshold", "1", result_key="j")
    rows = []
    for i, ds in enumerate(ct_sources):
        for segment in (1, 2):
            inside = mask[i] == segment
            rows.append(
                {
                    "slice": i,
                    "sop_instance_uid": str(ds.SOPInstanceUID),
                    "segment": segment,
                    "area": float(inside.sum()) * PIXEL_AREA_MM2,
                    "mean": float(ct_hu[i][inside].mean()) if inside.any() else np.nan,
                }
            )
    return seg, pd.DataFrame(rows)


def test_sr_references_the_seg_and_carries_the_values(
    tmp_path: Path, ct_sources, labelled, dciodvfy, dcmdump
) -> None:
    seg, table = labelled
    sr = measurement_report(
        seg,
        table,
        ct_sources,
        algorithm_name="region-stats",
        algorithm_version="1.0",
        units={"mean": "[hnsf'U]"},
        result_key="j",
    )
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []

    back = hd.sr.srread(path)
    assert str(back.StudyInstanceUID) == str(ct_sources[0].StudyInstanceUID)
    groups = back.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    for group, segment in zip(groups, (1, 2), strict=True):
        referenced = group.referenced_segment
        assert referenced is not None
        sop = referenced[0].ReferencedSOPSequence[0]
        assert sop.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert sop.ReferencedSegmentNumber == segment
        assert ct_sources[0].SeriesInstanceUID == referenced[1].UID  # source series of the SEG
        rows = table[table["segment"] == segment]
        areas = [m.value for m in group.get_measurements(name=hd.sr.CodedConcept("42798000", "SCT", "Area"))]
        np.testing.assert_allclose(sorted(areas), sorted(rows["area"]))
        means = [m.value for m in group.get_measurements(name=hd.sr.CodedConcept("373098007", "SCT", "Mean"))]
        np.testing.assert_allclose(sorted(means), sorted(rows["mean"].dropna()))
        unit = group.get_measurements(name=hd.sr.CodedConcept("373098007", "SCT", "Mean"))[0].unit
        assert unit.value == "[hnsf'U]"

    dump = dcmdump(path)
    assert str(seg.SOPInstanceUID) in dump  # the SEG is referenced (and listed as evidence)
    assert str(ct_sources[3].SOPInstanceUID) in dump


def test_single_segment_needs_no_segment_column(tmp_path: Path, ct_sources, ct_hu, dciodvfy) -> None:
    mask = (ct_hu > 500).astype(np.uint8)
    seg = segmentation_from_mask(ct_sources, mask, ["skull"], "threshold", "1")
    table = pd.DataFrame({"volume": [float(mask.sum()) * PIXEL_AREA_MM2 * 1.5]})
    sr = measurement_report(seg, table, ct_sources, algorithm_name="volume", algorithm_version="1")
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    assert dciodvfy(tmp_path / "sr.dcm").errors == []
    (group,) = hd.sr.srread(tmp_path / "sr.dcm").content.get_volumetric_roi_measurement_groups()
    (volume,) = group.get_measurements()
    assert volume.unit.value == "mm3"
    assert volume.value == pytest.approx(table["volume"][0])


def test_report_errors_are_named(ct_sources, labelled) -> None:
    seg, table = labelled
    kw = {"algorithm_name": "a", "algorithm_version": "1"}
    with pytest.raises(EmptyResult):
        measurement_report(seg, table.iloc[:0], ct_sources, **kw)
    with pytest.raises(MeasurementTableError, match="'segment' column"):
        measurement_report(seg, table.drop(columns="segment"), ct_sources, **kw)
    with pytest.raises(MeasurementTableError, match=r"segment numbers \[5\]"):
        measurement_report(seg, table.assign(segment=5), ct_sources, **kw)
    with pytest.raises(MeasurementTableError, match="not numeric"):
        measurement_report(seg, table.assign(area="big"), ct_sources, **kw)
    with pytest.raises(MeasurementTableError, match="only reserved columns"):
        measurement_report(seg, table[["slice", "segment"]], ct_sources, **kw)
    with pytest.raises(SourceMismatch, match="were not given"):
        measurement_report(seg, table, ct_sources[:4], **kw)
    with pytest.raises(MeasurementTableError, match="not in the series"):
        measurement_report(seg, table.assign(sop_instance_uid="1.2.3"), ct_sources, **kw)


def test_csv_names_the_source_instance(tmp_path: Path, ct_sources, labelled) -> None:
    _, table = labelled
    path = write_measurements_csv(
        table.drop(columns="sop_instance_uid"), tmp_path / "out" / "m.csv", ct_sources
    )
    back = pd.read_csv(path, dtype={"sop_instance_uid": str})
    assert list(back.columns) == ["slice", "sop_instance_uid", "segment", "area", "mean"]
    assert back["sop_instance_uid"].tolist() == [str(ct_sources[i].SOPInstanceUID) for i in table["slice"]]
    np.testing.assert_allclose(back["area"], table["area"])
    assert not list(path.parent.glob("*.partial"))


def test_csv_errors_are_named(tmp_path: Path, ct_sources, labelled) -> None:
    _, table = labelled
    with pytest.raises(EmptyResult):
        write_measurements_csv(table.iloc[:0], tmp_path / "m.csv")
    with pytest.raises(MeasurementTableError, match="series has 3 slices"):
        write_measurements_csv(table.drop(columns="sop_instance_uid"), tmp_path / "m.csv", ct_sources[:3])
    assert not (tmp_path / "m.csv").exists()


def test_image_measurements_without_seg(tmp_path: Path, ct_sources, ct_hu, dciodvfy) -> None:
    """A measurement job's table (one row per slice, unit suffixes) as a TID 1501 report."""
    inside = ct_hu > 0
    table = pd.DataFrame(
        {
            "sop_instance_uid": [str(ds.SOPInstanceUID) for ds in ct_sources],
            "area_mm2": inside.sum(axis=(1, 2)) * PIXEL_AREA_MM2,
            "mean_hu": [
                float(s[m].mean()) if m.any() else np.nan for s, m in zip(ct_hu, inside, strict=True)
            ],
            "count": np.ones(len(ct_sources)),
        },
        index=pd.RangeIndex(len(ct_sources), name="slice"),
    )
    sr = measurement_report(
        None, table, ct_sources, algorithm_name="region_measurements", algorithm_version="1.0", result_key="m"
    )
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    (group,) = hd.sr.srread(path).content.get_image_measurement_groups()
    areas = group.get_measurements(name=hd.sr.CodedConcept("42798000", "SCT", "Area"))
    assert [a.unit.value for a in areas] == ["mm2"] * len(ct_sources)
    np.testing.assert_allclose([a.value for a in areas], table["area_mm2"])
    means = group.get_measurements(name=hd.sr.CodedConcept("373098007", "SCT", "Mean"))
    assert {m.unit.value for m in means} == {"[hnsf'U]"}
    assert len(means) == int(table["mean_hu"].notna().sum())
