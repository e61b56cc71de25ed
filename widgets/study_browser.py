"""StudyBrowser: find studies on a PACS or in the local store, open their series, retrieve them."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from pacslab.retrieve import RetrieveOutcome, retrieve_into_store
from widgets.table import PagedTable
from widgets.transfer_monitor import Transfer, TransferLog
from widgets.view import View

if TYPE_CHECKING:
    from pacslab.config import Config, PacsNode
    from pacslab.pacs import PacsClient, RetrieveProgress
    from pacslab.store import SliceStore

__all__ = ["LOCAL_STORE", "StudyBrowser"]

LOCAL_STORE = "Local store"
QUERY_LIMIT = 5000
MODALITIES = ("", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "SEG", "SR", "OT")

STUDY_COLUMNS = [
    ("patient_name", "Patient", 22),
    ("patient_id", "ID", 12),
    ("study_date", "Date", 8),
    ("accession_number", "Accession", 10),
    ("modalities", "Mod", 6),
    ("study_description", "Description", 24),
    ("n_series", "Ser", 3),
    ("n_instances", "Img", 5),
]
SERIES_COLUMNS = [
    ("series_number", "#", 4),
    ("modality", "Mod", 4),
    ("series_description", "Description", 32),
    ("n_instances", "Img", 5),
    ("stored", "Stored", 6),
]


def _study_row(record: Any) -> dict[str, Any]:
    return {
        "study_uid": record.study_uid,
        "patient_name": str(record.patient_name),
        "patient_id": record.patient_id,
        "study_date": record.study_date,
        "accession_number": record.accession_number,
        "modalities": tuple(record.modalities),
        "study_description": record.study_description,
        "n_series": record.n_series,
        "n_instances": record.n_instances,
    }


def _date_range(start: datetime.date | None, end: datetime.date | None) -> str | None:
    if start is None and end is None:
        return None
    first = start.strftime("%Y%m%d") if start else ""
    last = end.strftime("%Y%m%d") if end else ""
    return first if first == last else f"{first}-{last}"


class StudyBrowser(View):
    """Pick a PACS node (or the local store), search studies, expand one, retrieve its series.

    Parameters
    ----------
    store : SliceStore
        Where retrieved series go; also listed as the source "Local store".
    pacs : PacsClient, optional
        A single PACS to browse (its node's name is the source name).
    nodes : sequence of PacsNode, optional
        PACS nodes to offer in the picker, connected with ``connect`` when picked.
    connect : callable, optional
        ``node -> PacsClient``; defaults to :func:`pacslab.pacs.connect_pacs` with ``config``.
    config : Config, optional
        Needed by the default ``connect``.
    transfers : TransferLog, optional
        Where retrieves are recorded for the TransferMonitor.
    on_open : callable, optional
        Called with a Series Instance UID when the user opens a stored series.

    Traits
    ------
    source : str
        The node name, or ``"Local store"``.
    echo_ok : bool or None
        Whether the last C-ECHO to the node worked (None while unknown / local store).
    echo_ms : float
        Its round trip in milliseconds.
    studies, series : list of dict
        Rows of the study and series tables.
    selected_study : str
    selected_series : tuple of str
    retrieved : list of str
        Series stored by retrieves from this browser.
    """

    source = traitlets.Unicode(LOCAL_STORE)
    echo_ok = traitlets.Bool(None, allow_none=True)
    echo_ms = traitlets.Float(0.0)
    studies = traitlets.List(traitlets.Dict())
    series = traitlets.List(traitlets.Dict())
    selected_study = traitlets.Unicode("")
    selected_series = traitlets.Tuple()
    retrieved = traitlets.List(traitlets.Unicode())

    def __init__(
        self,
        store: SliceStore,
        pacs: PacsClient | None = None,
        *,
        nodes: Sequence[PacsNode] = (),
        connect: Callable[[PacsNode], PacsClient] | None = None,
        config: Config | None = None,
        transfers: TransferLog | None = None,
        on_open: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.transfers = transfers if transfers is not None else TransferLog()
        self.on_open = on_open
        self._config = config
        self._connect = connect
        self._nodes: dict[str, PacsNode] = {n.name: n for n in nodes}
        self._clients: dict[str, PacsClient] = {}
        if pacs is not None:
            self._clients[pacs.node.name] = pacs
            self._nodes.setdefault(pacs.node.name, pacs.node)
        self._cancel = threading.Event()

        names = [*self._nodes, LOCAL_STORE]
        self.source_picker = w.Dropdown(options=names, value=names[0], description="Source")
        self.echo_label = w.HTML()
        self.echo_button = w.Button(description="Echo", tooltip="C-ECHO the PACS", icon="plug")
        self.patient_name = w.Text(description="Name", placeholder="Doe^J* or Doe, John")
        self.patient_id = w.Text(description="Patient ID")
        self.accession = w.Text(description="Accession")
        self.date_from = w.DatePicker(description="From")
        self.date_to = w.DatePicker(description="To")
        self.modality = w.Dropdown(options=list(MODALITIES), description="Modality")
        self.description = w.Text(description="Description", placeholder="*chest*")
        self.search_button = w.Button(description="Search", button_style="primary", icon="search")
        self.study_table = PagedTable(STUDY_COLUMNS, "study_uid")
        self.series_table = PagedTable(SERIES_COLUMNS, "series_uid", multiple=True, page_size=50)
        self.retrieve_button = w.Button(description="Retrieve selected", icon="download", disabled=True)
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.open_button = w.Button(description="Open in viewer", icon="eye", disabled=True)
        self.transfer_box = w.VBox()

        self.source_picker.observe(lambda c: setattr(self, "source", c["new"]), "value")
        self.observe(self._on_source, "source")
        self.echo_button.on_click(lambda _: self.echo())
        self.search_button.on_click(lambda _: self.search())
        self.retrieve_button.on_click(lambda _: self.retrieve_selected())
        self.cancel_button.on_click(lambda _: self._cancel.set())
        self.open_button.on_click(lambda _: self.guarded(self.open_selected))
        traitlets.dlink((self.study_table, "rows"), (self, "studies"))
        traitlets.dlink((self.series_table, "rows"), (self, "series"))
        self.study_table.observe(self._study_picked, "selected")
        self.series_table.observe(self._series_picked, "selected")
        self.observe(self._on_busy, "busy")

        fields = w.VBox(
            [
                w.HBox([self.patient_name, self.patient_id, self.accession]),
                w.HBox([self.date_from, self.date_to, self.modality]),
                w.HBox([self.description, self.search_button]),
            ]
        )
        self.widget = w.VBox(
            [
                self._style,
                w.HBox([self.source_picker, self.echo_button, self.echo_label]),
                fields,
                self.error_area,
                self.status_line,
                w.HTML("<b>Studies</b>"),
                self.study_table.widget,
                w.HTML("<b>Series</b>"),
                self.series_table.widget,
                w.HBox([self.retrieve_button, self.cancel_button, self.open_button]),
                self.transfer_box,
            ]
        )
        self.source = names[0]
        self._on_source({"new": self.source})

    # -- sources -------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.source == LOCAL_STORE

    def client(self) -> PacsClient:
        """The PACS client of the selected source (connected on first use)."""
        if self.is_local:
            raise RuntimeError("the local store is selected, not a PACS")
        client = self._clients.get(self.source)
        if client is None:
            node = self._nodes[self.source]
            if self._connect is not None:
                client = self._connect(node)
            else:
                from pacslab.config import load_config
                from pacslab.pacs import connect_pacs

                client = connect_pacs(node, self._config or load_config())
            self._clients[self.source] = client
        return client

    def _on_source(self, change: dict[str, Any]) -> None:
        if self.source_picker.value != change["new"]:
            self.source_picker.value = change["new"]
        self.study_table.rows = []
        self.series_table.rows = []
        self.echo_ok = None
        self.echo_label.value = ""
        self.echo_button.disabled = self.is_local
        self.retrieve_button.layout.display = "none" if self.is_local else None
        self.cancel_button.layout.display = "none" if self.is_local else None
        if self.is_local:
            self.status = "Local store: search the stored studies."
        else:
            self.echo()

    def _on_busy(self, change: dict[str, Any]) -> None:
        busy = change["new"]
        self.search_button.disabled = busy
        self.cancel_button.disabled = not busy
        self.retrieve_button.disabled = busy or not self.selected_series

    # -- echo ----------------------------------------------------------------------------------
    def echo(self) -> None:
        """C-ECHO the selected node in the background; sets ``echo_ok`` and ``echo_ms``."""
        if self.is_local:
            return
        source = self.source
        self.echo_label.value = "checking…"

        def done(seconds: float) -> None:
            if source == self.source:
                self.echo_ms = seconds * 1000.0
                self.echo_ok = True
                self.echo_label.value = f"<span style='color:green'>● answers ({self.echo_ms:.0f} ms)</span>"

        def failed(_: BaseException) -> None:
            if source == self.source:
                self.echo_ok = False
                self.echo_label.value = "<span style='color:#b00020'>● not answering</span>"

        self.run_in_background("echo", lambda: self.client().echo(), done, failed)

    # -- search --------------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The search fields as query filters (empty fields left out)."""
        values = {
            "patient_name": self.patient_name.value,
            "patient_id": self.patient_id.value,
            "accession_number": self.accession.value,
            "study_date": _date_range(self.date_from.value, self.date_to.value),
            "modality": self.modality.value,
            "study_description": self.description.value,
        }
        return {k: v for k, v in values.items() if v}

    def search(self) -> None:
        """Search the selected source with the fields' filters (in the background).

        A selected study that the new search lists again stays selected, with its series.
        """
        filters = self.filters()
        picked = self.selected_study
        self.study_table.rows = []
        self.series_table.rows = []
        self.status = "searching…"
        search = self._search_local if self.is_local else self._search_pacs

        def done(found: tuple[list[dict[str, Any]], str]) -> None:
            self._show_studies(found)
            if picked and any(r["study_uid"] == picked for r in found[0]):
                self.study_table.select([picked])  # lists its series again (_study_picked)

        self.run_in_background("search", lambda: search(filters), done)

    def show_study(self, study_uid: str) -> None:
        """Find one study by its UID and expand it (used for ``?study=`` links)."""
        self.study_table.rows = []
        self.series_table.rows = []

        def work() -> tuple[list[dict[str, Any]], str]:
            if self.is_local:
                rows = [r for r in self._search_local({})[0] if r["study_uid"] == study_uid]
            else:
                table = self.client().find_studies(study_uid=study_uid)
                rows = [_study_row(r) for r in table]
            return rows, f"{len(rows)} study found" if rows else f"no study {study_uid} on {self.source}"

        def done(found: tuple[list[dict[str, Any]], str]) -> None:
            self._show_studies(found)
            if found[0]:
                self.study_table.select([study_uid])

        self.run_in_background("show-study", work, done)

    def _search_pacs(self, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        table = self.client().find_studies(**filters, limit=QUERY_LIMIT)
        rows = [_study_row(r) for r in table]
        note = f"{len(rows)} studies on {self.source}"
        if table.truncated:
            note += f" (the first {QUERY_LIMIT}; narrow the search to see the rest)"
        return rows, note

    def _search_local(self, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        text = filters.get("study_description") or filters.get("accession_number")
        records = self.store.list_studies(
            patient_id=filters.get("patient_id"),
            patient_name=filters.get("patient_name"),
            study_date=filters.get("study_date"),
            modality=filters.get("modality"),
            text=text.strip("*") if text else None,
        )
        rows = [_study_row(r) for r in records]
        return rows, f"{len(rows)} studies in the local store"

    def _show_studies(self, found: tuple[list[dict[str, Any]], str]) -> None:
        rows, note = found
        self.study_table.rows = rows
        self.status = note

    # -- series --------------------------------------------------------------------------------
    def _study_picked(self, change: dict[str, Any]) -> None:
        selected = change["new"]
        self.selected_study = selected[0] if selected else ""
        self.series_table.rows = []
        if not self.selected_study:
            return
        study_uid = self.selected_study
        self.run_in_background("series", lambda: self._list_series(study_uid), self._show_series)

    def _list_series(self, study_uid: str) -> tuple[str, list[dict[str, Any]]]:
        stored = {s.series_uid: s for s in self.store.list_series(study_uid)}
        if self.is_local:
            rows = [
                {
                    "series_uid": s.series_uid,
                    "series_number": s.series_number,
                    "modality": s.modality,
                    "series_description": s.series_description,
                    "n_instances": s.n_slices * max(1, len(s.channels)),
                    "stored": "yes",
                }
                for s in stored.values()
            ]
        else:
            table = self.client().find_series(study_uid)
            rows = [
                {
                    "series_uid": s.series_uid,
                    "series_number": s.series_number,
                    "modality": s.modality,
                    "series_description": s.series_description,
                    "n_instances": s.n_instances,
                    "stored": "yes" if s.series_uid in stored else "",
                }
                for s in table
            ]
        rows.sort(key=lambda r: (r["series_number"] is None, r["series_number"] or 0))
        return study_uid, rows

    def _show_series(self, found: tuple[str, list[dict[str, Any]]]) -> None:
        study_uid, rows = found
        if study_uid == self.selected_study:
            self.series_table.rows = rows
            # The picked series may stay picked while its row changes (e.g. now stored).
            self._series_picked({"new": self.series_table.selected})

    def _series_picked(self, change: dict[str, Any]) -> None:
        self.selected_series = tuple(change["new"])
        self.retrieve_button.disabled = self.busy or not self.selected_series
        stored = {r["series_uid"] for r in self.series_table.rows if r.get("stored")}
        self.open_button.disabled = not (self.selected_series and self.selected_series[-1] in stored)

    def open_selected(self) -> None:
        """Open the last selected series, which must be stored, in the viewer."""
        if not self.selected_series:
            raise ValueError("select a series first")
        series_uid = self.selected_series[-1]
        self.store.series(series_uid)  # a clear SeriesNotFound before handing it on
        if self.on_open is not None:
            self.on_open(series_uid)

    # -- retrieve ------------------------------------------------------------------------------
    def retrieve_selected(self) -> None:
        """Retrieve every selected series into the store, one after another, with a bar each."""
        if self.is_local or not self.selected_series or not self.selected_study:
            return
        study_uid = self.selected_study
        series_uids = list(self.selected_series)
        rows = {r["series_uid"]: r for r in self.series_table.rows}
        self._cancel.clear()
        bars = {}
        for uid in series_uids:
            row = rows.get(uid, {})
            label = f"{row.get('modality', '')} {row.get('series_description', '') or uid}".strip()
            bar = w.IntProgress(value=0, min=0, max=max(1, row.get("n_instances") or 1), description="")
            text = w.Label(value=f"{label}: waiting")
            bars[uid] = (bar, text, label)
            self.transfer_box.children = (*self.transfer_box.children, w.HBox([bar, text]))
        self.status = f"retrieving {len(series_uids)} series…"
        client = self.client()
        self.run_in_background(
            "retrieve", lambda: self._retrieve_all(client, study_uid, series_uids, bars), self._retrieved
        )

    def _retrieve_all(
        self,
        client: PacsClient,
        study_uid: str,
        series_uids: list[str],
        bars: dict[str, tuple[w.IntProgress, w.Label, str]],
    ) -> list[RetrieveOutcome]:
        outcomes: list[RetrieveOutcome] = []
        problems: list[str] = []
        for uid in series_uids:
            if self._cancel.is_set():
                break
            bar, text, label = bars[uid]
            record = self.transfers.start("retrieve", label, total=bar.max)

            def progress(
                p: RetrieveProgress,
                bar: w.IntProgress = bar,
                text: w.Label = text,
                label: str = label,
                record: Transfer = record,
            ) -> None:
                if p.expected:
                    bar.max = p.expected
                bar.value = min(p.received, bar.max)
                text.value = f"{label}: {p.received}/{p.expected or '?'}"
                self.transfers.update(record, done=p.received, total=p.expected, failed=p.failed)

            def on_bytes(n: int, record: Transfer = record) -> None:
                self.transfers.update(record, bytes=n)

            text.value = f"{label}: starting"
            try:
                outcome = retrieve_into_store(
                    client,
                    self.store,
                    study_uid,
                    uid,
                    on_progress=progress,
                    on_bytes=on_bytes,
                    cancel_event=self._cancel,
                )
            except Exception as exc:
                bar.bar_style = "danger"
                text.value = f"{label}: failed"
                self.transfers.finish(record, "failed", str(exc))
                raise
            outcomes.append(outcome)
            stored = len(outcome.report.series_uids)
            if outcome.incomplete is not None:
                bar.bar_style = "warning"
                text.value = f"{label}: incomplete, {outcome.report.n_instances} stored"
                problems.append(str(outcome.incomplete))
                self.transfers.finish(record, "failed", str(outcome.incomplete))
            elif outcome.result is not None and outcome.result.status == "cancelled":
                bar.bar_style = "warning"
                text.value = f"{label}: cancelled, {outcome.report.n_instances} stored"
                self.transfers.finish(record, "cancelled")
            else:
                bar.value = bar.max
                bar.bar_style = "success"
                text.value = f"{label}: {outcome.report.n_instances} instances stored"
                self.transfers.finish(record, "done")
            for rejection in outcome.report.rejected:
                problems.append(f"{rejection.name}: {rejection.error}")
            if not stored and outcome.incomplete is None and not outcome.report.rejected:
                problems.append(f"{label}: the PACS sent no instance")
        if problems:
            self.error = "\n".join(problems)
        return outcomes

    def _retrieved(self, outcomes: list[RetrieveOutcome]) -> None:
        uids = [uid for o in outcomes for uid in o.report.series_uids]
        self.retrieved = [*self.retrieved, *[u for u in uids if u not in self.retrieved]]
        n = sum(o.report.n_instances for o in outcomes)
        self.status = f"stored {n} instances in {len(uids)} series"
        if self.selected_study:
            study_uid = self.selected_study
            self.run_in_background("series", lambda: self._list_series(study_uid), self._show_series)
