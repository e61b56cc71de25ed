"""Ingest files one by one as uploads and check the store after each; run as a child process.

``python -m tests.reliability.ingest_worker MANIFEST START WORKDIR`` reads a JSON list of
``{"name", "path", "original"}`` and, from index START, uploads each file
(``Ingest.add_bytes``) into an empty store of its own under WORKDIR. Before each file it
prints ``{"start": i}`` and after it one JSON line with the outcome, so the parent can tell a
crash (the process died) or a hang (no line for too long) from an answer. After each file it
checks the store:

* partial writes: a rejected file left something (a catalog series, a series file, inbox
  files), or an accepted one left an incomplete series;
* wrong answers: a rejection that is not exactly one named
  :class:`~pacslab.ingest.IngestError`, or an accepted file whose planes differ from what
  pydicom decodes (for a mutant whose file meta pydicom refuses to read: from its dataset
  behind the original's file meta).

It also records what pydicom alone does with the file (decodes it, with or without warnings,
or which exception it raises), for comparison.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from pacslab.ingest import Ingest, IngestError, IngestReport
from pacslab.store import SliceStore
from tests.reliability.corpus import meta_end


def _pydicom_alone(data: bytes) -> tuple[str, np.ndarray | None]:
    """What ``dcmread(...).pixel_array`` makes of the bytes: the outcome and the pixels by frame."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            pixels = np.asarray(ds.pixel_array)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception as exc:
            return type(exc).__name__, None
    # One leading axis of frames, also for a single frame.
    return ("decoded with warnings" if caught else "decoded"), pixels if frames > 1 else pixels[None]


def _leftovers(store: SliceStore, *folders: str) -> list[str]:
    return [
        str(p.relative_to(store.root))
        for d in folders or ("series", "inbox")
        for p in (store.root / d).rglob("*")
        if p.is_file()
    ]


def _check_accepted(
    store: SliceStore, report: IngestReport, reference: np.ndarray | None
) -> tuple[list[str], list[str]]:
    """(partial-write problems, wrong-pixel problems) of an accepted file."""
    if len(report.series_uids) != 1 or len(store.list_series()) != 1:
        return [f"one file gave series {report.series_uids}, catalog {len(store.list_series())}"], []
    series_uid = report.series_uids[0]
    info = store.series(series_uid)
    partial = (
        [] if info.complete and not _leftovers(store, "inbox") else ["incomplete series or inbox leftovers"]
    )
    if reference is None:
        return partial, ["accepted although pydicom cannot decode its image"]
    problems: list[str] = []
    if info.n_slices != reference.shape[0]:
        problems.append(f"{info.n_slices} planes stored for {reference.shape[0]} frames")
    for record in store.instances(series_uid):
        plane = store.read_plane(series_uid, record.slice_index)
        frame = reference[record.frame - 1]
        if plane.shape != frame.shape:
            problems.append(f"plane {record.frame} stored as {plane.shape}, decoded {frame.shape}")
        elif not np.array_equal(plane, frame):
            problems.append(f"plane {record.frame} differs from the decoded pixels")
    return partial, problems


def ingest_one(template: Path, root: Path, name: str, data: bytes, original: bytes | None) -> dict[str, Any]:
    """Upload one file into an empty store at ``root`` and check what it left there."""
    shutil.copytree(template, root)
    store = SliceStore(root)
    started = time.perf_counter()
    try:
        with Ingest(store) as ingest:
            ingest.add_bytes(name, data)
        report = ingest.report
        assert report is not None
    except BaseException as exc:  # anything escaping the ingest is what the suite counts as a crash
        return {
            "outcome": "crash",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-2000:],
            "seconds": time.perf_counter() - started,
        }
    seconds = time.perf_counter() - started
    alone, pixels = _pydicom_alone(data)
    partial: list[str] = []
    wrong: list[str] = []
    if report.rejected:
        errors = [r.error for r in report.rejected]
        if len(errors) != 1 or report.n_instances or not all(isinstance(e, IngestError) for e in errors):
            wrong.append(f"{report.n_instances} instances and rejections {errors!r} for one file")
        leftovers = _leftovers(store)
        if store.list_series() or leftovers:
            partial.append(f"rejected, yet stored: {len(store.list_series())} series, files {leftovers}")
        outcome = {"outcome": "rejected", "error": type(errors[0]).__name__, "message": str(errors[0])}
    else:
        reference = pixels
        repaired = None
        if reference is None and original is not None and len(original) == len(data):
            # pydicom may give up on a damaged file meta that the ingest reads past: decode the
            # same dataset behind the original's file meta instead.
            end = meta_end(original)
            repaired = _pydicom_alone(original[:end] + data[end:])[1]
            reference = repaired
        try:
            partial, wrong = _check_accepted(store, report, reference)
        except Exception as exc:  # the stored series cannot be read back: a problem to report
            partial.append(f"stored series cannot be read back: {type(exc).__name__}: {exc}")
        outcome = {"outcome": "accepted", "meta_repaired": repaired is not None}
    store.close()
    shutil.rmtree(root)
    return {**outcome, "seconds": seconds, "pydicom": alone, "partial": partial, "wrong": wrong}


def main(argv: list[str]) -> int:
    manifest, start, workdir = json.loads(Path(argv[0]).read_text()), int(argv[1]), Path(argv[2])
    template = workdir / "template"
    if not template.exists():
        SliceStore(template).close()
    originals: dict[str, bytes] = {}
    for index in range(start, len(manifest)):
        entry = manifest[index]
        print(json.dumps({"start": index}), flush=True)
        original = entry.get("original")
        if original and original not in originals:
            originals[original] = Path(original).read_bytes()
        data = Path(entry["path"]).read_bytes()
        result = ingest_one(template, workdir / "store", entry["name"], data, originals.get(original or ""))
        print(json.dumps({"done": index, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
