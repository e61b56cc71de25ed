"""Sample data: deterministic, valid DICOM, the geometry and values a user relies on."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pacslab.cli import main
from pacslab.samples import mr_phantom_datasets, phantom_ct_datasets, phantom_ct_volume, write_samples
from tests.conftest import require_tool


def _digest(paths: list[Path]) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()


def test_samples_are_deterministic(tmp_path: Path) -> None:
    first = write_samples(tmp_path / "a", ct_slices=4, size=32, mr_slices=2)
    second = write_samples(tmp_path / "b", ct_slices=4, size=32, mr_slices=2)
    for key in first:
        assert _digest(first[key]) == _digest(second[key]), key


def test_pydicom_series_has_three_patients_seven_studies(samples: dict[str, list[Path]]) -> None:
    series = [p for p in samples["pydicom"] if p.name not in {"CT_small.dcm", "MR_small.dcm"}]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in series]
    assert len(headers) == 81
    assert len({h.PatientID for h in headers}) == 3
    assert len({h.StudyInstanceUID for h in headers}) == 7
    assert len({h.SeriesInstanceUID for h in headers}) == 14
    assert len(samples["pydicom"]) == 83


def test_ct_phantom_geometry_and_hounsfield_units() -> None:
    datasets = list(phantom_ct_datasets(n_slices=6, size=64))
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.allclose(np.diff(z), float(datasets[0].SliceThickness))
    assert float(datasets[0].PixelSpacing[0]) * 64 == pytest.approx(256.0)
    middle = datasets[3]
    hu = middle.pixel_array.astype(np.int32) * int(middle.RescaleSlope) + int(middle.RescaleIntercept)
    assert hu[0, 0] == pytest.approx(-1000, abs=40)  # air in the corner
    assert hu[32, 32] == pytest.approx(40, abs=40)  # brain in the middle
    assert hu.max() > 900  # skull
    assert list(middle.WindowCenterWidthExplanation) == ["BRAIN", "ABDOMEN", "LUNG", "BONE"]


def test_volume_matches_the_datasets() -> None:
    volume = phantom_ct_volume(n_slices=3, size=32)
    for i, ds in enumerate(phantom_ct_datasets(n_slices=3, size=32)):
        assert np.array_equal(ds.pixel_array.astype(np.int32) - 1024, volume[i])


def test_mr_phantom_pairs_magnitude_and_phase_at_each_position() -> None:
    datasets = list(mr_phantom_datasets(n_slices=3, size=32))
    assert [ds.ImageType[2] for ds in datasets] == ["M", "P"] * 3
    for magnitude, phase in zip(datasets[::2], datasets[1::2], strict=True):
        assert magnitude.ImagePositionPatient == phase.ImagePositionPatient
        assert magnitude.AcquisitionNumber == phase.AcquisitionNumber
        radians = phase.pixel_array * float(phase.RescaleSlope) + float(phase.RescaleIntercept)
        assert radians.min() >= -np.pi - 1e-3
        assert radians.max() <= np.pi + 1e-3


@pytest.mark.parametrize("kind", ["ct_phantom", "mr_phantom"])
def test_phantoms_validate_with_dciodvfy(tmp_path: Path, kind: str) -> None:
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    files = write_samples(tmp_path, ct_slices=2, size=32, mr_slices=1)[kind]
    result = subprocess.run([dciodvfy, str(files[0])], capture_output=True, text=True, check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_cli_writes_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples", str(tmp_path), "--ct-slices", "3", "--size", "32"]) == 0
    assert "ct_phantom: 3 files" in capsys.readouterr().out
    assert len(list((tmp_path / "ct_phantom").glob("*.dcm"))) == 3
