"""Item 14: a de-identified export of files full of patient data leaves none of it.

Three CT slices and a derived image referencing them carry a value in every attribute of PS3.15
Table E.1-1 (the test's own copy of the table), private elements of two creators, and one more
slice flagged BurnedInAnnotation YES. They are exported de-identified to a folder the way a
user does it; the files written are then read back and searched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from pacslab.export import PrivateTag, deidentified_export
from tests.reliability.basic_profile_table import BASIC_PROFILE
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import PREFIX, image

ITEM = 14
SECRET = "SECRET"
SAFE = PrivateTag(0x0013, "SAFE CREATOR", 0x01)

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep"),
    # dicognito asks for a matching "...Time" keyword of every date, also ones DICOM lacks.
    pytest.mark.filterwarnings("ignore:Invalid value '.*' used with the 'in' operator:UserWarning"),
]


# Sequences the profile may keep with their content (references with their UIDs replaced; a
# report's content, cleaned): only identifiers the table itself names go into them.
KEPT_SEQUENCES = {0x00081140, 0x00082112, 0x0040A730}


def _value(tag: int, vr: str) -> Any:
    """An identifying value for ``tag`` that can be recognised wherever it ends up."""
    code = f"{tag:08X}"
    texts = {"LO", "SH", "ST", "LT", "UT", "UC", "UR"}
    if vr in texts:
        return f"{SECRET} {code}"
    if vr == "PN":
        return f"{SECRET}^{code}"
    if vr == "CS":
        return f"S{code}"
    if vr == "AE":
        return f"SEC{code}"
    if vr == "DA":
        return "19620714"
    if vr == "TM":
        return "101112.131415"
    if vr == "DT":
        return "19620714101112"
    if vr == "UI":
        return generate_uid(PREFIX)
    if vr == "AS":
        return "042Y"
    if vr == "DS":
        return "123.456"
    if vr == "IS":
        return "424242"
    if vr in ("US", "SS", "UL"):
        return 4242
    if vr == "OB":
        return f"{SECRET}{code}".encode()
    if vr == "SQ":
        item = Dataset()
        item.PersonName = f"{SECRET}^Nested{code}"
        if tag not in KEPT_SEQUENCES:
            item.CodeValue = f"{SECRET}{code}"[:16]
            item.CodingSchemeDesignator = "99SECRET"
            item.CodeMeaning = f"{SECRET} {code} meaning"
        return Sequence([item])
    raise AssertionError(f"no value for VR {vr}")


KEEP_AS_IS = {0x00080018, 0x0020000D, 0x0020000E, 0x00200052}  # set by image() per instance


def _rich(ds: Dataset, uids: dict[int, str]) -> Dataset:
    """``ds`` with every table attribute filled (UIDs shared across the instances via ``uids``)."""
    for tag, _ in sorted(BASIC_PROFILE.items()):
        if tag in KEEP_AS_IS or tag >> 16 in (0x7FE0, 0xFFFA, 0xFFFC):
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        value = uids.setdefault(tag, generate_uid(PREFIX)) if vr == "UI" else _value(tag, vr)
        ds.add_new(tag, vr, value)
    ds.FrameOfReferenceUID = uids.setdefault(0x00200052, generate_uid(PREFIX))
    for creator, group, text in (
        ("SECRET CREATOR", 0x0011, f"{SECRET} private"),
        (SAFE.creator, SAFE.group, "safe"),
    ):
        block = ds.private_block(group, creator, create=True)
        block.add_new(0x01, "LO", text)
    ds.private_block(0x0011, "SECRET CREATOR").add_new(0x02, "PN", f"{SECRET}^Private")
    return ds


def _walk(ds: Dataset) -> Iterator[tuple[int, Any]]:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield from _walk(item)
        else:
            yield element.tag, element.value


def _sources() -> tuple[list[Dataset], Dataset]:
    uids: dict[int, str] = {}
    series_uid, study_uid = generate_uid(PREFIX), generate_uid(PREFIX)
    slices = [
        _rich(image(8, 8, series_uid=series_uid, study_uid=study_uid, position=(0, 0, i), number=i + 1), uids)
        for i in range(3)
    ]
    derived = _rich(image(8, 8, study_uid=study_uid, number=1), uids)
    reference = Dataset()
    reference.ReferencedSOPClassUID = slices[0].SOPClassUID
    reference.ReferencedSOPInstanceUID = slices[0].SOPInstanceUID
    derived.SourceImageSequence = Sequence([reference])
    burned = _rich(
        image(8, 8, series_uid=series_uid, study_uid=study_uid, position=(0, 0, 9), number=9), uids
    )
    burned.BurnedInAnnotation = "YES"
    return [*slices, derived], burned


def test_nothing_identifying_survives_the_export(tmp_path: Path, figures: Figures) -> None:
    sources, burned = _sources()
    originals = {tag: value for ds in [*sources, burned] for tag, value in _walk(ds) if tag in BASIC_PROFILE}
    export = deidentified_export(
        [*sources, burned],
        tmp_path / "private" / "pseudonyms.csv",
        folder=tmp_path / "export",
        keep_private=[SAFE],
    )
    written = sorted((tmp_path / "export").rglob("*.dcm"))
    out = [pydicom.dcmread(p) for p in written]

    left: list[str] = []
    secret_anywhere: list[str] = []
    unlisted_private: list[str] = []
    for ds in out:
        for tag, value in _walk(ds):
            text = str(value.decode("latin-1") if isinstance(value, bytes) else value)
            if SECRET in text:
                secret_anywhere.append(f"{tag:08X}")
            if (
                tag in BASIC_PROFILE
                and tag in originals
                and value not in (None, "", b"")
                and value == originals[tag]
            ):
                left.append(f"{tag:08X} {BASIC_PROFILE[tag]}")
        for element in ds:
            if element.tag.is_private and element.tag.group != SAFE.group:
                unlisted_private.append(f"{element.tag}")
        for _, value in _walk(ds.file_meta):
            if value == originals.get(0x00080018):
                left.append("file meta")
    by_sop = {str(ds.SOPInstanceUID): ds for ds in out}
    studies = {str(ds.StudyInstanceUID) for ds in out}
    series: dict[str, list[Dataset]] = {}
    for ds in out:
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    [slices] = [group for group in series.values() if len(group) == 3]
    [[derived]] = [group for group in series.values() if len(group) == 1]
    referenced = str(derived.SourceImageSequence[0].ReferencedSOPInstanceUID)
    consistent = (
        len(studies) == 1
        and len({str(ds.SeriesInstanceUID) for ds in slices}) == 1
        and len({str(ds.FrameOfReferenceUID) for ds in out}) == 1
        and referenced in by_sop
        and studies.isdisjoint({str(sources[0].StudyInstanceUID)})
    )
    kept_private = [ds.private_block(SAFE.group, SAFE.creator)[SAFE.offset].value for ds in out]

    figures("instances written / held back (BurnedInAnnotation YES)", (len(written), len(export.held_back)))
    figures("table E.1-1 attributes filled per instance", len(originals))
    figures("values left in basic-profile attributes", len(left))
    figures("elements still holding an identifying string", len(secret_anywhere))
    figures("unlisted private elements", len(unlisted_private))
    figures("UID remapping consistent (study, series, frame of reference, references)", consistent)
    figures(
        "PatientIdentityRemoved YES", f"{sum(ds.PatientIdentityRemoved == 'YES' for ds in out)} of {len(out)}"
    )
    assert len(written) == len(sources) == export.n_exported
    assert [h.sop_instance_uid for h in export.held_back] == [str(burned.SOPInstanceUID)]
    assert str(burned.SOPInstanceUID) not in {str(ds.SOPInstanceUID) for ds in out}
    assert left == []
    assert secret_anywhere == []
    assert unlisted_private == []
    assert kept_private == ["safe"] * len(out)
    assert consistent
    assert all(ds.PatientIdentityRemoved == "YES" for ds in out)
    assert not (tmp_path / "export" / "pseudonyms.csv").exists()
