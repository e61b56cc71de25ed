"""UploadPanel driven headless: uploaded bytes and zips into a real store, and every refusal."""

from __future__ import annotations

import datetime
import io
import zipfile
from pathlib import Path
from typing import Any

from pydicom.filebase import DicomBytesIO

from pacslab.ingest import FileSetSchema
from pacslab.samples import phantom_ct_datasets
from pacslab.store import SliceStore
from tests.widgets.conftest import settle
from widgets import TransferLog, UploadPanel


def _ct_files(n: int = 4) -> list[tuple[str, bytes]]:
    files = []
    for i, ds in enumerate(phantom_ct_datasets(n_slices=n, size=32)):
        buffer = DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((f"slice{i}.dcm", buffer.getvalue()))
    return files


def _drop(panel: UploadPanel, files: list[tuple[str, bytes]]) -> None:
    # What the browser's FileUpload sends when files are dropped on it.
    now = datetime.datetime.now(datetime.UTC)
    panel.upload.value = tuple(
        {
            "name": name,
            "type": "application/dicom",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": now,
        }
        for name, data in files
    )


def test_upload_stores_series_and_opens_it(store: SliceStore) -> None:
    opened: list[str] = []
    log = TransferLog()
    panel = UploadPanel(store, transfers=log, on_open=opened.append)
    _drop(panel, _ct_files(4))
    panel.ingest_button.click()
    settle(panel)
    assert panel.error == ""
    assert panel.problems == []
    assert panel.n_instances == 4
    [uid] = panel.series_uids
    assert store.series(uid).n_slices == 4
    assert opened == [uid]
    assert (panel.progress.value, panel.progress.bar_style) == (panel.progress.max, "success")
    assert [(t.kind, t.state, t.done) for t in log.transfers] == [("upload", "done", 4)]


def test_zip_upload_and_a_bad_file_listed(store: SliceStore) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in _ct_files(3):
            archive.writestr(f"ct/{name}", data)
    panel = UploadPanel(store)
    _drop(panel, [("study.zip", buffer.getvalue()), ("notes.dcm", b"this is not DICOM at all" * 10)])
    panel.ingest_button.click()
    settle(panel)
    assert panel.n_instances == 3
    assert len(panel.series_uids) == 1
    assert len(panel.problems) == 1
    assert panel.problems[0].startswith("notes.dcm: ")
    assert panel.progress.bar_style == "warning"


def test_schema_violation_lists_every_problem_and_stores_nothing(store: SliceStore) -> None:
    schemas = {"one MR series": FileSetSchema(modalities=("MR",), single_series=True, max_files=2)}
    log = TransferLog()
    panel = UploadPanel(store, schemas, transfers=log)
    assert panel.schema_name == "one MR series"
    _drop(panel, _ct_files(3))
    panel.ingest_button.click()
    settle(panel)
    assert "nothing was stored" in panel.error
    assert len(panel.problems) >= 2
    assert any("at most 2" in p for p in panel.problems)
    assert any("CT" in p for p in panel.problems)
    assert "<li>" in panel.problem_list.value
    assert store.list_series() == []
    assert log.transfers[0].state == "failed"


def test_nothing_chosen_is_an_error(store: SliceStore) -> None:
    panel = UploadPanel(store)
    panel.ingest_button.click()
    assert "choose .dcm files" in panel.error


def test_folder_import_stays_inside_the_server_root(store: SliceStore, tmp_path: Path) -> None:
    root = tmp_path / "imports"
    (root / "ct").mkdir(parents=True)
    for name, data in _ct_files(2):
        (root / "ct" / name).write_bytes(data)
    outside = tmp_path / "secret"
    outside.mkdir()
    panel = UploadPanel(store, server_root=root)
    panel.import_folder("../secret")
    assert "only folders inside" in panel.error
    panel.import_folder("/etc")
    assert "only folders inside" in panel.error
    panel.import_folder("missing")
    assert "no folder 'missing'" in panel.error
    panel.folder.value = "ct"
    panel.folder_button.click()
    settle(panel)
    assert panel.error == ""
    assert panel.n_instances == 2


def test_folder_import_hidden_without_a_root(store: SliceStore) -> None:
    panel = UploadPanel(store)
    row: Any = panel.widget.children[2]
    assert row.layout.display == "none"
    panel.import_folder("anything")
    assert "not enabled" in panel.error
