"""File-set schemas: every problem listed in one error, nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacslab.ingest import FileSetSchema, FileSetViolation, ingest_paths
from pacslab.store import SliceStore
from tests.ingest.dicom_files import ct_datasets, write_ct, write_datasets, write_mr

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def violation(store: SliceStore, files: list[Path], schema: FileSetSchema) -> FileSetViolation:
    with pytest.raises(FileSetViolation) as caught:
        ingest_paths(store, files, schema=schema)
    assert store.list_series() == []
    assert not list((store.root / "series").rglob("*.h5*"))
    assert not any(store.inbox_dir.iterdir())
    return caught.value


def test_a_conforming_upload_is_stored(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    schema = FileSetSchema(
        min_files=8,
        max_files=8,
        max_file_bytes=1 << 20,
        sop_classes=(CT_IMAGE,),
        modalities=("CT",),
        single_series=True,
        consistent_geometry=True,
    )
    assert ingest_paths(store, files, schema=schema).n_instances == 8


def test_every_problem_is_listed(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct", n=3, size=16) + write_mr(tmp_path / "mr", n=1, size=16)
    schema = FileSetSchema(
        min_files=6,
        max_file_bytes=600,
        max_total_bytes=2000,
        modalities=("CT",),
        sop_classes=(CT_IMAGE,),
        single_series=True,
    )
    error = violation(store, files, schema)
    text = "\n".join(error.problems)
    assert "5 file(s) sent, at least 6 required" in text
    assert text.count("above the limit of 600 bytes per file") == 5
    assert "bytes in all" in text
    assert text.count("modality MR is not allowed") == 2
    assert text.count("is not allowed") == 4  # two modalities, two SOP classes
    assert "2 series sent, exactly one allowed" in text
    assert str(len(error.problems)) in str(error)


def test_too_many_files(store: SliceStore, tmp_path: Path) -> None:
    error = violation(store, write_ct(tmp_path / "ct", n=4, size=16), FileSetSchema(max_files=3))
    assert error.problems == ("4 files sent, at most 3 allowed",)


def test_inconsistent_geometry(store: SliceStore, tmp_path: Path) -> None:
    datasets = ct_datasets(5, 16)
    datasets[1].PixelSpacing = [0.5, 0.5]
    datasets[2].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    datasets[4].ImagePositionPatient = [*datasets[4].ImagePositionPatient[:2], 40.0]  # a gap
    error = violation(
        store, write_datasets(tmp_path / "ct", datasets), FileSetSchema(consistent_geometry=True)
    )
    text = "\n".join(error.problems)
    assert "pixel spacing" in text
    assert "orientation differs" in text
    assert "mixed orientation" in text
    assert "gap" in text


def test_uploaded_bytes_are_dropped_when_the_schema_refuses(store: SliceStore, tmp_path: Path) -> None:
    from pacslab.ingest import Ingest

    files = write_ct(tmp_path / "ct", n=2, size=16)
    ingest = Ingest(store, schema=FileSetSchema(min_files=3))
    for f in files:
        ingest.add_bytes(f.name, f.read_bytes())
    with pytest.raises(FileSetViolation):
        ingest.finish()
    assert not any(store.inbox_dir.iterdir())
