"""De-identified copies (PS3.15 basic profile) with dicognito, and their pseudonym map.

dicognito replaces names, instance UIDs (consistently: the same original UID always maps to the
same new UID within one run, or across runs sharing a ``seed``), identifiers, addresses and
dates (shifted by one offset); the rest of the basic profile's attributes are removed, emptied
or replaced here (see :mod:`pacslab.export.basic_profile`). Private tags are removed unless
listed in ``keep_private``. Images whose Burned In Annotation is YES still carry identifying
text in their pixels and are held back, never exported.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pydicom
from dicognito.anonymizer import Anonymizer
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian

from pacslab.export.basic_profile import DUMMY, DUMMY_VALUE, EMPTY, REMOVE
from pacslab.export.errors import DeidentificationError

__all__ = [
    "DeidentifiedCopy",
    "HeldBack",
    "PrivateTag",
    "deidentified_copy",
    "deidentify_dataset",
    "write_pseudonym_map",
]

# What the pseudonym map records: enough to find the original patient, study and instance.
MAPPED_ATTRIBUTES = (
    "PatientID",
    "PatientName",
    "StudyDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)
PSEUDONYM_COLUMNS = ("attribute", "original", "pseudonym")


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


# CID 7050: what was done, in the standard's words.
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
_CLEAN_STRUCTURED_CONTENT = ("113104", "Clean Structured Content Option")


@dataclass(frozen=True)
class PrivateTag:
    """A private element allowed through: its creator string and its element offset (0x00-0xFF)."""

    group: int
    creator: str
    offset: int


@dataclass(frozen=True)
class HeldBack:
    """An instance not exported, and why."""

    sop_instance_uid: str
    reason: str


class DeidentifiedCopy(NamedTuple):
    """The de-identified datasets, the pseudonym map (attribute, original, pseudonym), what was held back."""

    datasets: list[Dataset]
    pseudonyms: pd.DataFrame
    held_back: list[HeldBack]


def _dummy(vr: str) -> object:
    """A dummy value of the element's VR (bytes padded to an even length)."""
    if vr == "SQ":
        return DicomSequence([Dataset()])
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"):
        return DUMMY_VALUE.encode("ascii") + b"\0"
    return DUMMY_VALUE


def _apply_profile(ds: Dataset) -> None:
    """Apply the profile's X/Z/D actions to ``ds`` and every nested item."""
    for keyword in REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in EMPTY:
        if keyword in ds:
            if dictionary_VR(tag_for_keyword(keyword) or 0) == "SQ":
                setattr(ds, keyword, DicomSequence([]))
            else:
                ds[keyword].value = None
    for keyword in DUMMY:
        if keyword in ds and ds[keyword].value not in (None, "", b""):
            ds[keyword].value = _dummy(ds[keyword].VR)
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _apply_profile(item)


def _strip_private(ds: Dataset, keep: Sequence[PrivateTag]) -> None:
    """Remove private elements not listed in ``keep`` (creators of kept ones stay), recursively."""
    kept_tags: set[BaseTag] = set()
    for wanted in keep:
        try:
            block = ds.private_block(wanted.group, wanted.creator)
        except KeyError:
            continue
        tag = block.get_tag(wanted.offset)
        if tag in ds:
            kept_tags.add(tag)
            kept_tags.add(BaseTag((wanted.group << 16) | (tag.element >> 8)))
    for tag in [t for t in list(ds.keys()) if t.is_private and t not in kept_tags]:
        del ds[tag]
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _strip_private(item, keep)


def _mark(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    codes = [_code(*c) for c in _METHOD_CODES]
    if "ContentSequence" in ds:
        codes.append(_code(*_CLEAN_STRUCTURED_CONTENT))
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    ds.DeidentificationMethod = "PS3.15 Basic Profile (dicognito, pacslab)"


def _encoded_copy(ds: Dataset) -> Dataset:
    """A copy as it would be read from a file.

    dicognito expects element values as pydicom reads them (strings for dates and times);
    objects built in memory (highdicom's) hold ``datetime`` values instead, so go through bytes.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # Headers rebuilt from DICOM JSON (the store's) carry no file meta: give the copy one.
        ds = copy.copy(ds)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _identity(ds: Dataset) -> dict[str, str]:
    return {keyword: str(ds.get(keyword, "") or "") for keyword in MAPPED_ATTRIBUTES}


def deidentify_dataset(ds: Dataset, anonymizer: Anonymizer, keep_private: Sequence[PrivateTag] = ()) -> None:
    """De-identify one dataset in place: dicognito, then the rest of the basic profile.

    Parameters
    ----------
    ds : pydicom.Dataset
        As read from a file (dicognito expects string dates); it is changed in place.
    anonymizer : dicognito.anonymizer.Anonymizer
        Shared by every dataset of one export, so UIDs and pseudonyms stay consistent.
    keep_private : sequence of PrivateTag
        Private elements allowed through; every other private element is removed.

    Raises
    ------
    DeidentificationError
        When dicognito cannot process a value (e.g. a malformed date).
    """
    uid = str(ds.get("SOPInstanceUID", "?"))  # named as the user knows it, before it is replaced
    try:
        anonymizer.anonymize(ds)
    except Exception as exc:  # dicognito raises whatever pydicom raises on a malformed value
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DeidentificationError(
            f"instance {uid} could not be de-identified "
            f"({type(exc).__name__}: {detail}); fix or drop that instance and export again"
        ) from exc
    _strip_private(ds, keep_private)
    _apply_profile(ds)
    _mark(ds)


def deidentified_copy(
    datasets: Iterable[Dataset],
    *,
    seed: str | None = None,
    keep_private: Sequence[PrivateTag] = (),
    id_prefix: str = "",
) -> DeidentifiedCopy:
    """Return de-identified copies of ``datasets`` (the originals are left untouched).

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Instances to export: images, SEG, SR; everything given is de-identified together, so
        references between them (a SEG's source images, an SR's SEG) stay consistent.
    seed : str, optional
        Secret that makes the pseudonyms repeatable across separate exports (same patient →
        same pseudonym). Keep it as secret as the data. Default: new pseudonyms on every call.
    keep_private : sequence of PrivateTag
        Private elements known to carry no identity (e.g. a vendor's reconstruction kernel);
        every other private element is removed.
    id_prefix : str
        Prefix for generated identifiers (e.g. a project code).

    Returns
    -------
    DeidentifiedCopy
        ``datasets`` (PatientIdentityRemoved = YES on each), ``pseudonyms`` (a DataFrame with
        columns attribute, original, pseudonym; it links back to the patient: store it as
        identifying data) and ``held_back`` (instances flagged BurnedInAnnotation = YES).

    Raises
    ------
    DeidentificationError
        When dicognito cannot process an instance; nothing is returned for the call.
    """
    anonymizer = Anonymizer(id_prefix=id_prefix, seed=seed)
    out: list[Dataset] = []
    held_back: list[HeldBack] = []
    pairs: dict[tuple[str, str], str] = {}
    for ds in datasets:
        uid = str(ds.get("SOPInstanceUID", "?"))
        if str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES":
            held_back.append(
                HeldBack(
                    uid,
                    "BurnedInAnnotation is YES: the pixels show identifying text; "
                    "redact it and set the flag to NO first",
                )
            )
            continue
        before = _identity(ds)
        clone = _encoded_copy(ds)
        deidentify_dataset(clone, anonymizer, keep_private)
        after = _identity(clone)
        for keyword in MAPPED_ATTRIBUTES:
            if before[keyword]:
                pairs.setdefault((keyword, before[keyword]), after[keyword])
        out.append(clone)
    pseudonyms = pd.DataFrame(
        [(keyword, original, new) for (keyword, original), new in pairs.items()],
        columns=list(PSEUDONYM_COLUMNS),
    )
    return DeidentifiedCopy(out, pseudonyms, held_back)


def write_pseudonym_map(pseudonyms: pd.DataFrame, path: Path | str) -> Path:
    """Append the pseudonym map to a CSV file (created with a header if new), atomically.

    The file links pseudonyms back to patients: keep it where identifying data is kept, not
    beside the de-identified export.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    table = pseudonyms
    if target.exists():
        previous = pd.read_csv(target, dtype=str, keep_default_na=False)
        table = pd.concat([previous, pseudonyms.astype(str)], ignore_index=True).drop_duplicates()
    partial = target.with_name(target.name + ".partial")
    table.to_csv(partial, index=False)
    partial.replace(target)
    return target
