"""Batch queries from CSV and Excel files: one table, every input row accounted for."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest

from pacslab.config import PacsNode
from pacslab.pacs import BatchFileError, connect_pacs
from pacslab.pacs.batch import BatchMatch, batch_query, read_batch
from pacslab.pacs.orthanc import free_port
from tests.pacs.conftest import Peer, StudyFacts, make_config


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_each_get_a_status(peer: Peer, facts: dict[str, StudyFacts], tmp_path: Path) -> None:
    batch = _write_csv(
        tmp_path / "batch.csv",
        "PatientID,Patient Name,AccessionNumber,StudyDate,Modality,SeriesDescription\n"
        "98890234,,,20030505,MR,\n"  # row 2: three Brain/Carotids studies
        ",,428,,,\n"  # row 3: by accession
        "00000000,,,,,\n"  # row 4: nobody
        ",,,2024-02-30,,\n"  # row 5: not a date
        ",,,,,\n"  # row 6: empty
        ",Doe^Peter,,20030505,,FAST*\n",  # row 7: series of three studies
    )
    table = batch_query(peer.client, batch)
    by_row: dict[int, list[BatchMatch]] = {}
    for match in table:
        by_row.setdefault(match.row, []).append(match)
    assert set(by_row) == {2, 3, 4, 5, 6, 7}
    expected_2 = {u for u, f in facts.items() if f.patient_id == "98890234" and f.date == "20030505"}
    assert {m.study_uid for m in by_row[2]} == expected_2
    assert all(m.status == "found" for m in by_row[2])
    assert [m.accession_number for m in by_row[3]] == ["428"]
    assert [(m.status, m.row) for m in by_row[4]] == [("not found", 4)]
    assert "PatientID=00000000" in by_row[4][0].message
    assert by_row[5][0].status == "invalid"
    assert "calendar date" in by_row[5][0].message
    assert by_row[6][0].status == "invalid"
    series = {m.series_uid for m in by_row[7]}
    expected_7 = {
        s.uid
        for f in facts.values()
        if f.patient_name == "Doe^Peter" and f.date == "20030505"
        for s in f.series.values()
        if s.description.startswith("FAST")
    }
    assert series == expected_7
    frame = table.to_dataframe()
    assert list(frame["row"].unique()) == [2, 3, 4, 5, 6, 7]


def test_excel_with_dates_and_numeric_ids(peer: Peer, facts: dict[str, StudyFacts], tmp_path: Path) -> None:
    path = tmp_path / "batch.xlsx"
    pd.DataFrame(
        {
            # Excel keeps IDs typed as numbers, and real dates.
            "PatientID": [98890234, 77654033],
            "StudyDate": [datetime.datetime(2003, 5, 5), None],
            "Modality": ["MR", "CR"],
            "Comment": ["ignored", "ignored"],
        }
    ).to_excel(path, index=False)
    rows = read_batch(path)
    assert [r.row for r in rows] == [2, 3]
    assert rows[0].filters["patient_id"] == "98890234"
    table = batch_query(peer.client, rows)
    found_2 = {m.study_uid for m in table if m.row == 2}
    found_3 = {m.study_uid for m in table if m.row == 3}
    assert found_2 == {u for u, f in facts.items() if f.patient_id == "98890234" and f.date == "20030505"}
    assert found_3 == {u for u, f in facts.items() if f.patient_id == "77654033" and "CR" in f.modalities}


def test_semicolon_csv_and_birth_date(peer: Peer, facts: dict[str, StudyFacts], tmp_path: Path) -> None:
    target = next(f for f in facts.values() if f.birth_date)
    batch = _write_csv(
        tmp_path / "b.csv",
        f"PatientName;PatientBirthDate\n{target.patient_name};{target.birth_date}\n",
    )
    table = batch_query(peer.client, batch)
    assert {m.study_uid for m in table} == {
        u
        for u, f in facts.items()
        if f.patient_name == target.patient_name and f.birth_date == target.birth_date
    }


def test_unreachable_pacs_marks_every_row_quickly(tmp_path: Path) -> None:
    node = PacsNode("gone", "GONE", "127.0.0.1", free_port())
    client = connect_pacs(node, make_config(node, connection=1.0))
    batch = _write_csv(tmp_path / "b.csv", "PatientID\n1\n2\n3\n")
    table = batch_query(client, batch)
    assert [(m.row, m.status) for m in table] == [(2, "error"), (3, "error"), (4, "error")]
    assert all("unreachable" in m.message for m in table)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.csv", None, "does not exist"),
        ("list.pdf", "x", "unknown file type"),
        ("cols.csv", "Foo,Bar\n1,2\n", "none of the columns"),
        ("bad.xlsx", "not a spreadsheet", "cannot be read"),
    ],
)
def test_bad_batch_files_are_named(tmp_path: Path, name: str, content: str | None, problem: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(BatchFileError, match=problem) as info:
        read_batch(path)
    assert name in str(info.value)
