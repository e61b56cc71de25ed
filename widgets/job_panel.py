"""JobPanel: pick a processor and its parameters, run it over series on Dask, watch it live.

The progress bar is our own IntProgress fed by the job's progress events (Dask's progress
widgets show as grey boxes in Voilà). The job runs in pacslab's own threads; the panel
waits for it in a background thread, so the page stays responsive and Cancel works.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from widgets.transfer_monitor import Transfer, TransferLog
from widgets.view import View, escape, html_table, series_label

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.jobs import Job, JobProgress, JobSummary
    from pacslab.processing import Parameter, Processor, ProcessorRegistry
    from pacslab.store import SliceStore
    from widgets.slice_viewer import SliceViewer

__all__ = ["JobPanel", "parameter_control"]

# How often the worker table is refreshed while a job runs.
WORKER_REFRESH_S = 2.0
MEASUREMENT_ROWS = 20


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def parameter_control(name: str, param: Parameter) -> w.ValueWidget:
    """An input for one processor parameter, limited to its range or choices."""
    style = {"description_width": "initial"}
    tooltip = param.description or name
    if param.choices is not None:
        return w.Dropdown(
            options=list(param.choices), value=param.default, description=name, tooltip=tooltip, style=style
        )
    if param.kind is bool:
        return w.Checkbox(value=bool(param.default), description=name, tooltip=tooltip, indent=False)
    low, high = param.minimum, param.maximum
    if param.kind is int:
        if low is not None and high is not None:
            return w.IntSlider(
                value=int(param.default),
                min=int(low),
                max=int(high),
                description=name,
                tooltip=tooltip,
                style=style,
            )
        if low is not None or high is not None:
            return w.BoundedIntText(
                value=int(param.default),
                min=int(low) if low is not None else -(2**31),
                max=int(high) if high is not None else 2**31 - 1,
                description=name,
                tooltip=tooltip,
                style=style,
            )
        return w.IntText(value=int(param.default), description=name, tooltip=tooltip, style=style)
    if param.kind is float:
        if low is not None and high is not None:
            step = (high - low) / 1000 if high > low else 0.1
            return w.FloatSlider(
                value=float(param.default),
                min=low,
                max=high,
                step=step,
                description=name,
                tooltip=tooltip,
                style=style,
            )
        if low is not None or high is not None:
            return w.BoundedFloatText(
                value=float(param.default),
                min=low if low is not None else -1e308,
                max=high if high is not None else 1e308,
                description=name,
                tooltip=tooltip,
                style=style,
            )
        return w.FloatText(value=float(param.default), description=name, tooltip=tooltip, style=style)
    return w.Text(value=str(param.default), description=name, tooltip=tooltip, style=style)


class JobPanel(View):
    """Run a registered processor over stored series on a Dask cluster, with live progress.

    Parameters
    ----------
    client : distributed.Client
        The cluster (see ``dask_cluster.connect``).
    store : SliceStore
    viewer : SliceViewer, optional
        Shows the result while the job runs (mask over, image beside the slices) and when
        "Open result" is clicked.
    transfers : TransferLog, optional
    registry : ProcessorRegistry, optional
        Defaults to pacslab's registry (built-ins, plugins and notebook processors).

    Traits
    ------
    processor : str
    params : dict
        Current values of the parameter controls.
    series_uids : tuple of str
    job_id, job_status : str
    done, failed, total : int
    rate : float
        Slices per second.
    eta_s : float or None
    failures : list of dict
        ``series_uid``, ``index``, ``error`` of each failed slice.
    workers : list of dict
        ``name``, ``cpu`` (%), ``memory`` and ``memory_limit`` (bytes), ``slices`` (this job).
    """

    processor = traitlets.Unicode("")
    params = traitlets.Dict()
    series_uids = traitlets.Tuple()
    job_id = traitlets.Unicode("")
    job_status = traitlets.Unicode("")
    done = traitlets.Int(0)
    failed = traitlets.Int(0)
    total = traitlets.Int(0)
    rate = traitlets.Float(0.0)
    eta_s = traitlets.Float(None, allow_none=True)
    failures = traitlets.List(traitlets.Dict())
    workers = traitlets.List(traitlets.Dict())

    def __init__(
        self,
        client: Client,
        store: SliceStore,
        *,
        viewer: SliceViewer | None = None,
        transfers: TransferLog | None = None,
        registry: ProcessorRegistry | None = None,
    ) -> None:
        super().__init__()
        if registry is None:
            from pacslab.processing import registry as default_registry

            registry = default_registry
        self.client = client
        self.store = store
        self.viewer = viewer
        self.registry = registry
        self.transfers = transfers if transfers is not None else TransferLog()
        self.job: Job | None = None
        self.summary: JobSummary | None = None
        self._record: Transfer | None = None
        self.param_controls: dict[str, w.ValueWidget] = {}

        self.processor_picker = w.Dropdown(description="Processor")
        self.processor_help = w.HTML()
        self.param_box = w.VBox()
        self.series_picker = w.SelectMultiple(description="Series", rows=6, layout=w.Layout(width="520px"))
        self.refresh_button = w.Button(
            icon="refresh", tooltip="list processors and series again", layout=w.Layout(width="40px")
        )
        self.follow_box = w.Checkbox(
            value=viewer is not None, description="Show in the viewer while running", indent=False
        )
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.open_button = w.Button(description="Open result", icon="eye", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="420px"))
        self.progress_label = w.Label()
        self.failure_table = w.HTML()
        self.result_table = w.HTML()
        self.worker_table = w.HTML()
        self.dashboard = w.HTML()

        self.processor_picker.observe(self._processor_picked, "value")
        self.observe(self._on_processor, "processor")
        self.series_picker.observe(lambda c: setattr(self, "series_uids", tuple(c["new"])), "value")
        self.observe(self._on_series_uids, "series_uids")
        self.refresh_button.on_click(lambda _: self.guarded(self.refresh))
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.open_button.on_click(lambda _: self.guarded(self.open_result))
        self.observe(self._on_busy, "busy")

        self.widget = w.VBox(
            [
                self._style,
                w.HBox([self.processor_picker, self.refresh_button]),
                self.processor_help,
                self.param_box,
                self.series_picker,
                self.follow_box,
                w.HBox([self.run_button, self.cancel_button, self.open_button, self.dashboard]),
                w.HBox([self.progress, self.progress_label]),
                self.error_area,
                self.status_line,
                self.failure_table,
                self.result_table,
                w.HTML("<b>Workers</b>"),
                self.worker_table,
            ]
        )
        self._unsubscribe = registry.subscribe(lambda _proc: self.guarded(self._list_processors))
        self.guarded(self.refresh)
        self._show_dashboard_link()

    # -- choices -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the registered processors and the stored series again."""
        self._list_processors()
        current = set(self.series_uids)
        options = [(series_label(s), s.series_uid) for s in self.store.list_series()]
        self.series_picker.options = options
        self.series_picker.value = tuple(uid for _, uid in options if uid in current)
        self.refresh_workers()

    def _list_processors(self) -> None:
        names = self.registry.names()
        self.processor_picker.options = names
        if self.processor in names:
            self.processor_picker.value = self.processor
        elif names:
            self.processor_picker.value = names[0]

    def _processor_picked(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.processor = change["new"]

    def _on_processor(self, change: dict[str, Any]) -> None:
        try:
            proc: Processor = self.registry.get(change["new"])
        except Exception as exc:
            self.fail(exc)
            return
        if self.processor_picker.value != proc.name:
            self.processor_picker.value = proc.name
        self.processor_help.value = escape(
            f"{proc.description} (version {proc.version}, gives {proc.output})"
        )
        self.param_controls = {name: parameter_control(name, p) for name, p in proc.parameters.items()}
        for control in self.param_controls.values():
            control.observe(lambda _: self._read_params(), "value")
        self.param_box.children = tuple(self.param_controls.values())
        self._read_params()

    def _read_params(self) -> None:
        self.params = {name: control.value for name, control in self.param_controls.items()}

    def set_params(self, **values: Any) -> None:
        """Set parameter controls by name (as typing into them would)."""
        for name, value in values.items():
            if name not in self.param_controls:
                known = ", ".join(self.param_controls) or "none"
                raise KeyError(f"{self.processor} has no parameter {name!r} (parameters: {known})")
            self.param_controls[name].value = value

    def _on_series_uids(self, change: dict[str, Any]) -> None:
        known = {uid for _, uid in self.series_picker.options}
        chosen = tuple(uid for uid in change["new"] if uid in known)
        if tuple(self.series_picker.value) != chosen:
            self.series_picker.value = chosen

    def _on_busy(self, change: dict[str, Any]) -> None:
        self.run_button.disabled = change["new"]
        self.cancel_button.disabled = not change["new"]

    # -- cluster -------------------------------------------------------------------------------
    def _show_dashboard_link(self) -> None:
        try:
            services = self.client.scheduler_info().get("services", {})
            link = self.client.dashboard_link if "dashboard" in services else ""
        except Exception:  # no dashboard is not an error worth showing
            link = ""
        if link.startswith(("http://", "https://")):
            self.dashboard.value = (
                f'<a href="{escape(link)}" target="_blank" rel="noopener">Dask dashboard</a>'
            )

    def refresh_workers(self) -> None:
        """Read each worker's CPU and memory from the scheduler."""
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed: no n_workers argument
            info = self.client.scheduler_info()
        per_worker = dict(self.job.progress.per_worker) if self.job is not None else {}
        rows = []
        for address, worker in sorted(info.get("workers", {}).items()):
            metrics = worker.get("metrics", {})
            rows.append(
                {
                    "name": str(worker.get("name", address)),
                    "address": address,
                    "threads": int(worker.get("nthreads", 0)),
                    "cpu": float(metrics.get("cpu", 0.0)),
                    "memory": int(metrics.get("memory", 0)),
                    "memory_limit": int(worker.get("memory_limit", 0) or 0),
                    "slices": int(per_worker.get(address, 0)),
                }
            )
        self.workers = rows
        mib = 1024 * 1024
        self.worker_table.value = html_table(
            ["worker", "threads", "CPU %", "memory MiB", "limit MiB", "slices this job"],
            [
                (
                    r["name"],
                    r["threads"],
                    f"{r['cpu']:.0f}",
                    f"{r['memory'] / mib:.0f}",
                    f"{r['memory_limit'] / mib:.0f}",
                    r["slices"],
                )
                for r in rows
            ],
        )

    # -- running -------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the processor over the chosen series and follow it until it ends."""
        if not self.series_uids:
            self.error = "choose at least one series"
            return
        if self.busy:
            return
        name, params, series = self.processor, dict(self.params), list(self.series_uids)
        self.summary = None
        self.failures = []
        self.failure_table.value = ""
        self.result_table.value = ""
        self.open_button.disabled = True
        self.progress.bar_style = ""
        self.progress.value = 0
        self.status = f"starting {name} on {len(series)} series…"

        def work() -> JobSummary:
            from pacslab.jobs import JobError, run_job

            record = self.transfers.start("job", f"{name} on {len(series)} series")
            self._record = record
            try:
                job = run_job(self.client, self.store, name, params, series, on_progress=self._on_progress)
            except Exception as exc:
                self.transfers.finish(record, "failed", str(exc))
                raise
            self.job = job
            self.job_id = job.job_id
            viewer = self.viewer if self.follow_box.value and job.processor.output != "measurements" else None
            if viewer is not None:
                viewer.follow_job(job, series[0])
            while True:
                try:
                    summary = job.wait(timeout=WORKER_REFRESH_S)
                    if viewer is not None:
                        # The job's last progress event may still be on its way to the viewer.
                        viewer.guarded(viewer.refresh_overlay)
                    return summary
                except TimeoutError:
                    self.guarded(self.refresh_workers)
                except JobError as exc:
                    if exc.summary is not None:
                        self._show_summary(exc.summary)
                    self.transfers.finish(record, "failed", str(exc))
                    raise

        self.run_in_background("job", work, self._finished)

    def _on_progress(self, progress: JobProgress) -> None:
        # Called from the job's writer thread: only cheap updates here.
        self.done, self.failed, self.total = progress.done, progress.failed, progress.total
        self.rate, self.eta_s, self.job_status = progress.rate, progress.eta_s, progress.status
        self.progress.max = max(progress.total, 1)
        self.progress.value = min(progress.done + progress.failed, self.progress.max)
        if progress.failed:
            self.progress.bar_style = "warning"
        text = f"{progress.done} done, {progress.failed} failed of {progress.total}"
        if not progress.finished:
            text += f" · {progress.rate:.1f} slices/s · ETA {_duration(progress.eta_s)}"
        else:
            text += f" · {progress.status}"
        self.progress_label.value = text
        if self._record is not None:
            self.transfers.update(
                self._record, done=progress.done, failed=progress.failed, total=progress.total
            )

    def _show_summary(self, summary: JobSummary) -> None:
        self.summary = summary
        self.job_status = summary.status
        self.failures = [
            {"series_uid": f.series_uid, "index": f.index, "error": f.error} for f in summary.failures
        ]
        if summary.failures:
            last_lines = [
                (f.series_uid, f.index, (f.error.strip().splitlines() or [""])[-1]) for f in summary.failures
            ]
            self.failure_table.value = "<b>Failed slices</b>" + html_table(
                ["series", "slice", "error"], last_lines
            )
        self.progress.bar_style = {"done": "success", "cancelled": "warning"}.get(summary.status, "danger")
        if summary.status == "done" and summary.failed:
            self.progress.bar_style = "warning"

    def _finished(self, summary: JobSummary) -> None:
        self._show_summary(summary)
        self.status = (
            f"job {summary.job_id} {summary.status}: {summary.done} done, {summary.failed} failed "
            f"of {summary.total} in {_duration(summary.elapsed_s)}"
        )
        if self._record is not None:
            state = (
                "cancelled"
                if summary.status == "cancelled"
                else "failed"
                if summary.status == "failed"
                else "done"
            )
            self.transfers.finish(self._record, state, summary.error)  # type: ignore[arg-type]
        self.guarded(self.refresh_workers)
        job = self.job
        if job is not None and job.processor.output == "measurements":
            self.guarded(lambda: self._show_measurements(summary))
        else:
            self.open_button.disabled = self.viewer is None or not summary.done

    def _show_measurements(self, summary: JobSummary) -> None:
        from pacslab.store.results import ResultReader

        parts = []
        for series_uid, path in summary.result_paths.items():
            if not path.exists():
                continue
            frame = ResultReader(path).measurements()
            rows = [
                (i, *(f"{v:.4g}" if isinstance(v, float) else v for v in row))
                for i, row in zip(frame.index, frame.itertuples(index=False), strict=True)
            ]
            parts.append(
                f"<b>{escape(series_uid)}</b> ({len(frame)} slices)"
                + html_table(["slice", *frame.columns], rows, limit=MEASUREMENT_ROWS)
            )
        self.result_table.value = "".join(parts)

    def cancel(self) -> None:
        """Cancel the running job; finished slices stay written."""
        job = self.job
        if job is None or job.done():
            return
        self.status = "cancelling…"
        # Cancelling talks to the scheduler; keep it off the UI thread.
        threading.Thread(
            target=job.cancel, kwargs={"wait": False}, name="pacslab-cancel", daemon=True
        ).start()

    def open_result(self) -> None:
        """Show the finished job's result for the first series in the viewer."""
        if self.viewer is None or self.summary is None:
            return
        series_uid, path = next(iter(self.summary.result_paths.items()))
        self.viewer.show_series(series_uid)
        self.viewer.show_result(path)

    def close(self) -> None:
        """Stop listening to the processor registry."""
        self._unsubscribe()
