"""Export speed of one series against plain pydicom copy-and-save of as many instances, in one run.

Prints rates and ratios (no asserts):

* derived series (a denoised CT: rescale, windows, references) built and written, instances/s;
* DICOM SEG of a mask over the series built and written, source slices/s;
* de-identified copy (dicognito + basic profile) written, instances/s;

each against the reference: ``copy.deepcopy`` of the source, new UIDs, new pixel bytes,
``save_as`` — the least any export does per instance.

Usage: ``python bench/bench_export.py [--slices 120] [--size 512] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid
from scipy import ndimage

from pacslab.export import deidentified_copy, derived_series, segmentation_from_mask, write_folder
from pacslab.samples import phantom_ct_datasets


def best_of(repeat: int, run: Callable[[int], None]) -> float:
    """Shortest wall time of ``repeat`` runs (each gets its own run number)."""
    times = []
    for attempt in range(repeat):
        started = time.perf_counter()
        run(attempt)
        times.append(time.perf_counter() - started)
    return min(times)


def reference_copy_and_save(sources: list[Dataset], pixels: np.ndarray, folder: Path) -> None:
    """The floor of any export: copy each header, give it new UIDs and pixels, save it."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for ds, plane in zip(sources, pixels, strict=True):
        out = copy.deepcopy(ds)
        out.SeriesInstanceUID = series_uid
        out.SOPInstanceUID = generate_uid()
        out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        out.PixelData = plane.tobytes()
        out.save_as(folder / f"{out.SOPInstanceUID}.dcm", enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args, _ = parser.parse_known_args()  # `python -m bench export` passes the benchmark's name

    sources = list(phantom_ct_datasets(args.slices, args.size))
    hu = np.stack([ds.pixel_array.astype(np.float32) - 1024.0 for ds in sources])
    denoised = ndimage.gaussian_filter(hu, (0, 1.0, 1.0))
    mask = (hu > 500).astype(np.uint8)
    stored = np.stack([ds.pixel_array for ds in sources])
    n = len(sources)
    work = Path(tempfile.mkdtemp(prefix="pacslab-bench-export-"))
    try:
        reference = best_of(args.repeat, lambda i: reference_copy_and_save(sources, stored, work / f"ref{i}"))
        derived = best_of(
            args.repeat,
            lambda i: write_folder(
                derived_series(sources, denoised, "gaussian_denoise", "1.0", "bench", result_key=f"b{i}"),
                work / f"derived{i}",
            ),
        )
        seg = best_of(
            args.repeat,
            lambda i: write_folder(
                [segmentation_from_mask(sources, mask, ["bone"], "threshold", "1.0", result_key=f"s{i}")],
                work / f"seg{i}",
            ),
        )
        deid = best_of(
            args.repeat,
            lambda i: write_folder(deidentified_copy(sources, seed=f"d{i}").datasets, work / f"deid{i}"),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ref_rate = n / reference
    print(f"series: {n} CT slices of {args.size}x{args.size}, best of {args.repeat}")
    print(f"reference pydicom copy+save:          {ref_rate:8.1f} instances/s")
    for label, seconds, unit in (
        ("derived series build+write", derived, "instances/s"),
        ("SEG build+write", seg, "source slices/s"),
        ("de-identified copy+write", deid, "instances/s"),
    ):
        rate = n / seconds
        print(f"{label + ':':<38}{rate:8.1f} {unit:<16} {rate / ref_rate:6.2f}x reference")


if __name__ == "__main__":
    main()
