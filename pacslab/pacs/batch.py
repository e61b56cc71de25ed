"""Batch queries: a CSV or Excel file of rows → one table with a status per input row.

Each row is a query (PatientID, PatientName + PatientBirthDate, AccessionNumber, StudyDate or
a range, Modality, StudyDescription, SeriesDescription). The result has one line per match,
or one line saying why the row found nothing, and always the row number a user sees in the
spreadsheet, so that every failure can be matched to its row.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pacslab.pacs.client import PacsClient, QueryTable, StudyMatch
from pacslab.pacs.errors import (
    AssociationRejected,
    BatchFileError,
    PacsError,
    PacsUnreachable,
    QueryFilterError,
)
from pacslab.pacs.query import make_filters

__all__ = ["BATCH_COLUMNS", "BatchMatch", "BatchRow", "batch_query", "read_batch"]

# Column headings a file may use (any case, spaces and underscores ignored) → filter name.
BATCH_COLUMNS: dict[str, str] = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
    "AccessionNumber": "accession_number",
    "StudyDate": "study_date",
    "Modality": "modality",
    "StudyDescription": "study_description",
    "SeriesDescription": "series_description",
}
_ALIASES = {
    "birthdate": "patient_birth_date",
    "dateofbirth": "patient_birth_date",
    "accession": "accession_number",
    "mrn": "patient_id",
    "modalities": "modality",
    "modalitiesinstudy": "modality",
}
_SERIES_FILTERS = ("series_description",)
Status = Literal["found", "not found", "invalid", "error"]


def _key(heading: str) -> str:
    return re.sub(r"[\s_\-]+", "", heading).lower()


_COLUMN_KEYS = {_key(name): filter_name for name, filter_name in BATCH_COLUMNS.items()} | _ALIASES


@dataclass(frozen=True)
class BatchRow:
    """One query of a batch file; ``row`` is the row number shown by a spreadsheet."""

    row: int
    filters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchMatch:
    """One line of a batch result: a match of input row ``row``, or why it has none."""

    row: int
    status: Status
    message: str
    query: str = ""
    study_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    accession_number: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None
    series_uid: str = ""
    series_description: str = ""
    series_modality: str = ""
    series_instances: int | None = None


def _cell(value: Any) -> Any:
    """A spreadsheet cell as a filter value (None for empty)."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))  # an ID Excel stored as a number
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return value.to_pydatetime().date()
    text = str(value).strip()
    return text or None


def _delimiter(path: Path) -> str:
    """The separator of the header line: ',' ';' or tab, as spreadsheets in different locales write."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def read_batch(path: Path | str) -> list[BatchRow]:
    """Read a batch file (``.csv``, ``.tsv``, ``.txt``, ``.xlsx``, ``.xls``).

    Raises
    ------
    BatchFileError
        The file is missing, not a table, or has none of the known columns.
    """
    import pandas as pd

    source = Path(path)
    if not source.is_file():
        raise BatchFileError(str(source), "the file does not exist")
    suffix = source.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            frame = pd.read_excel(source, dtype=object)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(
                source, dtype=str, sep=_delimiter(source), keep_default_na=False, encoding="utf-8-sig"
            )
        else:
            raise BatchFileError(str(source), f"unknown file type {suffix!r}: use .csv or .xlsx")
    except BatchFileError:
        raise
    except Exception as exc:  # pandas and openpyxl raise many types for unreadable files
        raise BatchFileError(str(source), f"cannot be read as a table: {exc}") from exc
    return rows_from_frame(frame, str(source))


def rows_from_frame(frame: Any, name: str = "table") -> list[BatchRow]:
    """Batch rows from a pandas DataFrame (first row of the sheet is the header, row 1)."""
    columns = {str(c): _COLUMN_KEYS.get(_key(str(c))) for c in frame.columns}
    used = {c: f for c, f in columns.items() if f is not None}
    if not used:
        known = ", ".join(BATCH_COLUMNS)
        raise BatchFileError(name, f"none of the columns {list(columns)} is known; use some of: {known}")
    rows = []
    for index, record in enumerate(frame.to_dict(orient="records")):
        filters = {f: _cell(record[c]) for c, f in used.items()}
        rows.append(BatchRow(row=index + 2, filters={k: v for k, v in filters.items() if v is not None}))
    return rows


def _describe(filters: Mapping[str, Any]) -> str:
    names = {v: k for k, v in BATCH_COLUMNS.items()}
    return ", ".join(f"{names.get(k, k)}={v}" for k, v in filters.items())


def _study_columns(study: StudyMatch) -> dict[str, Any]:
    return {
        "study_uid": study.study_uid,
        "patient_id": study.patient_id,
        "patient_name": study.patient_name,
        "patient_birth_date": study.patient_birth_date,
        "study_date": study.study_date,
        "accession_number": study.accession_number,
        "study_description": study.study_description,
        "modalities": study.modalities,
        "n_series": study.n_series,
        "n_instances": study.n_instances,
    }


def _query_row(client: PacsClient, row: BatchRow, limit: int | None) -> list[BatchMatch]:
    query = _describe(row.filters)
    if not row.filters:
        return [BatchMatch(row.row, "invalid", "empty row: give at least one of " + ", ".join(BATCH_COLUMNS))]
    study_filters = {k: v for k, v in row.filters.items() if k not in _SERIES_FILTERS}
    series_filters = {k: v for k, v in row.filters.items() if k in _SERIES_FILTERS}
    try:
        make_filters(**row.filters, limit=limit)
    except QueryFilterError as exc:
        return [BatchMatch(row.row, "invalid", str(exc), query)]
    if not study_filters:
        return [
            BatchMatch(
                row.row,
                "invalid",
                "a series description alone is too wide: add a patient, date or accession",
                query,
            )
        ]
    studies = client.find_studies(**study_filters, limit=limit)
    note = f"more than {limit} studies match; the first {limit} are listed" if studies.truncated else ""
    if not studies:
        return [BatchMatch(row.row, "not found", f"no study matches {query}", query)]
    out: list[BatchMatch] = []
    for study in studies:
        if not series_filters:
            out.append(BatchMatch(row.row, "found", note, query, **_study_columns(study)))
            continue
        series = client.find_series(study.study_uid, modality=row.filters.get("modality"), **series_filters)
        for s in series:
            out.append(
                BatchMatch(
                    row.row,
                    "found",
                    note,
                    query,
                    **_study_columns(study),
                    series_uid=s.series_uid,
                    series_description=s.series_description,
                    series_modality=s.modality,
                    series_instances=s.n_instances,
                )
            )
    if not out:
        return [BatchMatch(row.row, "not found", f"studies match, but no series matches {query}", query)]
    return out


def batch_query(
    client: PacsClient,
    source: Path | str | Iterable[BatchRow] | Any,
    limit_per_row: int | None = 100,
) -> QueryTable[BatchMatch]:
    """Run every row of a batch (file, DataFrame or rows) and gather one table.

    A row that cannot be queried, or the PACS refuses, gets ``status`` ``"invalid"`` or
    ``"error"`` and a message; the other rows still run. When the PACS cannot be reached at
    all, the remaining rows say so at once instead of each waiting for a timeout.

    Parameters
    ----------
    client : PacsClient
        Where to query.
    source : path, pandas.DataFrame or iterable of BatchRow
        The batch.
    limit_per_row : int, optional
        At most this many studies per row (the message says when there were more).
    """
    if isinstance(source, str | Path):
        rows = read_batch(source)
    elif hasattr(source, "to_dict") and hasattr(source, "columns"):
        rows = rows_from_frame(source)
    else:
        rows = list(source)
    results: list[BatchMatch] = []
    fatal: PacsError | None = None
    for row in rows:
        if fatal is not None:
            results.append(BatchMatch(row.row, "error", str(fatal), _describe(row.filters)))
            continue
        try:
            results.extend(_query_row(client, row, limit_per_row))
        except (PacsUnreachable, AssociationRejected) as exc:
            fatal = exc
            results.append(BatchMatch(row.row, "error", str(exc), _describe(row.filters)))
        except PacsError as exc:
            results.append(BatchMatch(row.row, "error", str(exc), _describe(row.filters)))
    return QueryTable("BATCH", results, BatchMatch)
