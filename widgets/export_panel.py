"""ExportPanel: turn a finished job into DICOM (SEG, derived images or an SR) and send it to a PACS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from widgets.transfer_monitor import Transfer, TransferLog
from widgets.view import View, escape, html_table

if TYPE_CHECKING:
    from pacslab.config import Config, PacsNode
    from pacslab.pacs import PacsClient, StoreStatus
    from pacslab.store import SliceStore
    from widgets.job_panel import JobPanel

__all__ = ["ExportPanel"]

# What each kind of result becomes.
MADE_OF = {"mask": "a DICOM Segmentation", "image": "a derived image series", "measurements": "a DICOM SR"}


class ExportPanel(View):
    """Pick a job recorded in the store, export it as DICOM and send it to a PACS node.

    Parameters
    ----------
    store : SliceStore
        Holds the jobs, their result files and the source series' headers.
    nodes : sequence of PacsNode
        Destinations offered.
    connect : callable, optional
        ``node -> PacsClient``; defaults to :func:`pacslab.pacs.connect_pacs` with ``config``.
    config : Config, optional
    jobs : JobPanel, optional
        When given, a job it finishes is listed and picked at once.
    transfers : TransferLog, optional
        When given, each send is recorded there (kind ``"export"``) for the TransferMonitor.

    Traits
    ------
    job_id : str
        The catalog record picked (``"<job>"`` or ``"<job>/<series uid>"``).
    node : str
        Name of the destination node.
    allow_partial : bool
        Export the done slices of an unfinished job.
    sent, refused : int
        Instances the PACS stored and refused in the last send.
    left_out : int
        Unfinished slices left out of the last (partial) export.
    exported : list of dict
        ``modality``, ``sop_class``, ``series_description``, ``sop_instance_uid``, ``series_uid``,
        ``frames``
        of each instance of the last export.
    """

    job_id = traitlets.Unicode("")
    node = traitlets.Unicode("")
    allow_partial = traitlets.Bool(False)
    sent = traitlets.Int(0)
    refused = traitlets.Int(0)
    left_out = traitlets.Int(0)
    exported = traitlets.List(traitlets.Dict())

    def __init__(
        self,
        store: SliceStore,
        nodes: Sequence[PacsNode] = (),
        *,
        connect: Callable[[PacsNode], PacsClient] | None = None,
        config: Config | None = None,
        jobs: JobPanel | None = None,
        transfers: TransferLog | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.transfers = transfers
        self._nodes = {n.name: n for n in nodes}
        self._connect = connect
        self._config = config
        self.job_picker = w.Dropdown(description="Result", layout=w.Layout(width="620px"))
        self.refresh_button = w.Button(
            icon="refresh", tooltip="list the recorded jobs again", layout=w.Layout(width="40px")
        )
        self.node_picker = w.Dropdown(options=list(self._nodes), description="Send to")
        self.partial_box = w.Checkbox(description="Send the done slices of an unfinished job", indent=False)
        self.send_button = w.Button(description="Send to PACS", button_style="primary", icon="upload")
        self.what = w.HTML()
        self.result_table = w.HTML()
        traitlets.link((self.partial_box, "value"), (self, "allow_partial"))
        self.job_picker.observe(self._job_picked, "value")
        self.node_picker.observe(lambda c: setattr(self, "node", c["new"] or ""), "value")
        self.observe(self._on_node, "node")
        self.observe(self._on_job_id, "job_id")
        self.refresh_button.on_click(lambda _: self.guarded(self.refresh))
        self.send_button.on_click(lambda _: self.send())
        self.observe(lambda c: setattr(self.send_button, "disabled", c["new"]), "busy")
        self.widget = w.VBox(
            [
                self._style,
                w.HBox([self.job_picker, self.refresh_button]),
                self.what,
                w.HBox([self.node_picker, self.send_button]),
                self.partial_box,
                self.error_area,
                self.status_line,
                self.result_table,
            ]
        )
        if self._nodes:
            self.node = next(iter(self._nodes))
        if jobs is not None:
            # The panel is idle again once a job has ended and its summary is set.
            jobs.observe(lambda c: self._job_finished(jobs) if not c["new"] else None, "busy")
        self.guarded(self.refresh)

    # -- choices -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the jobs recorded in the store, newest first."""
        from widgets.view import series_label

        labels = {}
        for info in self.store.list_series():
            labels[info.series_uid] = series_label(info)
        options = []
        for record in self.store.list_jobs():
            series = labels.get(record.series_uid, record.series_uid)
            state = f"{record.status} {record.done}/{record.total}"
            options.append((f"{record.processor} {record.version} · {series} · {state}", record.job_id))
        current = self.job_id
        self.job_picker.options = options
        known = [value for _, value in options]
        if current in known:
            self.job_picker.value = current
        elif known:
            self.job_picker.value = known[0]

    def _job_picked(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.job_id = change["new"]

    def _on_job_id(self, change: dict[str, Any]) -> None:
        job_id = change["new"]
        if not job_id:
            self.what.value = ""
            return
        try:
            record = self.store.job(job_id)
        except Exception as exc:
            self.fail(exc)
            return
        if self.job_picker.value != job_id:
            self.guarded(self.refresh)
            if job_id in [value for _, value in self.job_picker.options]:
                self.job_picker.value = job_id
        from pacslab.processing import registry

        try:
            made = MADE_OF.get(registry.get(record.processor).output, "DICOM")
        except Exception:  # a notebook processor not defined in this kernel
            made = "DICOM"
        self.what.value = escape(
            f"{record.processor} {record.version}: {record.done} of {record.total} slices done "
            f"({record.status}); sends {made}."
        )

    def _on_node(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if name and name not in self._nodes:
            self.error = f"no PACS node {name!r}; nodes: {', '.join(self._nodes) or 'none'}"
            return
        if self.node_picker.value != name:
            self.node_picker.value = name or None

    def _job_finished(self, jobs: JobPanel) -> None:
        if jobs.summary is not None:
            self.guarded(self.refresh)
            records = [r.job_id for r in self.store.list_jobs()]
            job_id = jobs.summary.job_id
            picked = next((r for r in records if r == job_id or r.startswith(job_id + "/")), "")
            if picked:
                self.job_id = picked

    # -- sending -------------------------------------------------------------------------------
    def _client(self, node: PacsNode) -> PacsClient:
        if self._connect is not None:
            return self._connect(node)
        from pacslab.config import load_config
        from pacslab.pacs import connect_pacs

        return connect_pacs(node, self._config or load_config())

    def send(self) -> None:
        """Export the picked job and send it to the picked node (in the background)."""
        if not self.job_id:
            self.error = "pick a result to send (run a processor first)"
            return
        if self.node not in self._nodes:
            self.error = "pick a PACS node to send to"
            return
        job_id, node, partial = self.job_id, self._nodes[self.node], self.allow_partial
        self.sent = self.refused = self.left_out = 0
        self.exported = []
        self.result_table.value = ""
        self.status = f"exporting {job_id}…"
        log = self.transfers
        transfer: Transfer | None = log.start("export", f"{job_id} to {node.name}") if log else None

        def work() -> list[StoreStatus]:
            from pacslab.export import export_job, send_to_pacs

            record = self.store.job(job_id)
            exported = export_job(self.store, job_id, allow_partial=partial, report=True)
            self.left_out = len(exported.skipped)
            self.exported = [
                {
                    "modality": str(ds.get("Modality", "")),
                    "sop_class": ds.SOPClassUID.name,
                    "series_description": str(ds.get("SeriesDescription", "")),
                    "sop_instance_uid": str(ds.SOPInstanceUID),
                    "series_uid": str(ds.SeriesInstanceUID),
                    "frames": int(ds.get("NumberOfFrames", 1) or 1),
                }
                for ds in exported.datasets
            ]
            self.status = (
                f"sending {len(exported.datasets)} instance(s) of {record.processor} to {node.name}…"
            )
            if log is not None and transfer is not None:
                log.update(transfer, total=len(exported.datasets))
            client = self._client(node)
            try:
                return send_to_pacs(client, exported.datasets, raise_on_failure=False)
            finally:
                client.close()

        def failed(exc: BaseException) -> None:
            if log is not None and transfer is not None:
                log.finish(transfer, "failed", self.error)

        self.run_in_background(
            "send", work, lambda statuses: self._sent(statuses, node.name, transfer), failed
        )

    def _sent(self, statuses: list[StoreStatus], node: str, transfer: Transfer | None = None) -> None:
        self.sent = sum(1 for s in statuses if s.ok)
        self.refused = len(statuses) - self.sent
        if self.transfers is not None and transfer is not None:
            self.transfers.update(transfer, done=self.sent, failed=self.refused)
            if self.refused:
                self.transfers.finish(transfer, "failed", f"{node} refused {self.refused} instance(s)")
            else:
                self.transfers.finish(transfer, "done")
        kinds = sorted({e["modality"] for e in self.exported})
        self.status = f"sent {'/'.join(kinds)} to {node}: {self.sent} stored, {self.refused} refused"
        if self.left_out:
            self.status += f"; {self.left_out} unfinished slice(s) left out"
        if self.refused:
            self.error = f"{node} refused {self.refused} instance(s); see the table"
        self.result_table.value = html_table(
            ["instance", "what", "status"],
            [
                (s.sop_instance_uid, e["sop_class"], f"{s.category}: {s.meaning}")
                for s, e in zip(statuses, self.exported, strict=False)
            ],
        )
