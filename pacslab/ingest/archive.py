"""Folders and zip archives → files to ingest, with zip paths and sizes checked."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pacslab.ingest.errors import DecompressionBomb, IngestError, NotDicom, ZipPathEscape
from pacslab.ingest.limits import IngestLimits
from pacslab.ingest.spool import Spool

__all__ = ["ZipMember", "is_zip", "member_path_problem", "walk_folder", "zip_members"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipMember:
    """A zip member spooled to disk (``path``) or refused (``error``)."""

    name: str
    path: Path | None
    error: IngestError | None = None


def walk_folder(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` in a stable order; symlinked folders are not followed."""
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            yield Path(current) / name


def is_zip(path: Path) -> bool:
    """A ``.zip`` file (by name; DICOM files may carry any bytes in their preamble)."""
    return path.suffix.lower() == ".zip"


def member_path_problem(name: str) -> str | None:
    """Why a member name would leave the archive's folder, or None when it is safe."""
    if "\x00" in name:
        return "its name contains a NUL character"
    normalised = name.replace("\\", "/")
    pure = PurePosixPath(normalised)
    if pure.is_absolute() or (len(normalised) > 1 and normalised[1] == ":"):
        return "its path is absolute"
    if ".." in pure.parts:
        return "its path climbs out of the archive with '..'"
    return None


def zip_members(archive: Path, label: str, spool: Spool, limits: IngestLimits) -> Iterator[ZipMember]:
    """Spool each regular member of a zip, refusing escapes and bombs member by member."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        yield ZipMember(label, None, NotDicom(label, f"not a readable zip archive ({exc})"))
        return
    total = 0
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > limits.max_zip_members:
            yield ZipMember(
                label,
                None,
                DecompressionBomb(label, f"{len(infos)} members, above the cap of {limits.max_zip_members}"),
            )
            return
        for info in infos:
            name = f"{label}!{info.filename}"
            problem = member_path_problem(info.filename)
            if problem:
                yield ZipMember(name, None, ZipPathEscape(name, problem))
                continue
            if info.file_size > limits.max_zip_member_bytes:
                yield ZipMember(
                    name,
                    None,
                    DecompressionBomb(name, f"declares {info.file_size} bytes, above the member cap"),
                )
                continue
            path = spool.new_path()
            written = 0
            refusal: IngestError | None = None
            try:
                with zf.open(info) as src, path.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if (
                            written > limits.max_zip_member_bytes
                            or total + written > limits.max_zip_total_bytes
                        ):
                            refusal = DecompressionBomb(name, "expands beyond the zip size cap")
                            break
                        out.write(chunk)
            except (
                zipfile.BadZipFile,
                RuntimeError,
                ValueError,
                NotImplementedError,
                OSError,
                EOFError,
            ) as exc:
                # RuntimeError: encrypted member; NotImplementedError: unknown compression.
                refusal = NotDicom(name, f"cannot be read from the archive ({exc})")
            if refusal is not None:
                path.unlink(missing_ok=True)
                yield ZipMember(name, None, refusal)
                continue
            total += written
            yield ZipMember(name, path)
