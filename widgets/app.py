"""App: every view in tabs, wired together; what the Voilà dashboard shows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from widgets.batch_query import BatchQuery
from widgets.export_panel import ExportPanel
from widgets.job_panel import JobPanel
from widgets.slice_viewer import SliceViewer
from widgets.study_browser import StudyBrowser
from widgets.transfer_monitor import TransferLog, TransferMonitor
from widgets.upload_panel import UploadPanel
from widgets.view import View

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.config import Config, PacsNode
    from pacslab.ingest import FileSetSchema
    from pacslab.pacs import PacsClient
    from pacslab.store import SliceStore

__all__ = ["TABS", "App"]

TABS = ("Browse", "Batch", "Upload", "View", "Process", "Export", "Transfers")


class App(View):
    """The dashboard: browse and retrieve, batch queries, upload, view, process, export, transfers.

    Opening a series anywhere (browser, upload) shows it in the View tab; a job started in
    Process draws its result live in the viewer and is offered in Export, which sends results
    to the PACS nodes; every transfer shows in Transfers.

    Parameters
    ----------
    store : SliceStore
    client : distributed.Client, optional
        Without it the Process tab says how to connect a cluster.
    pacs, nodes, connect, config
        As for :class:`~widgets.StudyBrowser`.
    schemas, server_root
        As for :class:`~widgets.UploadPanel`.

    Traits
    ------
    tab : str
        Title of the tab shown.
    """

    tab = traitlets.Unicode(TABS[0])

    def __init__(
        self,
        store: SliceStore,
        client: Client | None = None,
        *,
        pacs: PacsClient | None = None,
        nodes: Sequence[PacsNode] = (),
        connect: Callable[[PacsNode], PacsClient] | None = None,
        config: Config | None = None,
        schemas: Mapping[str, FileSetSchema] | None = None,
        server_root: Path | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.transfers = TransferLog()
        self.viewer = SliceViewer(store)
        self.browser = StudyBrowser(
            store,
            pacs,
            nodes=nodes,
            connect=connect,
            config=config,
            transfers=self.transfers,
            on_open=self.open_series,
        )
        self.batch = BatchQuery(self._batch_pacs, store, transfers=self.transfers)
        self.upload = UploadPanel(
            store, schemas, server_root=server_root, transfers=self.transfers, on_open=self.open_series
        )
        self.jobs: JobPanel | None = None
        if client is not None:
            self.jobs = JobPanel(client, store, viewer=self.viewer, transfers=self.transfers)
            jobs_widget: w.Widget = self.jobs.widget
        else:
            jobs_widget = w.HTML(
                "No Dask cluster is connected: start the dashboard with a cluster "
                "(<code>dask_cluster.connect()</code>) to run processors."
            )
        export_nodes = list(nodes) or ([pacs.node] if pacs is not None else [])
        self.export = ExportPanel(
            store, export_nodes, connect=connect, config=config, jobs=self.jobs, transfers=self.transfers
        )
        self.monitor = TransferMonitor(self.transfers)
        self.tabs = w.Tab(
            children=[
                self.browser.widget,
                self.batch.widget,
                self.upload.widget,
                self.viewer.widget,
                jobs_widget,
                self.export.widget,
                self.monitor.widget,
            ],
            titles=TABS,
        )
        self.tabs.observe(self._tab_picked, "selected_index")
        self.observe(self._on_tab, "tab")
        self.widget = w.VBox([self._style, self.error_area, self.tabs])

    @classmethod
    def from_config(cls, config: Config | None = None, client: Client | None = None, **kwargs: Any) -> App:
        """The app over the configured store and PACS nodes (``load_config()`` when None)."""
        from pacslab.config import load_config
        from pacslab.store import SliceStore

        config = config if config is not None else load_config()
        return cls(SliceStore(Path(config.store_path)), client, nodes=config.nodes, config=config, **kwargs)

    def _batch_pacs(self) -> PacsClient:
        if self.browser.is_local:
            raise ValueError("batch queries go to a PACS: choose one as the source in the Browse tab")
        return self.browser.client()

    def _tab_picked(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self.tab = TABS[change["new"]]

    def _on_tab(self, change: dict[str, Any]) -> None:
        if change["new"] not in TABS:
            self.error = f"no tab {change['new']!r}; tabs: {', '.join(TABS)}"
            return
        self.tabs.selected_index = TABS.index(change["new"])
        if change["new"] == "Process" and self.jobs is not None:
            self.jobs.guarded(self.jobs.refresh)
        elif change["new"] == "Export":
            self.export.guarded(self.export.refresh)

    def open_series(self, series_uid: str) -> None:
        """Show a stored series in the View tab (and offer it to the Process tab)."""
        self.viewer.show_series(series_uid)
        if self.jobs is not None:
            self.jobs.guarded(self.jobs.refresh)
        self.tab = "View"

    def open_link(self, query: Mapping[str, str]) -> None:
        """Act on a dashboard URL's query parameters.

        ``series=<uid>`` opens a stored series in the View tab; ``study=<uid>`` finds and
        expands that study in Browse; otherwise Browse searches, for ``patient=<id>`` (the
        Patient ID field is filled) or, without one, for every study of the source.
        """
        if "series" in query:
            self.open_series(query["series"])
            return
        if "study" in query:
            self.browser.show_study(query["study"])
        else:
            self.browser.patient_id.value = query.get("patient", "")
            self.browser.search()
        self.tab = "Browse"
