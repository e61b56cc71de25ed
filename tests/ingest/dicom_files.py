"""Small DICOM series written for the store and ingest tests."""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
from pydicom import Dataset

from pacslab.samples import mr_phantom_datasets, phantom_ct_datasets

CT_SLICES = 8
CT_SIZE = 64


def ct_datasets(n: int = CT_SLICES, size: int = CT_SIZE) -> list[Dataset]:
    """The CT phantom, one dataset per slice, inferior to superior."""
    return list(phantom_ct_datasets(n, size))


def write_datasets(folder: Path, datasets: list[Dataset], *, shuffle_names: bool = False) -> list[Path]:
    """Save datasets as DICOM files; with ``shuffle_names`` file names do not follow position."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(datasets)))
    if shuffle_names:
        random.Random(7).shuffle(order)
    paths = []
    for name_index, ds in zip(order, datasets, strict=True):
        path = folder / f"{name_index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_ct(
    folder: Path, n: int = CT_SLICES, size: int = CT_SIZE, *, shuffle_names: bool = False
) -> list[Path]:
    """The CT phantom as files in ``folder`` (returned in slice order)."""
    return write_datasets(folder, ct_datasets(n, size), shuffle_names=shuffle_names)


def write_mr(folder: Path, n: int = 4, size: int = 32) -> list[Path]:
    """The two-channel MR phantom (magnitude and phase at each position)."""
    return write_datasets(folder, list(mr_phantom_datasets(n, size)))


def pixels(path: Path) -> object:
    """What pydicom decodes for a file (the reference for stored pixels)."""
    return pydicom.dcmread(path).pixel_array
