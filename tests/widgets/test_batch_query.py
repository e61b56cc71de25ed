"""BatchQuery driven headless: a CSV or Excel batch against the embedded PACS, then retrieve."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

import pandas as pd
import pytest

from pacslab.config import PacsNode
from pacslab.pacs import BatchFileError, connect_pacs
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.store import SliceStore
from tests.widgets.conftest import closed_port, make_config, settle
from widgets import BatchQuery
from widgets.batch_query import read_batch_file


@pytest.fixture(scope="module")
def small_study(sample_series: dict[str, dict[str, Any]]) -> tuple[str, set[str]]:
    """The sample study with the fewest instances, and its series."""
    studies: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    for uid, entry in sample_series.items():
        studies[entry["study_uid"]].add(uid)
        sizes[entry["study_uid"]] += len(entry["files"])
    study = min(sizes, key=lambda s: sizes[s])
    return study, studies[study]


def _csv(rows: list[dict[str, str]]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def test_csv_batch_statuses_download_and_retrieve(
    embedded_pacs: EmbeddedPacs, store: SliceStore, small_study: tuple[str, set[str]]
) -> None:
    study_uid, series = small_study
    node = embedded_pacs.node
    batch = BatchQuery(connect_pacs(node, make_config(node)), store)
    data = _csv(
        [
            {"Study Instance UID": study_uid, "PatientID": "", "Study Date": "", "Note": "mine"},
            {"Study Instance UID": "", "PatientID": "NO-SUCH-PATIENT", "Study Date": "", "Note": ""},
            {"Study Instance UID": "", "PatientID": "", "Study Date": "20241345", "Note": "<script>"},
            {"Study Instance UID": "", "PatientID": "", "Study Date": "", "Note": "blank"},
        ]
    )
    batch.load("list.csv", data)
    assert "4 rows" in batch.preview.value
    assert "ignored columns: Note" in batch.preview.value
    assert "&lt;script&gt;" in batch.preview.value
    batch.run_button.click()
    settle(batch)
    assert [r["status"] for r in batch.rows][:2] == ["found 1", "not found"]
    assert batch.rows[2]["status"].startswith("bad filter")
    assert batch.rows[3]["status"] == "empty row"
    assert batch.rows[0]["study_uids"] == [study_uid]
    assert batch.n_found == 1
    href = batch.download.value.split('href="data:text/csv;base64,')[1].split('"')[0]
    downloaded = pd.read_csv(io.BytesIO(base64.b64decode(href)), dtype=str, keep_default_na=False)
    assert list(downloaded["status"])[:2] == ["found 1", "not found"]
    assert list(downloaded["row"]) == ["1", "2", "3", "4"]

    batch.retrieve_button.click()
    settle(batch)
    assert batch.error == ""
    assert set(batch.retrieved) == series
    assert {s.series_uid for s in store.list_series(study_uid)} == series
    assert batch.rows[0]["retrieve"].startswith("retrieved")


def test_excel_file_is_read() -> None:
    buffer = io.BytesIO()
    pd.DataFrame([{"PatientName": "Doe*", "Modality": "CT"}]).to_excel(buffer, index=False)
    frame = read_batch_file("list.xlsx", buffer.getvalue())
    assert list(frame.columns) == ["PatientName", "Modality"]


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("list.pdf", b"%PDF", "use a .csv or .xlsx"),
        ("list.csv", b"Colour,Size\nred,1\n", "no column names a filter"),
        ("list.csv", b"PatientID\n", "has no rows"),
        ("list.xlsx", b"not a workbook", "cannot be read"),
    ],
)
def test_bad_batch_files_are_named(store: SliceStore, name: str, data: bytes, problem: str) -> None:
    with pytest.raises(BatchFileError, match=problem):
        read_batch_file(name, data)
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
    batch.load("list.csv", _csv([{"PatientID": "1"}]))
    batch.run()
    settle(batch)
    assert "unreachable" in batch.error
    assert batch.rows == []
