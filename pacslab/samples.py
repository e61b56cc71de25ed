"""Deterministic sample data: pydicom's shipped test series and synthetic phantoms.

Nothing here touches the network. The synthetic series are valid DICOM with UIDs derived from
fixed seeds, so two runs write byte-identical files:

* a CT of a 3-D Shepp-Logan-style head phantom in Hounsfield units (512x512, 120+ slices);
* a two-channel MR of the same phantom: a magnitude and a phase image at every position,
  one acquisition in one series.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = [
    "CT_PATIENT_ID",
    "MR_PATIENT_ID",
    "mr_phantom_datasets",
    "phantom_ct_datasets",
    "phantom_ct_volume",
    "pydicom_sample_files",
    "write_samples",
]

CT_PATIENT_ID = "PLAB-CT-0001"
MR_PATIENT_ID = "PLAB-MR-0001"
HU_OFFSET = 1024  # stored value = HU + 1024, RescaleIntercept = -1024
PIXEL_SPACING_MM = 0.5  # 256 mm field of view at 512 columns
SLICE_THICKNESS_MM = 1.5


@dataclass(frozen=True)
class _Ellipsoid:
    """One ellipsoid of the phantom, in normalised [-1, 1] coordinates; ``hu`` is painted over."""

    hu: float
    a: float
    b: float
    c: float
    x0: float = 0.0
    y0: float = 0.0
    z0: float = 0.0
    phi_deg: float = 0.0


# After Kak & Slaney's 3-D Shepp-Logan head, with absolute tissue values in HU painted in order.
_HEAD = (
    _Ellipsoid(1000.0, 0.69, 0.92, 0.81),  # skull
    _Ellipsoid(40.0, 0.6624, 0.874, 0.78, y0=-0.0184),  # brain
    _Ellipsoid(5.0, 0.11, 0.31, 0.22, x0=0.22, phi_deg=-18.0),  # right ventricle (CSF)
    _Ellipsoid(5.0, 0.16, 0.41, 0.28, x0=-0.22, phi_deg=18.0),  # left ventricle
    _Ellipsoid(60.0, 0.21, 0.25, 0.41, y0=0.35, z0=-0.15),  # lesion
    _Ellipsoid(75.0, 0.046, 0.046, 0.05, y0=0.1, z0=0.25),
    _Ellipsoid(75.0, 0.046, 0.046, 0.05, y0=-0.1, z0=0.25),
    _Ellipsoid(85.0, 0.046, 0.023, 0.05, x0=-0.08, y0=-0.605),
    _Ellipsoid(85.0, 0.023, 0.023, 0.02, y0=-0.606),
    _Ellipsoid(85.0, 0.023, 0.046, 0.02, x0=0.06, y0=-0.605),
)
_AIR_HU = -1000.0
_NOISE_HU = 8.0


def _phantom_slice(z: float, size: int, seed: int) -> np.ndarray:
    """HU values of one axial plane at normalised height ``z`` (float32, size x size)."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, -axis)  # y grows upwards, as on a radiological display
    image = np.full((size, size), _AIR_HU, dtype=np.float32)
    for e in _HEAD:
        dz = (z - e.z0) / e.c
        if abs(dz) >= 1.0:
            continue
        phi = np.deg2rad(e.phi_deg)
        xr = (x - e.x0) * np.cos(phi) + (y - e.y0) * np.sin(phi)
        yr = -(x - e.x0) * np.sin(phi) + (y - e.y0) * np.cos(phi)
        inside = (xr / e.a) ** 2 + (yr / e.b) ** 2 + dz**2 <= 1.0
        image[inside] = e.hu
    rng = np.random.default_rng(seed)
    return image + rng.normal(0.0, _NOISE_HU, image.shape).astype(np.float32)


def _heights(n_slices: int) -> np.ndarray:
    return np.linspace(-0.85, 0.85, n_slices, dtype=np.float32)


def phantom_ct_volume(n_slices: int = 120, size: int = 512) -> np.ndarray:
    """The CT phantom as int16 Hounsfield units, shape (z, y, x), deterministic."""
    if n_slices < 1 or size < 8:
        raise ValueError("A phantom needs at least 1 slice of at least 8x8 pixels.")
    volume = np.empty((n_slices, size, size), dtype=np.int16)
    for i, z in enumerate(_heights(n_slices)):
        volume[i] = np.clip(np.rint(_phantom_slice(float(z), size, seed=i)), -1024, 3071)
    return volume


def _uid(*parts: str) -> UID:
    return generate_uid(entropy_srcs=["pacslab-samples", *parts])


def _file_meta(sop_class: UID, sop_instance: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _common(ds: Dataset, *, patient: tuple[str, str, str, str], study: tuple[str, str, str, str]) -> None:
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyDescription, ds.AccessionNumber = study
    ds.StudyTime = "093000"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "pacslab"
    ds.InstitutionName = "pacslab phantom lab"
    ds.PositionReferenceIndicator = ""
    ds.SpecificCharacterSet = "ISO_IR 100"


def _geometry(ds: Dataset, index: int, n_slices: int, size: int, spacing: float, thickness: float) -> None:
    fov = size * spacing
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    z = (index - (n_slices - 1) / 2) * thickness
    ds.ImagePositionPatient = [-fov / 2 + spacing / 2, -fov / 2 + spacing / 2, round(z, 4)]
    ds.SliceLocation = round(z, 4)
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = thickness
    ds.SpacingBetweenSlices = thickness
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0


def phantom_ct_datasets(n_slices: int = 120, size: int = 512) -> Iterator[Dataset]:
    """The CT phantom as CT Image Storage datasets, one per slice, inferior to superior."""
    study_uid = _uid("ct", "study")
    series_uid = _uid("ct", "series", str(n_slices), str(size))
    frame_uid = _uid("ct", "frame", str(n_slices), str(size))
    spacing = PIXEL_SPACING_MM * 512 / size
    for i, z in enumerate(_heights(n_slices)):
        hu = np.clip(np.rint(_phantom_slice(float(z), size, seed=i)), -1024, 3071)
        sop_uid = _uid("ct", "instance", str(n_slices), str(size), str(i))
        ds = Dataset()
        ds.file_meta = _file_meta(CTImageStorage, sop_uid)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        _common(
            ds,
            patient=("Phantom^Shepp Logan", CT_PATIENT_ID, "19700101", "O"),
            study=(study_uid, "20240115", "CT HEAD PHANTOM", "PLABACC001"),
        )
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.SeriesDescription = "Axial head phantom"
        ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240115"
        ds.ContentTime = "093000"
        ds.FrameOfReferenceUID = frame_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = i + 1
        ds.AcquisitionNumber = 1
        ds.KVP = 120
        ds.BodyPartExamined = "HEAD"
        _geometry(ds, i, n_slices, size, spacing, SLICE_THICKNESS_MM)
        ds.RescaleIntercept = -HU_OFFSET
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = [40, 40, -600, 400]
        ds.WindowWidth = [80, 400, 1500, 1800]
        ds.WindowCenterWidthExplanation = ["BRAIN", "ABDOMEN", "LUNG", "BONE"]
        ds.PixelData = (hu + HU_OFFSET).astype("<u2").tobytes()
        yield ds


PHASE_LEVELS = 4096


def mr_phantom_datasets(n_slices: int = 32, size: int = 256) -> Iterator[Dataset]:
    """A two-channel MR: magnitude then phase image at every position, one acquisition.

    The phase is a smooth off-resonance field wrapped to [-pi, pi), stored in 12 bits with a
    rescale to radians; ImageType's third value (M or P) names the channel.
    """
    study_uid = _uid("mr", "study")
    series_uid = _uid("mr", "series", str(n_slices), str(size))
    frame_uid = _uid("mr", "frame", str(n_slices), str(size))
    spacing = PIXEL_SPACING_MM * 512 / size
    thickness = 3.0
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, -axis)
    for i, z in enumerate(_heights(n_slices)):
        hu = _phantom_slice(float(z), size, seed=1000 + i)
        # Soft tissue bright, bone and air dark: a crude T2-like contrast.
        magnitude = np.clip(np.where(hu > 500, 80.0, np.where(hu < -500, 0.0, 600.0 + 8.0 * hu)), 0, 4095)
        field = 2.5 * x + 1.5 * y**2 + 0.8 * float(z)
        phase = np.angle(np.exp(1j * field)).astype(np.float32)  # wrapped to (-pi, pi]
        stored_phase = np.clip(np.rint((phase + np.pi) / (2 * np.pi) * (PHASE_LEVELS - 1)), 0, 4095)
        for channel, (kind, pixels) in enumerate((("M", magnitude), ("P", stored_phase))):
            sop_uid = _uid("mr", "instance", str(n_slices), str(size), str(i), kind)
            ds = Dataset()
            ds.file_meta = _file_meta(MRImageStorage, sop_uid)
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = sop_uid
            _common(
                ds,
                patient=("Phantom^MR Complex", MR_PATIENT_ID, "19800202", "O"),
                study=(study_uid, "20240220", "MR HEAD PHANTOM", "PLABACC002"),
            )
            ds.Modality = "MR"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = 1
            ds.SeriesDescription = "GRE magnitude and phase"
            ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240220"
            ds.ContentTime = "101500"
            ds.FrameOfReferenceUID = frame_uid
            ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "ND"]
            ds.InstanceNumber = 2 * i + channel + 1
            ds.AcquisitionNumber = 1
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = 30.0
            ds.EchoTime = 10.0
            ds.EchoTrainLength = 1
            ds.MagneticFieldStrength = 3.0
            ds.BodyPartExamined = "HEAD"
            _geometry(ds, i, n_slices, size, spacing, thickness)
            if kind == "P":
                ds.RescaleIntercept = round(-np.pi, 6)
                ds.RescaleSlope = round(2 * np.pi / (PHASE_LEVELS - 1), 9)
                ds.RescaleType = "RAD"
            ds.PixelData = pixels.astype("<u2").tobytes()
            yield ds


def pydicom_sample_files() -> list[Path]:
    """pydicom's shipped dicomdirtests series (3 patients, 7 studies) plus CT_small and MR_small."""
    root = Path(pydicom.data.get_testdata_file("CT_small.dcm") or "").parent
    # The three patient folders hold the instances; DICOMDIR variants and READMEs are not images.
    names = ("DICOMDIR", "README")
    files = (root / "dicomdirtests").rglob("*")
    series = sorted(p for p in files if p.is_file() and not p.name.startswith(names))
    return [*series, root / "CT_small.dcm", root / "MR_small.dcm"]


def write_samples(
    dest: Path, ct_slices: int = 120, size: int = 512, mr_slices: int = 32
) -> dict[str, list[Path]]:
    """Write every sample series under ``dest`` and return the files per set.

    Keys: ``"pydicom"`` (dicomdirtests + CT_small + MR_small), ``"ct_phantom"``, ``"mr_phantom"``.
    """
    dest = Path(dest)
    written: dict[str, list[Path]] = {"pydicom": [], "ct_phantom": [], "mr_phantom": []}
    files = pydicom_sample_files()
    base = files[0].parents[0]
    while base.name != "dicomdirtests":
        base = base.parent
    for src in files:
        rel = src.relative_to(base) if base in src.parents else Path(src.name)
        target = dest / "pydicom" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        written["pydicom"].append(target)
    for key, datasets in (
        ("ct_phantom", phantom_ct_datasets(ct_slices, size)),
        ("mr_phantom", mr_phantom_datasets(mr_slices, max(size // 2, 8))),
    ):
        folder = dest / key
        folder.mkdir(parents=True, exist_ok=True)
        for ds in datasets:
            target = folder / f"{int(ds.InstanceNumber):04d}.dcm"
            ds.save_as(target, enforce_file_format=True)
            written[key].append(target)
    return written


def read_sample(path: Path) -> Dataset:
    """Read one sample file back (convenience for notebooks and tests)."""
    return pydicom.dcmread(path)
