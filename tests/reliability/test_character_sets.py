"""Item 4: patient names in every character set pydicom ships, as DCMTK decodes them.

Each of pydicom's charset files (given a small image where it has none, its name bytes
untouched) is ingested; the name in the catalog, in the stored header and in the study
browser must equal what ``dcmdump +U8`` decodes from the same file. Where DCMTK cannot decode
a character set (Debian's DCMTK uses glibc iconv, which lacks ISO 2022 IR 87), the figure says
so and the name is compared with pydicom's instead.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.uid import generate_uid

from pacslab.ingest import ingest_paths
from pacslab.store import SliceStore
from tests.conftest import require_tool
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import PREFIX
from widgets import StudyBrowser
from widgets.table import format_cell

ITEM = 4
_DCMDUMP_NAME = re.compile(r"^\(0010,0010\) PN \[(.*)\]\s+#", re.MULTILINE)

pytestmark = pytest.mark.dcmtk


def normalised(name: str) -> str:
    """A person name without empty trailing components or component groups (PS3.5 6.2)."""
    groups = [group.rstrip("^") for group in name.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _ingestible_copy(source: Path, folder: Path) -> Path:
    """The file with new UIDs and, if it has none, an 8x8 image; its name bytes are not touched."""
    ds = pydicom.dcmread(source)
    raw_name = ds.get_item("PatientName").value
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(PREFIX), generate_uid(PREFIX)
    ds.SOPInstanceUID = generate_uid(PREFIX)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "PixelData" not in ds:
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.arange(64, dtype=np.uint8).tobytes()
        ds["PixelData"].VR = "OB"
    target = folder / source.name
    ds.save_as(target)
    assert pydicom.dcmread(target).get_item("PatientName").value == raw_name
    return target


def _dcmtk_name(dcmdump: str, path: Path) -> str | None:
    out = subprocess.run([dcmdump, "+U8", str(path)], capture_output=True, text=True, check=False)
    found = _DCMDUMP_NAME.search(out.stdout)
    return found.group(1) if found and "is not supported" not in out.stdout + out.stderr else None


def test_patient_names_equal_what_dcmtk_decodes(tmp_path: Path, figures: Figures) -> None:
    dcmdump = require_tool("dcmdump", "dcmtk")
    sources = [
        Path(p)
        for p in sorted(get_charset_files("*.dcm"))
        if "PatientName" in pydicom.dcmread(p, stop_before_pixels=True)
    ]
    copies = [_ingestible_copy(p, tmp_path) for p in sources]
    store = SliceStore(tmp_path / "store")
    report = ingest_paths(store, copies)
    assert report.rejected == []

    browser = StudyBrowser(store)
    browser.search()
    assert browser.wait(30)
    shown = {row["study_uid"]: row["patient_name"] for row in browser.study_table.rows}
    labels = list(browser.study_table.picker.options)

    differ: dict[str, tuple[str, ...]] = {}
    not_decoded_by_dcmtk = []
    for path in copies:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        reference = _dcmtk_name(dcmdump, path)
        if reference is None:
            not_decoded_by_dcmtk.append(f"{path.name} ({ds.SpecificCharacterSet})")
            reference = str(ds.PatientName)
        [study] = [s for s in store.list_studies() if s.study_uid == ds.StudyInstanceUID]
        header = store.read_header(ds.SeriesInstanceUID, 0)
        seen = (study.patient_name, str(header.PatientName), shown[ds.StudyInstanceUID])
        if any(normalised(name) != normalised(reference) for name in seen):
            differ[path.name] = (reference, *seen)
        label = format_cell(shown[ds.StudyInstanceUID], 22)
        assert any(text.startswith(label) for text, key in labels if key == ds.StudyInstanceUID)

    figures("charset files with a patient name", len(copies))
    figures(
        "names equal to DCMTK's in the catalog, the stored header and the browser", len(copies) - len(differ)
    )
    figures("files DCMTK (glibc iconv) cannot decode, checked against pydicom", not_decoded_by_dcmtk)
    assert differ == {}
    assert len(not_decoded_by_dcmtk) < len(copies) / 2  # DCMTK does decode most of them


def test_name_normalisation() -> None:
    assert normalised("Wang^XiaoDong=王^小东=") == "Wang^XiaoDong=王^小东"
    assert normalised("Doe^John^^^") == "Doe^John"
    assert normalised("Doe^John") != normalised("Doe^Jon")
