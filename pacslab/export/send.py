"""Exported datasets to a folder or to a PACS (C-STORE or STOW-RS through a PacsClient)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import Dataset

from pacslab.export.deidentify import HeldBack, PrivateTag, deidentified_copy, write_pseudonym_map
from pacslab.export.errors import EmptyResult, ExportError, SendIncomplete

if TYPE_CHECKING:
    from pacslab.pacs.client import PacsClient, StoreStatus

__all__ = ["DeidentifiedExport", "deidentified_export", "send_to_pacs", "write_folder"]

# PS3.5 9.1: digits and dots, no empty component, at most 64 characters. Only such a value may
# name a file: anything else ('..', '/', NUL) could place it outside the folder.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def _file_name_uid(ds: Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "")
    if len(value) > 64 or not _UID.fullmatch(value):
        raise ExportError(
            f"{keyword} {value[:80]!r} is not a valid UID (digits and dots, at most 64 characters), so it "
            "cannot name a file; nothing was written. Export de-identified copies, which get new UIDs, "
            "or correct the UID at its source"
        )
    return value


def write_folder(datasets: Sequence[Dataset], folder: Path | str) -> list[Path]:
    """Write each dataset as ``folder/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.

    Files are written under a temporary name and renamed, so a reader never sees half a file;
    writing the same result again replaces the same files (the UIDs are deterministic). Every
    UID is checked before anything is written.

    Returns
    -------
    list of pathlib.Path
        One path per dataset, in order.

    Raises
    ------
    ExportError
        A Series or SOP Instance UID is not a valid UID (nothing is written then), or a file
        cannot be written.
    """
    root = Path(folder)
    targets = [
        root / _file_name_uid(ds, "SeriesInstanceUID") / f"{_file_name_uid(ds, 'SOPInstanceUID')}.dcm"
        for ds in datasets
    ]
    paths: list[Path] = []
    for ds, target in zip(datasets, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            ds.save_as(partial, enforce_file_format=True)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ExportError(
                f"cannot write {target}: {exc}; check the folder's space and permissions"
            ) from exc
        partial.replace(target)
        paths.append(target)
    return paths


def send_to_pacs(
    client: PacsClient, datasets: Sequence[Dataset], *, raise_on_failure: bool = True
) -> list[StoreStatus]:
    """Send datasets with the client's ``store`` (C-STORE or STOW-RS) and check every status.

    Parameters
    ----------
    client : PacsClient
        From :func:`pacslab.pacs.connect_pacs`.
    datasets : sequence of pydicom.Dataset
        What to send (SEG, derived images, SR...). Sending the same export again is
        idempotent: its UIDs are the same, so the PACS replaces rather than duplicates.
    raise_on_failure : bool
        Raise :class:`SendIncomplete` (holding every status) when the PACS refused any instance.

    Returns
    -------
    list of StoreStatus
        One per dataset, in order.
    """
    if not datasets:
        raise EmptyResult("nothing to send: the export produced no instances")
    statuses = client.store(list(datasets))
    failed = [f"{s.sop_instance_uid or '?'}: {s.meaning}" for s in statuses if not s.ok]
    if failed and raise_on_failure:
        raise SendIncomplete(statuses, failed)
    return statuses


@dataclass
class DeidentifiedExport:
    """What a de-identified export wrote or sent, what it held back, and where the map is."""

    n_exported: int
    held_back: list[HeldBack]
    pseudonym_map: Path
    paths: list[Path] = field(default_factory=list)
    statuses: list[StoreStatus] = field(default_factory=list)


def deidentified_export(
    datasets: Sequence[Dataset],
    pseudonym_map: Path | str,
    *,
    folder: Path | str | None = None,
    client: PacsClient | None = None,
    seed: str | None = None,
    keep_private: Sequence[PrivateTag] = (),
) -> DeidentifiedExport:
    """De-identify ``datasets`` together and write them to a folder and/or send them to a PACS.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        Source images and results; de-identified together so their references stay consistent.
    pseudonym_map : path-like
        CSV the (attribute, original, pseudonym) rows are appended to. It re-identifies the
        patients: keep it with identifying data, not beside the export.
    folder, client
        Destinations; at least one.
    seed : str, optional
        Secret making pseudonyms repeatable across exports (see :func:`deidentified_copy`).
    keep_private : sequence of PrivateTag
        Private elements allowed through.

    Returns
    -------
    DeidentifiedExport
    """
    if folder is None and client is None:
        raise ExportError("a de-identified export needs a destination: pass folder=..., client=... or both")
    result = deidentified_copy(datasets, seed=seed, keep_private=keep_private)
    map_path = write_pseudonym_map(result.pseudonyms, pseudonym_map)
    exported = DeidentifiedExport(len(result.datasets), result.held_back, map_path)
    if not result.datasets:
        return exported
    if folder is not None:
        exported.paths = write_folder(result.datasets, folder)
    if client is not None:
        exported.statuses = send_to_pacs(client, result.datasets)
    return exported
