"""BatchQuery driven headless: a CSV or Excel batch against the embedded PACS, then retrieve."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

import pandas as pd
import pytest
from pydicom import dcmread

from pacslab.config import PacsNode
from pacslab.pacs import BatchFileError, connect_pacs
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.store import SliceStore
from tests.widgets.conftest import closed_port, make_config, settle
from widgets import BatchQuery
from widgets.batch_query import read_uploaded_batch


@pytest.fixture(scope="module")
def small_study(sample_series: dict[str, dict[str, Any]]) -> tuple[str, set[str], str, str]:
    """The sample study with the fewest instances: its UID, series, patient ID and date."""
    studies: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    first: dict[str, Any] = {}
    for uid, entry in sample_series.items():
        studies[entry["study_uid"]].add(uid)
        sizes[entry["study_uid"]] += len(entry["files"])
        first.setdefault(entry["study_uid"], entry["files"][0])
    study = min(sizes, key=lambda s: sizes[s])
    ds = dcmread(first[study], stop_before_pixels=True)
    return study, studies[study], str(ds.PatientID), str(ds.StudyDate)


def _csv(rows: list[dict[str, str]]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def test_csv_batch_statuses_download_and_retrieve(
    embedded_pacs: EmbeddedPacs, store: SliceStore, small_study: tuple[str, set[str], str, str]
) -> None:
    study_uid, series, patient_id, study_date = small_study
    node = embedded_pacs.node
    batch = BatchQuery(connect_pacs(node, make_config(node)), store)
    data = _csv(
        [
            {"Patient ID": patient_id, "Study Date": study_date, "Note": "mine"},
            {"Patient ID": "NO-SUCH-PATIENT", "Study Date": "", "Note": ""},
            {"Patient ID": "", "Study Date": "20241345", "Note": "<script>"},
        ]
    )
    batch.load("list.csv", data)
    assert "3 queries in list.csv" in batch.preview.value
    batch.run_button.click()
    settle(batch)
    assert batch.error == ""
    by_row = defaultdict(list)
    for r in batch.rows:
        by_row[r["row"]].append(r)
    assert study_uid in {r["study_uid"] for r in by_row[2]}
    assert {r["status"] for r in by_row[2]} == {"found"}
    assert [r["status"] for r in by_row[3]] == ["not found"]
    assert [r["status"] for r in by_row[4]] == ["invalid"]
    assert batch.n_found == 1
    href = batch.download.value.split('href="data:text/csv;base64,')[1].split('"')[0]
    downloaded = pd.read_csv(io.BytesIO(base64.b64decode(href)), dtype=str, keep_default_na=False)
    assert set(downloaded["status"]) == {"found", "not found", "invalid"}
    assert "&lt;script&gt;" not in batch.results.value  # notes are not queried, so not shown

    batch.retrieve_button.click()
    settle(batch)
    assert batch.error == ""
    assert series <= set(batch.retrieved)
    assert {s.series_uid for s in store.list_series(study_uid)} == series
    assert all(r["retrieve"].startswith("retrieved") for r in batch.rows if r["status"] == "found")


def test_excel_file_is_read() -> None:
    buffer = io.BytesIO()
    pd.DataFrame([{"PatientName": "Doe*", "Modality": "CT"}]).to_excel(buffer, index=False)
    [row] = read_uploaded_batch("list.xlsx", buffer.getvalue())
    assert dict(row.filters) == {"patient_name": "Doe*", "modality": "CT"}


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("list.pdf", b"%PDF", "use .csv or .xlsx"),
        ("list.csv", b"Colour,Size\nred,1\n", "none of the columns"),
        ("list.xlsx", b"not a workbook", "cannot be read"),
    ],
)
def test_bad_batch_files_are_named(store: SliceStore, name: str, data: bytes, problem: str) -> None:
    with pytest.raises(BatchFileError, match=problem) as raised:
        read_uploaded_batch(name, data)
    assert str(raised.value).startswith(f"batch file {name}:")
    node = PacsNode(name="x", ae_title="X", port=closed_port())
    batch = BatchQuery(connect_pacs(node, make_config(node)), store)
    batch.guarded(lambda: batch.load(name, data))
    assert problem in batch.error
    assert batch.run_button.disabled


@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_pacs_down_stops_the_run_with_a_message(store: SliceStore) -> None:
    node = PacsNode(name="down", ae_title="NOBODY", port=closed_port())
    batch = BatchQuery(connect_pacs(node, make_config(node)), store)
    batch.load("list.csv", _csv([{"PatientID": "1"}, {"PatientID": "2"}]))
    batch.run()
    settle(batch)
    assert "unreachable" in batch.error
    assert [(r["row"], r["status"]) for r in batch.rows] == [(2, "error"), (3, "error")]
    assert batch.progress.bar_style == "danger"
