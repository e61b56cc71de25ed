"""Classify series from their measurements: features, a labels file, cross-validation on Dask.

A measuring job (e.g. ``region_measurements``) gives one row per slice; :func:`series_features`
summarises them per series; :func:`read_labels` reads the user's labels file (a CSV with a
series UID and a label per row); :func:`cross_validate_on_dask` trains a scikit-learn model
with stratified cross-validation whose folds run on the Dask cluster (joblib's dask
backend); :func:`save_model` writes the model with a JSON provenance file beside it.
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from distributed import Client
    from matplotlib.figure import Figure

    from pacslab.store import SeriesInfo

__all__ = [
    "FEATURE_STATISTICS",
    "CrossValidation",
    "LabelledSeries",
    "LabelsError",
    "cross_validate_on_dask",
    "example_labels",
    "join_labels",
    "load_model",
    "measurements_table",
    "predict_labels",
    "read_labels",
    "save_model",
    "series_features",
]

FEATURE_STATISTICS = ("mean", "std", "min", "max")
# Columns of a measurements table that are not measurements.
_NOT_MEASURED = {"study_uid", "series_uid", "slice", "sop_instance_uid"}
# Header names accepted for the two columns of a labels file (compared without case, spaces, _).
_UID_COLUMNS = {"seriesuid", "seriesinstanceuid", "series"}
_LABEL_COLUMNS = {"label", "class", "diagnosis", "category"}


class LabelsError(ValueError):
    """The labels file, or its match with the measured series, cannot be used; says how to fix it."""


def measurements_table(result_paths: Mapping[str, Path]) -> pd.DataFrame:
    """Every done slice of a measuring job's result files, with a ``series_uid`` column.

    Parameters
    ----------
    result_paths : mapping of str to Path
        Series Instance UID to result file (``JobSummary.result_paths``).
    """
    from pacslab.store.results import ResultReader

    frames = []
    for series_uid, path in result_paths.items():
        if not Path(path).exists():
            continue
        frame = ResultReader(path).measurements().reset_index()
        frame.insert(0, "series_uid", series_uid)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["series_uid", "slice"])


def series_features(measurements: pd.DataFrame) -> pd.DataFrame:
    """One row per series: mean, std, min and max of each measurement over its slices.

    Missing values (a slice where nothing was found) are left out of the statistics; a
    statistic without any value is 0. The ``slices`` column counts the measured slices.
    """
    if measurements.empty:
        raise LabelsError("the job measured no slice: run a measuring processor on some series first")
    columns = [
        c
        for c in measurements.columns
        if c not in _NOT_MEASURED and pd.api.types.is_numeric_dtype(measurements[c])
    ]
    grouped = measurements.groupby("series_uid")[columns]
    features = grouped.agg(list(FEATURE_STATISTICS))
    features.columns = [f"{column[0]}_{column[1]}" for column in features.columns]
    features = features.fillna(0.0)
    features["slices"] = measurements.groupby("series_uid").size()
    return features.sort_index()


def _normalise(name: object) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def read_labels(name: str, data: bytes) -> pd.DataFrame:
    """Read a labels CSV: a column of Series Instance UIDs and a column of labels.

    The UID column may be called ``series_uid``, ``SeriesInstanceUID`` or ``series``; the label
    column ``label``, ``class``, ``diagnosis`` or ``category``. Other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``series_uid`` and ``label`` (strings), one row per series.

    Raises
    ------
    LabelsError
        Not a CSV, a column missing, an empty label, or a series listed twice.
    """
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, sep=None, engine="python")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LabelsError(f"{name} is not a readable CSV file ({exc}); save the labels as CSV") from None
    columns = {_normalise(c): c for c in frame.columns}
    uid_column = next((columns[c] for c in columns if c in _UID_COLUMNS), None)
    label_column = next((columns[c] for c in columns if c in _LABEL_COLUMNS), None)
    if uid_column is None or label_column is None:
        missing = "a series UID column (series_uid)" if uid_column is None else "a label column (label)"
        raise LabelsError(f"{name} needs {missing}; its columns are {', '.join(map(str, frame.columns))}")
    labels = pd.DataFrame(
        {
            "series_uid": frame[uid_column].fillna("").str.strip(),
            "label": frame[label_column].fillna("").str.strip(),
        }
    )
    if labels.empty:
        raise LabelsError(f"{name} has no rows")
    for position, row in enumerate(labels.itertuples(index=False), start=2):
        if not row.series_uid or not row.label:
            raise LabelsError(f"{name} line {position}: both a series UID and a label are needed")
    duplicated = labels["series_uid"][labels["series_uid"].duplicated()]
    if not duplicated.empty:
        raise LabelsError(f"{name} lists series {duplicated.iloc[0]} twice; keep one label per series")
    return labels


def example_labels(series: Iterable[SeriesInfo], exclude_patients: Sequence[str] = ()) -> pd.DataFrame:
    """A labels table naming each series' modality (to try the workflow without a labels file).

    Series of ``exclude_patients`` are left out, to be predicted afterwards.
    """
    rows = [
        {"series_uid": s.series_uid, "label": s.modality}
        for s in series
        if str(s.patient_name) not in set(exclude_patients)
    ]
    return pd.DataFrame(rows, columns=["series_uid", "label"])


@dataclass
class LabelledSeries:
    """Features split into the labelled series (to train on) and the others (to predict)."""

    features: pd.DataFrame
    labels: pd.Series
    unlabelled: pd.DataFrame
    unknown: list[str] = field(default_factory=list)  # labelled series that were not measured


def join_labels(features: pd.DataFrame, labels: pd.DataFrame, min_per_label: int = 2) -> LabelledSeries:
    """Match labels to measured series.

    Raises
    ------
    LabelsError
        Fewer than two labels, or a label with fewer than ``min_per_label`` measured series.
    """
    by_uid = labels.set_index("series_uid")["label"]
    known = by_uid[by_uid.index.isin(features.index)]
    unknown = [uid for uid in by_uid.index if uid not in features.index]
    labelled = features.loc[known.index]
    counts = known.value_counts()
    if len(counts) < 2:
        raise LabelsError(
            f"the labels name {len(counts)} class(es) among the measured series; "
            "a classifier needs two or more"
        )
    rare = counts[counts < min_per_label]
    if not rare.empty:
        raise LabelsError(
            f"label {rare.index[0]!r} has {int(rare.iloc[0])} measured series; "
            f"give each label at least {min_per_label}"
        )
    unlabelled = features.loc[~features.index.isin(known.index)]
    return LabelledSeries(labelled, known.astype(str), unlabelled, unknown)


@dataclass
class CrossValidation:
    """A trained model and how it did in cross-validation."""

    model: Any
    folds: int
    scores: pd.DataFrame  # one row per fold: accuracy, balanced_accuracy
    predictions: pd.Series  # out-of-fold prediction for each labelled series
    labels: pd.Series
    feature_names: list[str]

    @property
    def accuracy(self) -> float:
        return float(self.scores["accuracy"].mean())

    def confusion_figure(self) -> Figure:
        """The out-of-fold confusion matrix as a matplotlib figure."""
        from matplotlib.figure import Figure
        from sklearn.metrics import ConfusionMatrixDisplay

        figure = Figure(figsize=(4.5, 4.0), layout="constrained")
        axes = figure.subplots()
        ConfusionMatrixDisplay.from_predictions(self.labels, self.predictions, ax=axes, colorbar=False)
        axes.set_title(f"{self.folds}-fold cross-validation")
        return figure


def _model(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=50, random_state=seed))


def cross_validate_on_dask(
    client: Client, data: LabelledSeries, folds: int = 5, seed: int = 0
) -> CrossValidation:
    """Cross-validate a random forest on the labelled series, folds run on the Dask cluster.

    ``folds`` is lowered to the size of the smallest label. The returned model is fitted on
    every labelled series.
    """
    import joblib
    from sklearn.model_selection import StratifiedKFold, cross_validate

    smallest = int(data.labels.value_counts().min())
    folds = max(2, min(folds, smallest))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    features, labels = data.features.to_numpy(), data.labels.to_numpy()
    # The dask backend sends each fold to a worker of the client's cluster.
    with joblib.parallel_config(backend="dask", wait_for_workers_timeout=60), client.as_current():
        result = cross_validate(
            _model(seed),
            features,
            labels,
            cv=splitter,
            scoring=("accuracy", "balanced_accuracy"),
            n_jobs=-1,
            return_estimator=True,
            return_indices=True,
        )
    # Out-of-fold predictions from the fold models, for the confusion matrix.
    predicted = np.empty(len(labels), dtype=object)
    for estimator, test in zip(result["estimator"], result["indices"]["test"], strict=True):
        predicted[test] = estimator.predict(features[test])
    scores = pd.DataFrame(
        {
            "fold": np.arange(1, folds + 1),
            "accuracy": result["test_accuracy"],
            "balanced_accuracy": result["test_balanced_accuracy"],
        }
    )
    model = _model(seed).fit(features, labels)
    return CrossValidation(
        model=model,
        folds=folds,
        scores=scores,
        predictions=pd.Series(predicted, index=data.labels.index, name="predicted"),
        labels=data.labels,
        feature_names=list(data.features.columns),
    )


def predict_labels(cv: CrossValidation, features: pd.DataFrame) -> pd.DataFrame:
    """Predicted label and its probability for each series (rows of ``features``)."""
    if features.empty:
        return pd.DataFrame(columns=["predicted", "probability"])
    missing = [c for c in cv.feature_names if c not in features.columns]
    if missing:
        raise LabelsError(f"the series lack feature {missing[0]!r}: measure them with the same processor")
    values = features[cv.feature_names].to_numpy()
    probabilities = cv.model.predict_proba(values)
    return pd.DataFrame(
        {"predicted": cv.model.predict(values), "probability": probabilities.max(axis=1)},
        index=features.index,
    )


def save_model(cv: CrossValidation, path: Path | str, provenance: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write the model (joblib) and ``<path>.json`` with its provenance and scores.

    Returns
    -------
    (Path, Path)
        The model file and the provenance file.
    """
    from importlib.metadata import version

    import joblib
    import sklearn

    model_path = Path(path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(cv.model, model_path)
    record = {
        **provenance,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "features": cv.feature_names,
        "labels": cv.labels.value_counts().to_dict(),
        "training_series": list(cv.labels.index),
        "folds": cv.folds,
        "accuracy": cv.accuracy,
        "balanced_accuracy": float(cv.scores["balanced_accuracy"].mean()),
        "scikit_learn": sklearn.__version__,
        "pacslab": version("pacslab"),
    }
    provenance_path = model_path.with_suffix(model_path.suffix + ".json")
    provenance_path.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return model_path, provenance_path


def load_model(path: Path | str) -> tuple[Any, dict[str, Any]]:
    """Read a model written by :func:`save_model` and its provenance."""
    import joblib

    model_path = Path(path)
    provenance = json.loads(model_path.with_suffix(model_path.suffix + ".json").read_text(encoding="utf-8"))
    return joblib.load(model_path), provenance
