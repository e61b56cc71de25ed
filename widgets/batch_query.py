"""BatchQuery: a CSV or Excel list of queries, run against a PACS, with a status per row.

Each row of the file is one study query; its columns name the filters (``PatientID``,
``PatientName``, ``AccessionNumber``, ``StudyDate``, ``Modality``, ``StudyDescription``,
``StudyInstanceUID``; spaces, underscores and case do not matter). A row's bad filter is
that row's status; the PACS going away stops the run with a message.
"""

from __future__ import annotations

import base64
import csv
import io
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from pacslab.retrieve import retrieve_into_store
from widgets.transfer_monitor import TransferLog
from widgets.view import View, escape, html_table

if TYPE_CHECKING:
    import pandas as pd

    from pacslab.pacs import PacsClient
    from pacslab.store import SliceStore

__all__ = ["BATCH_COLUMNS", "BatchQuery", "read_batch_file", "row_filters"]

# Column names users write, normalised (lower case, no spaces or underscores) → filter.
BATCH_COLUMNS: dict[str, str] = {
    "patientid": "patient_id",
    "patientname": "patient_name",
    "accessionnumber": "accession_number",
    "accession": "accession_number",
    "studydate": "study_date",
    "date": "study_date",
    "modality": "modality",
    "modalitiesinstudy": "modality",
    "studydescription": "study_description",
    "description": "study_description",
    "studyinstanceuid": "study_uid",
    "studyuid": "study_uid",
}
PREVIEW_ROWS = 10
MAX_ROWS = 10_000


def _normalise(column: object) -> str:
    return "".join(ch for ch in str(column).lower() if ch.isalnum())


def _delimiter(data: bytes) -> str:
    # Spreadsheets export with commas, semicolons (European locales) or tabs.
    sample = data[:4096].decode("utf-8", "replace")
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def read_batch_file(name: str, data: bytes) -> pd.DataFrame:
    """Read an uploaded CSV or Excel file into a table of text cells.

    Raises
    ------
    BatchFileError
        Unknown format, unreadable, empty, too many rows, or no column that names a filter.
    """
    import pandas as pd

    from pacslab.pacs import BatchFileError

    lower = name.lower()
    try:
        if lower.endswith((".xlsx", ".xlsm")):
            frame = pd.read_excel(io.BytesIO(data), dtype=str, keep_default_na=False, engine="openpyxl")
        elif lower.endswith((".csv", ".txt")):
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, sep=_delimiter(data))
        else:
            raise BatchFileError(name, "use a .csv or .xlsx file")
    except BatchFileError:
        raise
    except Exception as exc:
        raise BatchFileError(name, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if frame.empty:
        raise BatchFileError(name, "has no rows")
    if len(frame) > MAX_ROWS:
        raise BatchFileError(name, f"has {len(frame)} rows; split it into files of at most {MAX_ROWS}")
    if not any(_normalise(c) in BATCH_COLUMNS for c in frame.columns):
        accepted = (
            "PatientID, PatientName, AccessionNumber, StudyDate, Modality, StudyDescription, StudyInstanceUID"
        )
        found = ", ".join(str(c) for c in frame.columns)
        raise BatchFileError(name, f"no column names a filter (found: {found}; accepted: {accepted})")
    return frame


def row_filters(row: pd.Series) -> dict[str, Any]:
    """The query filters of one row (blank cells left out)."""
    filters: dict[str, Any] = {}
    for column, value in row.items():
        key = BATCH_COLUMNS.get(_normalise(column))
        text = str(value).strip()
        if key is not None and text:
            filters[key] = text
    return filters


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
        One per file row: ``row`` (1-based), its filters, ``status``, ``n_found``, ``study_uids``.
    n_found : int
        Rows that found at least one study.
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
        self.frame: pd.DataFrame | None = None
        self._cancel = threading.Event()
        self.upload = w.FileUpload(accept=".csv,.xlsx,.xlsm,.txt", multiple=False, description="Batch file")
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
        self.run_button.disabled = busy or self.frame is None
        self.retrieve_button.disabled = busy or not self.n_found
        self.cancel_button.disabled = not busy

    def pacs(self) -> PacsClient:
        """The PACS the queries go to."""
        from pacslab.pacs import PacsClient

        return self._pacs if isinstance(self._pacs, PacsClient) else self._pacs()

    # -- file ----------------------------------------------------------------------------------
    def load_upload(self) -> None:
        """Read the uploaded file and show its first rows."""
        if not self.upload.value:
            return
        item = self.upload.value[0]
        self.load(str(item["name"]), bytes(item["content"]))

    def load(self, name: str, data: bytes) -> None:
        """Read a batch file's bytes and show its first rows (what uploading it does)."""
        self.error = ""
        self.frame = None
        self.rows = []
        self.n_found = 0
        self.results.value = ""
        self.download.value = ""
        self.run_button.disabled = True
        self.retrieve_button.disabled = True
        frame = read_batch_file(name, data)
        self.frame = frame
        used = [str(c) for c in frame.columns if _normalise(c) in BATCH_COLUMNS]
        ignored = [str(c) for c in frame.columns if _normalise(c) not in BATCH_COLUMNS]
        note = f"{len(frame)} rows; filters from {', '.join(used)}"
        if ignored:
            note += f"; ignored columns: {', '.join(ignored)}"
        self.preview.value = escape(note) + html_table(
            ["row", *map(str, frame.columns)],
            ([i + 1, *row] for i, row in enumerate(frame.itertuples(index=False))),
            limit=PREVIEW_ROWS,
        )
        self.run_button.disabled = self.busy

    # -- queries -------------------------------------------------------------------------------
    def run(self) -> None:
        """Run every row's query in the background, filling ``rows`` as it goes."""
        if self.frame is None:
            self.error = "upload a batch file first"
            return
        frame = self.frame
        self._cancel.clear()
        self.rows = []
        self.progress.max = len(frame)
        self.progress.value = 0
        self.progress.bar_style = ""
        self.run_in_background("batch", lambda: self._run(frame), self._ran)

    def _run(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        from pacslab.pacs import QueryFilterError

        pacs = self.pacs()
        out: list[dict[str, Any]] = []
        for i, (_, row) in enumerate(frame.iterrows()):
            if self._cancel.is_set():
                break
            filters = row_filters(row)
            entry: dict[str, Any] = {"row": i + 1, **filters, "n_found": 0, "study_uids": []}
            if not filters:
                entry["status"] = "empty row"
            else:
                try:
                    table = pacs.find_studies(**filters)
                except QueryFilterError as exc:
                    entry["status"] = f"bad filter: {exc}"
                else:
                    entry["n_found"] = len(table)
                    entry["study_uids"] = [s.study_uid for s in table]
                    entry["status"] = f"found {len(table)}" if len(table) else "not found"
            out.append(entry)
            self.progress.value = i + 1
            self.progress_label.value = f"{i + 1}/{len(frame)}"
        return out

    def _ran(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.n_found = sum(1 for r in rows if r["n_found"])
        bad = sum(1 for r in rows if r["status"].startswith("bad filter"))
        self.progress.bar_style = "warning" if bad else "success"
        self.status = f"{len(rows)} rows run: {self.n_found} found, {bad} with a bad filter"
        self._show_rows()
        self.retrieve_button.disabled = not self.n_found

    def result_frame(self) -> pd.DataFrame:
        """The results as a table (one row per file row), as the CSV download holds them."""
        import pandas as pd

        records = [
            {**{k: v for k, v in r.items() if k != "study_uids"}, "study_uids": ";".join(r["study_uids"])}
            for r in self.rows
        ]
        return pd.DataFrame.from_records(records)

    def _show_rows(self) -> None:
        frame = self.result_frame()
        if frame.empty:
            self.results.value = ""
            self.download.value = ""
            return
        columns = [str(c) for c in frame.columns]
        self.results.value = html_table(columns, frame.itertuples(index=False))
        payload = base64.b64encode(frame.to_csv(index=False).encode("utf-8")).decode("ascii")
        href = f"data:text/csv;base64,{payload}"
        self.download.value = f'<a download="batch_results.csv" href="{href}">Download results (CSV)</a>'

    # -- retrieve ------------------------------------------------------------------------------
    def retrieve_found(self) -> None:
        """Retrieve every study found into the store (one after another)."""
        study_uids = list(dict.fromkeys(uid for r in self.rows for uid in r["study_uids"]))
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
        for row in self.rows:
            states = [outcome[u] for u in row["study_uids"] if u in outcome]
            if states:
                row["retrieve"] = "; ".join(states)
        self.rows = [dict(r) for r in self.rows]
        failed = [s for s in outcome.values() if not s.startswith("retrieved")]
        self.progress.bar_style = "warning" if failed else "success"
        if failed:
            self.error = f"{len(failed)} of {len(outcome)} studies did not arrive whole; see the table"
        self.status = f"retrieved {len(outcome) - len(failed)} of {len(outcome)} studies"
        self._show_rows()
