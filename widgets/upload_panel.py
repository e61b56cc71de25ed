"""UploadPanel: drop .dcm files or a zip, check them against a file-set schema, ingest them.

Large sets can instead be imported from a folder on the server, but only below a folder the
panel was given (``server_root``): under Voilà anyone with the page could otherwise make the
server read any path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from widgets.transfer_monitor import TransferLog
from widgets.view import View, escape

if TYPE_CHECKING:
    from pacslab.ingest import FileSetSchema, IngestProgress, IngestReport
    from pacslab.store import SliceStore

__all__ = ["NO_SCHEMA", "UploadPanel"]

NO_SCHEMA = "any DICOM"


class UploadPanel(View):
    """Upload DICOM files (or a zip) into the store, listing every problem found.

    Parameters
    ----------
    store : SliceStore
    schemas : mapping of str to FileSetSchema, optional
        Named rules an upload can be checked against (the first is chosen).
    server_root : Path, optional
        Folder whose sub-folders may be imported from the server; the folder import is
        hidden without it.
    transfers : TransferLog, optional
    on_open : callable, optional
        Called with the first new Series Instance UID after a successful ingest.

    Traits
    ------
    schema_name : str
    deidentify : bool
    problems : list of str
        Why the upload (or some of its files) was refused; empty after a clean ingest.
    series_uids : list of str
        Series stored by the last ingest.
    n_instances : int
        Instances stored by the last ingest.
    """

    schema_name = traitlets.Unicode(NO_SCHEMA)
    deidentify = traitlets.Bool(False)
    problems = traitlets.List(traitlets.Unicode())
    series_uids = traitlets.List(traitlets.Unicode())
    n_instances = traitlets.Int(0)

    def __init__(
        self,
        store: SliceStore,
        schemas: Mapping[str, FileSetSchema] | None = None,
        *,
        server_root: Path | None = None,
        transfers: TransferLog | None = None,
        on_open: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.schemas: dict[str, FileSetSchema | None] = {**dict(schemas or {}), NO_SCHEMA: None}
        self.server_root = Path(server_root).resolve() if server_root is not None else None
        self.transfers = transfers if transfers is not None else TransferLog()
        self.on_open = on_open

        self.upload = w.FileUpload(accept=".dcm,.zip,application/dicom,application/zip", multiple=True)
        self.schema_picker = w.Dropdown(options=list(self.schemas), description="Check as")
        self.deid_box = w.Checkbox(description="De-identify", value=False)
        self.ingest_button = w.Button(description="Check and store", button_style="primary", icon="upload")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="")
        self.progress_label = w.Label()
        self.problem_list = w.HTML()
        self.folder = w.Text(description="Folder", placeholder="sub-folder of the server's import folder")
        self.folder_button = w.Button(description="Import folder", icon="folder-open")
        self.schema_name = self.schema_picker.value
        traitlets.link((self.schema_picker, "value"), (self, "schema_name"))
        traitlets.link((self.deid_box, "value"), (self, "deidentify"))
        self.ingest_button.on_click(lambda _: self.ingest_uploaded())
        self.folder_button.on_click(lambda _: self.import_folder(self.folder.value))
        self.observe(self._show_problems, "problems")
        self.observe(lambda c: setattr(self.ingest_button, "disabled", c["new"]), "busy")
        self.observe(lambda c: setattr(self.folder_button, "disabled", c["new"]), "busy")

        folder_row = w.HBox([self.folder, self.folder_button])
        if self.server_root is None:
            folder_row.layout.display = "none"
        else:
            self.folder.tooltip = f"below {self.server_root}"
        self.widget = w.VBox(
            [
                self._style,
                w.HBox([self.upload, self.schema_picker, self.deid_box, self.ingest_button]),
                folder_row,
                w.HBox([self.progress, self.progress_label]),
                self.error_area,
                self.problem_list,
                self.status_line,
            ]
        )

    @property
    def schema(self) -> FileSetSchema | None:
        return self.schemas[self.schema_name]

    def _show_problems(self, change: dict[str, Any]) -> None:
        items = "".join(f"<li>{escape(p)}</li>" for p in change["new"])
        self.problem_list.value = f'<ul class="pacslab-error">{items}</ul>' if items else ""

    def _on_progress(self, progress: IngestProgress) -> None:
        self.progress.max = max(progress.total, 1)
        self.progress.value = min(progress.done, self.progress.max)
        verb = "checking" if progress.stage == "reading" else "storing"
        self.progress_label.value = f"{verb} {progress.done}/{progress.total}"

    def _start(self) -> None:
        self.problems = []
        self.series_uids = []
        self.n_instances = 0
        self.progress.value = 0
        self.progress.bar_style = ""

    def ingest_uploaded(self) -> None:
        """Check and store what was dropped on the upload button (in the background)."""
        files = [(str(f["name"]), bytes(f["content"])) for f in self.upload.value]
        if not files:
            self.error = "choose .dcm files or a .zip first"
            return
        self._start()
        record = self.transfers.start("upload", f"{len(files)} file(s)", total=len(files))
        self.transfers.update(record, bytes=sum(len(data) for _, data in files))
        self.status = f"checking {len(files)} file(s)…"
        schema, deidentify = self.schema, self.deidentify
        self.run_in_background(
            "upload",
            lambda: self._ingest(files, schema, deidentify),
            lambda report: self._finished(report, record),
            lambda exc: self._failed(exc, record),
        )

    def _ingest(
        self, files: list[tuple[str, bytes]], schema: FileSetSchema | None, deidentify: bool
    ) -> IngestReport:
        from pacslab.ingest import Ingest

        ingest = Ingest(self.store, schema=schema, deidentify=deidentify, progress=self._on_progress)
        try:
            with tempfile.TemporaryDirectory(prefix="pacslab-upload-") as scratch:
                for name, data in files:
                    if data[:4] == b"PK\x03\x04":
                        # The ingest unpacks archives from a path; members go to its own spool.
                        archive = Path(scratch) / f"{len(list(Path(scratch).iterdir()))}.zip"
                        archive.write_bytes(data)
                        ingest.add_path(archive)
                    else:
                        ingest.add_bytes(name, data)
        except BaseException:
            ingest.abort()
            raise
        return ingest.finish()

    def import_folder(self, folder: str) -> None:
        """Ingest every file below ``folder``, a path inside ``server_root``."""
        if self.server_root is None:
            self.error = "importing folders on the server is not enabled here"
            return
        try:
            target = (self.server_root / folder.strip()).resolve()
            inside = target.is_relative_to(self.server_root)
            is_folder = inside and target.is_dir()
        except (ValueError, OSError):  # a NUL in the name, a name too long for the file system
            self.error = f"{folder.strip()[:80]!r} is not a folder name this server can use"
            return
        if not inside:
            self.error = f"only folders inside {self.server_root} can be imported"
            return
        if not is_folder:
            self.error = f"no folder {folder.strip()!r} inside {self.server_root}"
            return
        self._start()
        record = self.transfers.start("upload", f"folder {target.name}")
        schema, deidentify = self.schema, self.deidentify
        self.status = f"importing {target}…"

        def work() -> IngestReport:
            from pacslab.ingest import ingest_paths

            return ingest_paths(
                self.store, [target], schema=schema, deidentify=deidentify, progress=self._on_progress
            )

        self.run_in_background(
            "import-folder",
            work,
            lambda report: self._finished(report, record),
            lambda exc: self._failed(exc, record),
        )

    def _failed(self, exc: BaseException, record: Any) -> None:
        from pacslab.ingest import FileSetViolation

        if isinstance(exc, FileSetViolation):
            self.problems = list(exc.problems)
            self.error = "nothing was stored: the upload breaks the rules of “" + self.schema_name + "”"
        self.progress.bar_style = "danger"
        self.transfers.finish(record, "failed", self.error)

    def _finished(self, report: IngestReport, record: Any) -> None:
        self.problems = [f"{r.name}: {r.error}" for r in report.rejected]
        self.series_uids = list(report.series_uids)
        self.n_instances = report.n_instances
        self.progress.value = self.progress.max
        self.progress.bar_style = "warning" if report.rejected else "success"
        warnings = [w for series in report.warnings.values() for w in series]
        self.status = f"stored {report}" + "".join(f"; check geometry: {w}" for w in warnings)
        self.transfers.update(record, done=report.n_instances, failed=len(report.rejected))
        if report.rejected and not report.series_uids:
            self.transfers.finish(record, "failed", f"{len(report.rejected)} file(s) rejected")
        else:
            self.transfers.finish(record, "done")
        if report.series_uids and self.on_open is not None:
            self.on_open(report.series_uids[0])
