"""BatchQuery: a CSV or Excel list of queries, run against a PACS, with a status per row.

Reading the file and running the rows is :mod:`pacslab.pacs.batch`; this view uploads the
file, previews the queries, shows the per-row results, offers them as a CSV download and
retrieves every study found.
"""

from __future__ import annotations

import base64
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from pacslab.retrieve import retrieve_into_store
from widgets.transfer_monitor import TransferLog
from widgets.view import View, escape, html_table

if TYPE_CHECKING:
    import pandas as pd

    from pacslab.pacs import PacsClient, QueryTable
    from pacslab.pacs.batch import BatchMatch, BatchRow
    from pacslab.store import SliceStore

__all__ = ["BatchQuery", "read_uploaded_batch"]

PREVIEW_ROWS = 10
RESULT_COLUMNS = (
    "row",
    "status",
    "message",
    "patient_id",
    "patient_name",
    "study_date",
    "accession_number",
    "study_description",
    "modalities",
    "n_instances",
    "study_uid",
)


def read_uploaded_batch(name: str, data: bytes) -> list[BatchRow]:
    """The queries of an uploaded batch file (read by :func:`pacslab.pacs.batch.read_batch`).

    Raises
    ------
    BatchFileError
        Unknown file type, unreadable, or no known column; the message names the upload.
    """
    from pacslab.pacs import BatchFileError
    from pacslab.pacs.batch import read_batch

    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="pacslab-batch-") as scratch:
        path = Path(scratch) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return read_batch(path)
        except BatchFileError as exc:
            raise BatchFileError(name, exc.problem) from None


class BatchQuery(View):
    """Upload a batch file, preview it, run it on a PACS, download the results, retrieve them.

    Parameters
    ----------
    pacs : PacsClient or callable
        The PACS, or a function returning the PACS currently selected (e.g. the browser's).
    store : SliceStore
        Where "Retrieve all found" stores the studies.
    transfers : TransferLog, optional

    Traits
    ------
    rows : list of dict
        One per result line (a match, or why a file row found none): ``row`` (the
        spreadsheet's row number), ``status`` ("found", "not found", "invalid", "error"),
        ``message`` and the study's fields.
    n_found : int
        File rows that found at least one study.
    retrieved : list of str
        Series stored by "Retrieve all found".
    """

    rows = traitlets.List(traitlets.Dict())
    n_found = traitlets.Int(0)
    retrieved = traitlets.List(traitlets.Unicode())

    def __init__(
        self,
        pacs: PacsClient | Callable[[], PacsClient],
        store: SliceStore,
        *,
        transfers: TransferLog | None = None,
    ) -> None:
        super().__init__()
        self._pacs = pacs
        self.store = store
        self.transfers = transfers if transfers is not None else TransferLog()
        self.batch_rows: list[BatchRow] = []
        self.table: QueryTable[BatchMatch] | None = None
        self._cancel = threading.Event()
        self.upload = w.FileUpload(
            accept=".csv,.tsv,.txt,.xlsx,.xlsm,.xls", multiple=False, description="Batch file"
        )
        self.preview = w.HTML()
        self.run_button = w.Button(
            description="Run queries", button_style="primary", icon="search", disabled=True
        )
        self.retrieve_button = w.Button(description="Retrieve all found", icon="download", disabled=True)
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1)
        self.progress_label = w.Label()
        self.results = w.HTML()
        self.download = w.HTML()
        self.upload.observe(lambda _: self.guarded(self.load_upload), "value")
        self.run_button.on_click(lambda _: self.run())
        self.retrieve_button.on_click(lambda _: self.retrieve_found())
        self.cancel_button.on_click(lambda _: self._cancel.set())
        self.observe(self._on_busy, "busy")
        self.widget = w.VBox(
            [
                self._style,
                w.HBox([self.upload, self.run_button, self.retrieve_button, self.cancel_button]),
                self.error_area,
                self.preview,
                w.HBox([self.progress, self.progress_label]),
                self.status_line,
                self.download,
                self.results,
            ]
        )

    def _on_busy(self, change: dict[str, Any]) -> None:
        busy = change["new"]
        self.run_button.disabled = busy or not self.batch_rows
        self.retrieve_button.disabled = busy or not self.n_found
        self.cancel_button.disabled = not busy

    def pacs(self) -> PacsClient:
        """The PACS the queries go to."""
        from pacslab.pacs import PacsClient

        return self._pacs if isinstance(self._pacs, PacsClient) else self._pacs()

    # -- file ----------------------------------------------------------------------------------
    def load_upload(self) -> None:
        """Read the uploaded file and show its first queries."""
        if not self.upload.value:
            return
        item = self.upload.value[0]
        self.load(str(item["name"]), bytes(item["content"]))

    def load(self, name: str, data: bytes) -> None:
        """Read a batch file's bytes and show its first queries (what uploading it does)."""
        self.error = ""
        self.batch_rows = []
        self.table = None
        self.rows = []
        self.n_found = 0
        self.results.value = ""
        self.download.value = ""
        self.run_button.disabled = True
        self.retrieve_button.disabled = True
        rows = read_uploaded_batch(name, data)
        self.batch_rows = rows
        self.preview.value = escape(f"{len(rows)} queries in {name}") + html_table(
            ["row", "query"],
            ((r.row, ", ".join(f"{k}={v}" for k, v in r.filters.items()) or "(empty)") for r in rows),
            limit=PREVIEW_ROWS,
        )
        self.run_button.disabled = self.busy

    # -- queries -------------------------------------------------------------------------------
    def run(self) -> None:
        """Run every query in the background; ``rows`` holds the results."""
        if not self.batch_rows:
            self.error = "upload a batch file first"
            return
        rows = list(self.batch_rows)
        self.rows = []
        self.progress.max = 1
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress_label.value = f"querying {len(rows)} rows…"
        self.run_in_background("batch", lambda: self._run(rows), self._ran)

    def _run(self, rows: list[BatchRow]) -> QueryTable[BatchMatch]:
        from pacslab.pacs.batch import batch_query

        return batch_query(self.pacs(), rows)

    def _ran(self, table: QueryTable[BatchMatch]) -> None:
        import dataclasses

        self.table = table
        self.rows = [dataclasses.asdict(m) for m in table]
        found_rows = {m.row for m in table if m.status == "found"}
        self.n_found = len(found_rows)
        errors = [m for m in table if m.status == "error"]
        invalid = {m.row for m in table if m.status == "invalid"}
        self.progress.value = self.progress.max
        self.progress.bar_style = "danger" if errors else "warning" if invalid else "success"
        self.progress_label.value = f"{len(self.batch_rows)} rows"
        self.status = (
            f"{len(self.batch_rows)} rows run: {self.n_found} found, {len(invalid)} invalid, "
            f"{len({m.row for m in errors})} failed"
        )
        if errors and len({m.row for m in errors}) == len(self.batch_rows):
            self.error = errors[0].message
        self._show_rows()
        self.retrieve_button.disabled = not self.n_found

    def result_frame(self) -> pd.DataFrame:
        """The results as the CSV download holds them: one line per match or per failed row."""
        import pandas as pd

        if self.table is None:
            return pd.DataFrame()
        frame = self.table.to_dataframe()
        frame["modalities"] = ["/".join(m) for m in frame["modalities"]]
        if any("retrieve" in r for r in self.rows):
            frame["retrieve"] = [r.get("retrieve", "") for r in self.rows]
        return frame

    def _show_rows(self) -> None:
        frame = self.result_frame()
        if frame.empty:
            self.results.value = ""
            self.download.value = ""
            return
        shown = [c for c in (*RESULT_COLUMNS, "retrieve") if c in frame.columns]
        self.results.value = html_table(shown, frame[shown].itertuples(index=False))
        payload = base64.b64encode(frame.to_csv(index=False).encode("utf-8")).decode("ascii")
        href = f"data:text/csv;base64,{payload}"
        self.download.value = f'<a download="batch_results.csv" href="{href}">Download results (CSV)</a>'

    # -- retrieve ------------------------------------------------------------------------------
    def retrieve_found(self) -> None:
        """Retrieve every study found into the store (one after another)."""
        study_uids = list(dict.fromkeys(r["study_uid"] for r in self.rows if r["status"] == "found"))
        if not study_uids:
            self.error = "no study found to retrieve"
            return
        self._cancel.clear()
        self.progress.max = len(study_uids)
        self.progress.value = 0
        self.progress.bar_style = ""
        self.run_in_background("batch-retrieve", lambda: self._retrieve(study_uids), self._retrieved)

    def _retrieve(self, study_uids: list[str]) -> dict[str, str]:
        pacs = self.pacs()
        outcome: dict[str, str] = {}
        for i, study_uid in enumerate(study_uids):
            if self._cancel.is_set():
                break
            record = self.transfers.start("retrieve", f"study {study_uid}")
            try:
                result = retrieve_into_store(pacs, self.store, study_uid, cancel_event=self._cancel)
            except Exception as exc:
                self.transfers.finish(record, "failed", str(exc))
                outcome[study_uid] = f"retrieve failed: {exc}"
            else:
                self.transfers.update(record, done=result.report.n_instances, bytes=result.bytes_received)
                if result.incomplete is not None:
                    self.transfers.finish(record, "failed", str(result.incomplete))
                    outcome[study_uid] = f"incomplete: {result.incomplete}"
                else:
                    self.transfers.finish(record, "done")
                    outcome[study_uid] = f"retrieved {result.report.n_instances}"
                self.retrieved = [
                    *self.retrieved,
                    *(u for u in result.report.series_uids if u not in self.retrieved),
                ]
            self.progress.value = i + 1
            self.progress_label.value = f"{i + 1}/{len(study_uids)} studies"
        return outcome

    def _retrieved(self, outcome: dict[str, str]) -> None:
        self.rows = [{**r, "retrieve": outcome.get(r["study_uid"], "")} for r in self.rows]
        failed = [s for s in outcome.values() if not s.startswith("retrieved")]
        self.progress.bar_style = "warning" if failed else "success"
        if failed:
            self.error = f"{len(failed)} of {len(outcome)} studies did not arrive whole; see the table"
        self.status = f"retrieved {len(outcome) - len(failed)} of {len(outcome)} studies"
        self._show_rows()
