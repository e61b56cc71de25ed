"""Classifying series from their measurements: features, labels files, cross-validation on Dask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from pacslab.classify import (
    LabelsError,
    cross_validate_on_dask,
    example_labels,
    join_labels,
    load_model,
    predict_labels,
    read_labels,
    save_model,
    series_features,
)


def _measurements(series: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for uid, areas in series.items():
        for index, area in enumerate(areas):
            rows.append({"series_uid": uid, "slice": index, "sop_instance_uid": f"{uid}.{index}",
                         "area_mm2": area, "mean_hu": area / 10})  # fmt: skip
    return pd.DataFrame(rows)


def test_features_summarise_each_series() -> None:
    features = series_features(_measurements({"1.1": [1.0, 3.0], "1.2": [5.0, 5.0, np.nan]}))
    assert list(features.index) == ["1.1", "1.2"]
    assert features.loc["1.1", "area_mm2_mean"] == 2.0
    assert features.loc["1.1", "area_mm2_max"] == 3.0
    assert features.loc["1.2", "area_mm2_std"] == 0.0
    assert list(features["slices"]) == [2, 3]
    assert "sop_instance_uid_mean" not in features.columns
    with pytest.raises(LabelsError, match="measured no slice"):
        series_features(pd.DataFrame(columns=["series_uid", "slice"]))


def test_labels_file_columns_and_delimiters() -> None:
    labels = read_labels("l.csv", b"SeriesInstanceUID;Diagnosis;note\n1.1;tumour;x\n1.2; healthy ;\n")
    assert labels.to_dict("list") == {"series_uid": ["1.1", "1.2"], "label": ["tumour", "healthy"]}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"uid,label\n1.1,a\n", "needs a series UID column"),
        (b"series_uid,comment\n1.1,a\n", "needs a label column"),
        (b"series_uid,label\n", "has no rows"),
        (b"series_uid,label\n1.1,a\n1.2,\n", "line 3: both a series UID and a label are needed"),
        (b"series_uid,label\n1.1,a\n1.1,b\n", "lists series 1.1 twice"),
        (b"\xff\xfe\x00\x01garbage", "l.csv"),
    ],
)
def test_bad_labels_files_are_named(data: bytes, says: str) -> None:
    with pytest.raises(LabelsError, match=says):
        read_labels("l.csv", data)


def test_join_keeps_unlabelled_series_for_prediction() -> None:
    features = series_features(
        _measurements({"a1": [1.0], "a2": [1.5], "b1": [9.0], "b2": [9.5], "x": [5.0]})
    )
    labels = pd.DataFrame(
        {"series_uid": ["a1", "a2", "b1", "b2", "gone"], "label": ["a", "a", "b", "b", "b"]}
    )
    data = join_labels(features, labels)
    assert sorted(data.labels.index) == ["a1", "a2", "b1", "b2"]
    assert list(data.unlabelled.index) == ["x"]
    assert data.unknown == ["gone"]
    with pytest.raises(LabelsError, match="label 'b' has 1 measured series"):
        join_labels(features, labels[labels.series_uid != "b2"])
    with pytest.raises(LabelsError, match="1 class"):
        join_labels(features, labels[labels.label == "a"])


def test_example_labels_are_modalities() -> None:
    class Info:
        def __init__(self, uid: str, name: str, modality: str) -> None:
            self.series_uid, self.patient_name, self.modality = uid, name, modality

    infos = [Info("1", "Doe^J", "CT"), Info("2", "Roe^R", "MR"), Info("3", "Keep^Out", "CT")]
    labels = example_labels(infos, exclude_patients=["Keep^Out"])  # type: ignore[arg-type]
    assert labels.to_dict("list") == {"series_uid": ["1", "2"], "label": ["CT", "MR"]}


def test_cross_validation_on_the_cluster_saves_and_predicts(dask_client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    small = {f"s{i}": list(rng.normal(10, 1, 4)) for i in range(6)}
    large = {f"l{i}": list(rng.normal(100, 1, 4)) for i in range(6)}
    features = series_features(_measurements({**small, **large, "new": [99.0, 101.0]}))
    labels = pd.DataFrame(
        {"series_uid": [*small, *large], "label": ["small"] * len(small) + ["large"] * len(large)}
    )
    data = join_labels(features, labels)
    cv = cross_validate_on_dask(dask_client, data, folds=3)
    assert cv.folds == 3
    assert list(cv.scores["fold"]) == [1, 2, 3]
    assert cv.accuracy == 1.0
    assert (cv.predictions == cv.labels).all()
    predicted = predict_labels(cv, data.unlabelled)
    assert predicted.loc["new", "predicted"] == "large"
    model_path, provenance_path = save_model(cv, tmp_path / "model.joblib", {"job_id": "job-1"})
    model, provenance = load_model(model_path)
    assert provenance_path.name == "model.joblib.json"
    assert provenance["job_id"] == "job-1"
    assert provenance["labels"] == {"small": 6, "large": 6}
    assert provenance["accuracy"] == 1.0
    assert list(model.predict(data.unlabelled[cv.feature_names].to_numpy())) == ["large"]
    figure = cv.confusion_figure()
    assert figure.axes[0].get_title() == "3-fold cross-validation"
