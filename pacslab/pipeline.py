"""The batch pipeline: find studies on a PACS, retrieve them, run a processor, write a summary.

This is what ``notebooks/batch_pipeline.ipynb`` runs headless under papermill: every
parameter is checked before anything is retrieved (a bad one raises
:class:`PipelineParameterError` naming it), each study is retrieved into the store and
processed on Dask, and the run leaves in its output folder

- ``summary.csv``: one row per study (retrieved instances, slices done and failed, status);
- ``summary.png``: slices done and failed per study, and the first measurement per slice
  when the processor measures;
- ``measurements.csv``: every measured slice, for processors that measure;
- ``parameters.json``: the parameters of the run.

A study that fails does not stop the others; :meth:`PipelineRun.raise_for_failures` raises
:class:`StudiesFailed` at the end so that papermill (and ``pacslab run``) exit non-zero.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.config import Config, PacsNode
    from pacslab.pacs import PacsClient, StudyMatch
    from pacslab.processing import Processor
    from pacslab.store import SliceStore

__all__ = [
    "QUERY_FILTERS",
    "PipelineError",
    "PipelineParameterError",
    "PipelineParameters",
    "PipelineRun",
    "StudiesFailed",
    "StudyOutcome",
    "check_parameters",
    "run_pipeline",
    "summary_frame",
    "write_summary_plot",
]

# The study-level C-FIND filters a query may use (the keyword arguments of find_studies).
QUERY_FILTERS = (
    "patient_name",
    "patient_id",
    "patient_birth_date",
    "accession_number",
    "study_date",
    "modality",
    "study_description",
)
SUMMARY_COLUMNS = [
    "study_uid",
    "patient_id",
    "patient_name",
    "study_date",
    "study_description",
    "status",
    "series",
    "instances",
    "slices",
    "slices_done",
    "slices_failed",
    "job_id",
    "seconds",
    "error",
]


class PipelineError(Exception):
    """The batch pipeline could not run, or did not process every study."""


class PipelineParameterError(PipelineError, ValueError):
    """A pipeline parameter is wrong; ``parameter`` names it and the message says what to pass."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"parameter {parameter!r}: {problem}")


class StudiesFailed(PipelineError):
    """Some studies were not processed completely; the summary says which and why."""

    def __init__(self, failed: Sequence[StudyOutcome], total: int, summary_csv: Path) -> None:
        self.failed = list(failed)
        lines = [f"  {o.study_uid} ({o.patient_name}): {o.error}" for o in self.failed]
        super().__init__(
            f"{len(self.failed)} of {total} studies failed (see {summary_csv}):\n" + "\n".join(lines)
        )


@dataclass(frozen=True)
class PipelineParameters:
    """The checked parameters of a run."""

    node: PacsNode
    study_uids: tuple[str, ...]
    query: dict[str, str]
    processor: Processor
    processor_params: dict[str, Any]
    output_dir: Path


@dataclass
class StudyOutcome:
    """What happened to one study."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    status: str = "failed"  # "done" or "failed"
    series: int = 0
    instances: int = 0
    slices: int = 0
    slices_done: int = 0
    slices_failed: int = 0
    job_id: str = ""
    seconds: float = 0.0
    error: str = ""
    series_uids: list[str] = field(default_factory=list)
    result_paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class PipelineRun:
    """The outcome of :func:`run_pipeline` and the files it wrote."""

    parameters: PipelineParameters
    outcomes: list[StudyOutcome]
    summary_csv: Path
    summary_png: Path
    measurements_csv: Path | None = None

    @property
    def failed(self) -> list[StudyOutcome]:
        return [o for o in self.outcomes if o.status != "done"]

    @property
    def summary(self) -> pd.DataFrame:
        """The summary table (as written to ``summary.csv``)."""
        return summary_frame(self.outcomes)

    def raise_for_failures(self) -> None:
        """Raise :class:`StudiesFailed` when any study was not processed completely."""
        if self.failed:
            raise StudiesFailed(self.failed, len(self.outcomes), self.summary_csv)


def check_parameters(
    config: Config,
    *,
    node: str = "",
    study_uids: Sequence[str] | str = (),
    query: Mapping[str, Any] | None = None,
    processor: str = "",
    processor_params: Mapping[str, Any] | None = None,
    output_dir: str | Path = "",
    store_path: str | Path = "",
) -> PipelineParameters:
    """Check every parameter of a run before anything is retrieved.

    Parameters
    ----------
    config : Config
        Where the PACS nodes and the store are configured.
    node : str
        A node name of the config; empty picks its default node.
    study_uids : sequence of str, or str
        Study Instance UIDs (a string may list several, separated by commas or spaces).
    query : mapping, optional
        Study-level filters (see :data:`QUERY_FILTERS`), used when ``study_uids`` is empty.
    processor : str
        A registered processor name.
    processor_params : mapping, optional
        Its parameter values; missing ones take their defaults.
    output_dir : str or Path
        Folder for the summary files; empty gives ``<store>/runs/batch-<time>``.
    store_path : str or Path
        The store's folder, for the default output folder; empty takes the config's.

    Raises
    ------
    PipelineParameterError
        Naming the first wrong parameter.
    """
    from pacslab.processing import ProcessorError, registry

    try:
        pacs_node = config.node(node or None)
    except KeyError as exc:
        raise PipelineParameterError("node", str(exc.args[0])) from None

    if isinstance(study_uids, str):
        uids = tuple(u for u in study_uids.replace(",", " ").split() if u)
    elif isinstance(study_uids, Sequence) and all(isinstance(u, str) for u in study_uids):
        uids = tuple(u.strip() for u in study_uids if u.strip())
    else:
        raise PipelineParameterError(
            "study_uids", f"expected a list of Study Instance UIDs, got {study_uids!r}"
        )
    for uid in uids:
        if len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid):
            raise PipelineParameterError(
                "study_uids", f"{uid!r} is not a UID (digits and dots, at most 64 characters)"
            )
    if len(set(uids)) != len(uids):
        raise PipelineParameterError("study_uids", "a study is listed twice")

    filters: dict[str, str] = {}
    if query is not None and not isinstance(query, Mapping):
        raise PipelineParameterError("query", f"expected a mapping of filters, got {query!r}")
    for key, value in (query or {}).items():
        if key not in QUERY_FILTERS:
            raise PipelineParameterError(
                "query", f"unknown filter {key!r} (filters: {', '.join(QUERY_FILTERS)})"
            )
        if value is None or value == "":
            continue
        filters[key] = str(value)
    if not uids and not filters:
        raise PipelineParameterError(
            "study_uids", "give Study Instance UIDs, or at least one filter in 'query' (e.g. patient_id)"
        )

    if not processor:
        raise PipelineParameterError("processor", f"name a processor ({', '.join(registry.names())})")
    try:
        proc = registry.get(processor)
    except ProcessorError as exc:
        raise PipelineParameterError("processor", str(exc)) from None
    if processor_params is not None and not isinstance(processor_params, Mapping):
        raise PipelineParameterError(
            "processor_params", f"expected a mapping of parameter values, got {processor_params!r}"
        )
    try:
        checked = proc.validate(dict(processor_params or {}))
    except (ProcessorError, ValueError, TypeError) as exc:
        raise PipelineParameterError("processor_params", str(exc)) from None

    if output_dir:
        folder = Path(output_dir).expanduser()
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = Path(store_path or config.store_path).expanduser() / "runs" / f"batch-{stamp}"
    if folder.exists() and not folder.is_dir():
        raise PipelineParameterError("output_dir", f"{folder} exists and is not a folder")
    return PipelineParameters(pacs_node, uids, filters, proc, checked, folder)


def _study_outcome(match: StudyMatch) -> StudyOutcome:
    return StudyOutcome(
        study_uid=match.study_uid,
        patient_id=match.patient_id,
        patient_name=str(match.patient_name),
        study_date=match.study_date,
        study_description=match.study_description,
    )


def _find_studies(pacs: PacsClient, params: PipelineParameters) -> list[StudyOutcome]:
    if params.study_uids:
        found = {m.study_uid: m for m in pacs.find_studies(study_uid=list(params.study_uids))}
        outcomes = []
        for uid in params.study_uids:
            if uid in found:
                outcomes.append(_study_outcome(found[uid]))
            else:
                outcomes.append(StudyOutcome(uid, error=f"not found on {params.node.name}"))
        return outcomes
    filters: dict[str, Any] = dict(params.query)
    return [_study_outcome(m) for m in pacs.find_studies(**filters)]


def _process_study(
    outcome: StudyOutcome,
    pacs: PacsClient,
    store: SliceStore,
    client: Client,
    params: PipelineParameters,
    log: Callable[[str], None],
) -> None:
    from pacslab.retrieve import NON_IMAGE_MODALITIES, retrieve_into_store

    retrieved = retrieve_into_store(pacs, store, outcome.study_uid)
    report = retrieved.report
    outcome.instances = report.n_instances
    # Results sent back to the PACS (SEG, SR) are part of the study; only images are processed.
    outcome.series_uids = [
        uid
        for uid in dict.fromkeys(report.series_uids)
        if store.series(uid).modality not in NON_IMAGE_MODALITIES
    ]
    outcome.series = len(outcome.series_uids)
    problems = []
    if retrieved.incomplete is not None:
        problems.append(str(retrieved.incomplete))
    if report.rejected:
        problems.append(f"{len(report.rejected)} instance(s) rejected: {report.rejected[0].error}")
    log(f"{outcome.study_uid}: retrieved {report}")
    if not outcome.series_uids:
        outcome.error = "; ".join(problems) or "the PACS sent no image series"
        return
    job = _run_job(client, store, params, outcome.series_uids)
    outcome.job_id = job.job_id
    outcome.result_paths = dict(job.result_paths)
    try:
        summary = job.wait()
    except Exception as exc:
        failed_summary = getattr(exc, "summary", None)
        if failed_summary is not None:
            outcome.slices = failed_summary.total
            outcome.slices_done = failed_summary.done
            outcome.slices_failed = failed_summary.failed
        raise
    outcome.slices, outcome.slices_done, outcome.slices_failed = summary.total, summary.done, summary.failed
    if summary.failed:
        first = summary.failures[0]
        last_line = (first.error.strip().splitlines() or [""])[-1]
        problems.append(f"{summary.failed} slice(s) failed, first: slice {first.index}: {last_line}")
    if summary.status != "done":
        problems.append(f"job {summary.status}{': ' + summary.error if summary.error else ''}")
    if problems:
        outcome.error = "; ".join(problems)
    else:
        outcome.status = "done"


def _run_job(client: Client, store: SliceStore, params: PipelineParameters, series_uids: list[str]) -> Any:
    from pacslab.jobs import run_job

    # The text bar goes to stderr: papermill's log and the executed notebook show it.
    return run_job(
        client, store, params.processor.name, params.processor_params, series_uids, progress_bar=True
    )


def summary_frame(outcomes: Sequence[StudyOutcome]) -> pd.DataFrame:
    """One row per study, the columns of ``summary.csv``."""
    rows = [{k: v for k, v in asdict(o).items() if k in SUMMARY_COLUMNS} for o in outcomes]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _measurements(outcomes: Sequence[StudyOutcome]) -> pd.DataFrame:
    from pacslab.classify import measurements_table

    frames = []
    for outcome in outcomes:
        frame = measurements_table(outcome.result_paths)
        if not frame.empty:
            frame.insert(0, "study_uid", outcome.study_uid)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_summary_plot(summary: pd.DataFrame, measurements: pd.DataFrame | None, path: Path) -> Path:
    """Draw slices done/failed per study (and the first measurement per slice) into a PNG."""
    from matplotlib.figure import Figure

    numeric = []
    if measurements is not None and not measurements.empty:
        skip = {"study_uid", "series_uid", "slice", "sop_instance_uid"}
        numeric = [
            c
            for c in measurements.columns
            if c not in skip and pd.api.types.is_numeric_dtype(measurements[c])
        ]
    panels = 2 if numeric else 1
    figure = Figure(figsize=(6.0 * panels, 4.0), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    labels = [
        f"{name or '?'}\n{uid[-12:]}"
        for name, uid in zip(summary["patient_name"], summary["study_uid"], strict=True)
    ]
    positions = list(range(len(labels)))
    axes[0].bar(positions, summary["slices_done"], label="done", color="#2e7d32")
    axes[0].bar(
        positions, summary["slices_failed"], bottom=summary["slices_done"], label="failed", color="#c62828"
    )
    axes[0].set_xticks(positions, labels, fontsize=7)
    axes[0].set_ylabel("slices")
    axes[0].set_title("Slices processed per study")
    axes[0].legend()
    if numeric:
        assert measurements is not None
        column = numeric[0]
        for series_uid, rows in measurements.groupby("series_uid"):
            axes[1].plot(rows["slice"], rows[column], marker=".", label=str(series_uid)[-16:])
        axes[1].set_xlabel("slice")
        axes[1].set_ylabel(column)
        axes[1].set_title(f"{column} per slice")
        axes[1].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _json_default(value: object) -> str:
    return str(value)


def run_pipeline(
    config: Config,
    store: SliceStore,
    client: Client,
    *,
    node: str = "",
    study_uids: Sequence[str] | str = (),
    query: Mapping[str, Any] | None = None,
    processor: str = "",
    processor_params: Mapping[str, Any] | None = None,
    output_dir: str | Path = "",
    log: Callable[[str], None] = print,
) -> PipelineRun:
    """Retrieve, process and summarise every study; see the module's description.

    Parameters
    ----------
    config, store, client
        The settings, the slice store the studies are retrieved into, and the Dask client.
    node, study_uids, query, processor, processor_params, output_dir
        As for :func:`check_parameters`.
    log : callable
        Gets one line per step.

    Returns
    -------
    PipelineRun
        Call :meth:`PipelineRun.raise_for_failures` to turn failed studies into an error.

    Raises
    ------
    PipelineParameterError
        Before anything is retrieved.
    PipelineError
        The query matched no study.
    PacsError
        The PACS could not be queried at all.
    """
    from pacslab.pacs import connect_pacs

    params = check_parameters(
        config,
        node=node,
        study_uids=study_uids,
        query=query,
        processor=processor,
        processor_params=processor_params,
        output_dir=output_dir,
        store_path=store.root,
    )
    params.output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "node": params.node.name,
        "study_uids": list(params.study_uids),
        "query": params.query,
        "processor": params.processor.name,
        "processor_version": params.processor.version,
        "processor_params": params.processor_params,
        "output_dir": str(params.output_dir),
        "store": str(store.root),
    }
    (params.output_dir / "parameters.json").write_text(
        json.dumps(record, indent=2, default=_json_default), encoding="utf-8"
    )
    with connect_pacs(params.node, config) as pacs:
        outcomes = _find_studies(pacs, params)
        if not outcomes:
            raise PipelineError(
                f"the query {params.query} matched no study on {params.node.name}; "
                "widen it or pass study_uids"
            )
        log(f"{len(outcomes)} studies to process on {params.node.name} with {params.processor.name}")
        for number, outcome in enumerate(outcomes, start=1):
            if outcome.error:  # not found
                log(f"[{number}/{len(outcomes)}] {outcome.study_uid}: {outcome.error}")
                continue
            start = time.monotonic()
            log(f"[{number}/{len(outcomes)}] {outcome.study_uid} ({outcome.patient_name})")
            try:
                _process_study(outcome, pacs, store, client, params, log)
            except Exception as exc:
                # One study's failure is recorded and the others still run.
                outcome.status = "failed"
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.seconds = round(time.monotonic() - start, 3)
            log(
                f"[{number}/{len(outcomes)}] {outcome.study_uid}: {outcome.status}, "
                f"{outcome.slices_done}/{outcome.slices} slices"
                + (f" ({outcome.error})" if outcome.error else "")
            )
    summary = summary_frame(outcomes)
    summary_csv = params.output_dir / "summary.csv"
    summary.to_csv(summary_csv, index=False)
    measurements = _measurements(outcomes) if params.processor.output == "measurements" else None
    measurements_csv = None
    if measurements is not None and not measurements.empty:
        measurements_csv = params.output_dir / "measurements.csv"
        measurements.to_csv(measurements_csv, index=False)
    summary_png = write_summary_plot(summary, measurements, params.output_dir / "summary.png")
    return PipelineRun(params, outcomes, summary_csv, summary_png, measurements_csv)
