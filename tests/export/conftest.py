"""Fixtures for the export tests: a small phantom CT series and the reference DICOM tools."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt

from pacslab.config import PacsNode
from pacslab.samples import mr_phantom_datasets, phantom_ct_datasets

N_SLICES = 8
SIZE = 64


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package {package!r}); the export tests need it")
    return path


@pytest.fixture
def ct_sources() -> list[Dataset]:
    """8 slices of the 64x64 phantom CT (stored = HU + 1024, RescaleIntercept -1024)."""
    return list(phantom_ct_datasets(N_SLICES, SIZE))


@pytest.fixture
def ct_hu(ct_sources: list[Dataset]) -> np.ndarray:
    """The phantom's values in HU, float32 (slices, rows, columns)."""
    return np.stack(
        [
            ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            for ds in ct_sources
        ]
    )


@pytest.fixture
def mr_magnitude_sources() -> list[Dataset]:
    """The magnitude images of a small two-channel MR phantom."""
    return [ds for ds in mr_phantom_datasets(4, 32) if ds.ImageType[2] == "M"]


@dataclass(frozen=True)
class Validation:
    """What dciodvfy said about one file."""

    path: Path
    errors: list[str]
    warnings: list[str]


@pytest.fixture(scope="session")
def dciodvfy() -> Callable[[Path], Validation]:
    """Run dicom3tools' validator on a file; returns its Error and Warning lines."""
    exe = _tool("dciodvfy", "dicom3tools")

    def run(path: Path) -> Validation:
        done = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60, check=False)
        lines = (done.stdout + done.stderr).splitlines()
        validation = Validation(
            path,
            [line for line in lines if line.startswith("Error")],
            [line for line in lines if line.startswith("Warning")],
        )
        for line in validation.warnings:
            print(f"dciodvfy {path.name}: {line}")  # warnings are allowed; keep them visible
        return validation

    return run


@pytest.fixture(scope="session")
def dcmdump() -> Callable[[Path], str]:
    """DCMTK's dump of a file, as text."""
    exe = _tool("dcmdump", "dcmtk")

    def run(path: Path) -> str:
        done = subprocess.run(
            [exe, "-q", "+L", str(path)], capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout

    return run


def _save_all(datasets: Sequence[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def save_all() -> Callable[[Sequence[Dataset], Path], list[Path]]:
    """Write datasets as DICOM files named after their SOP Instance UID."""
    return _save_all


@dataclass
class RefusingScp:
    """A real Storage SCP on loopback that refuses (0xA700) instances whose InstanceNumber is 1."""

    node: PacsNode
    received: list[str]


@pytest.fixture
def refusing_scp() -> Iterator[RefusingScp]:
    """Stands for a PACS that is out of space for some instances."""
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        if int(ds.get("InstanceNumber", 0) or 0) == 1:
            return 0xA700  # Refused: out of resources
        received.append(str(ds.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="REFUSER")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        port = int(server.server_address[1])
        yield RefusingScp(PacsNode(name="refuser", ae_title="REFUSER", host="127.0.0.1", port=port), received)
    finally:
        server.shutdown()
