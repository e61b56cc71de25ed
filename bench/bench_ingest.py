"""Ingest and slice-read speed of the slice store against plain pydicom, in one run.

Prints ratios (no asserts):

* ingest of the synthetic CT series from files, slices/s, vs a loop of
  ``pydicom.dcmread(f).pixel_array`` over the same files (target: at least 0.8x);
* the series file's size per slice (the pixels are stored compressed);
* reading one slice back from the store vs ``dcmread(f).pixel_array`` of its file, with a warm
  page cache and with both files evicted from the page cache (target: at least 5x faster).

Usage: ``python bench/bench_ingest.py [--slices 120] [--size 512] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

from pacslab.ingest import ingest_paths
from pacslab.samples import phantom_ct_datasets
from pacslab.store import SliceStore


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (no root needed for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def timed_both(action: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (CPU time is steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pacslab-bench-ingest-"))
    try:
        source = work / "ct"
        source.mkdir()
        files = []
        for i, ds in enumerate(phantom_ct_datasets(args.slices, args.size)):
            path = source / f"{i:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
        n = len(files)

        def reference_loop() -> None:
            for f in files:
                pydicom.dcmread(f).pixel_array  # noqa: B018

        ingest_times: list[tuple[float, float]] = []
        reference_times: list[tuple[float, float]] = []
        series_uid = ""
        for attempt in range(args.repeat):
            # Alternate the order so neither side always runs on a warmer machine.
            store_root = work / f"store{attempt}"
            if attempt % 2:
                reference_times.append(timed_both(reference_loop))
            store = SliceStore(store_root)
            ingest_times.append(timed_both(functools.partial(ingest_paths, store, files)))
            if not attempt % 2:
                reference_times.append(timed_both(reference_loop))
            series_uid = store.list_series()[0].series_uid
            store.close()
        ingest_rate = n / statistics.median(t[0] for t in ingest_times)
        reference_rate = n / statistics.median(t[0] for t in reference_times)
        cpu_ratio = statistics.median(t[1] for t in reference_times) / statistics.median(
            t[1] for t in ingest_times
        )
        print(f"ingest   {args.slices} slices of {args.size}x{args.size}: {ingest_rate:8.1f} slices/s")
        print(f"dcmread+pixel_array loop:             {reference_rate:8.1f} slices/s")
        print(f"ingest / pydicom loop:                {ingest_rate / reference_rate:8.2f}x  (target >= 0.8x)")
        print(f"same, in CPU time:                    {cpu_ratio:8.2f}x")

        store_root = work / f"store{args.repeat - 1}"
        store = SliceStore(store_root)
        series_path = store.series_path(series_uid)
        store.read_slice(series_uid, 0)
        raw = n * args.size * args.size * 2
        print(
            f"series file: {series_path.stat().st_size / n / 1024:.0f} KiB per slice, "
            f"{raw / series_path.stat().st_size:.2f}x smaller than the pixels"
        )

        def read_all(reader: SliceStore) -> None:
            for i in range(n):
                reader.read_slice(series_uid, i)

        warm_runs = [timed_both(functools.partial(read_all, store)) for _ in range(args.repeat)]
        dicom_runs = [timed_both(reference_loop) for _ in range(args.repeat)]
        warm_store = min(t[0] for t in warm_runs) / n
        warm_dicom = min(t[0] for t in dicom_runs) / n
        print(
            f"read slice, warm cache: store {warm_store * 1e3:.3f} ms, dcmread {warm_dicom * 1e3:.3f} ms, "
            f"{warm_dicom / warm_store:.1f}x faster  (target >= 5x)"
        )
        warm_cpu = min(t[1] for t in dicom_runs) / min(t[1] for t in warm_runs)
        print(f"same, in CPU time:                    {warm_cpu:8.1f}x")

        cold_store, cold_dicom = [], []
        for _ in range(args.repeat):
            store.close()
            fresh = SliceStore(store_root)
            evict(series_path)
            cold_store.append(timed(functools.partial(read_all, fresh)) / n)
            fresh.close()
            for f in files:
                evict(f)
            cold_dicom.append(timed(reference_loop) / n)
        cs, cd = statistics.median(cold_store), statistics.median(cold_dicom)
        print(
            f"read slice, cold cache (files evicted, new SliceStore): store {cs * 1e3:.3f} ms, "
            f"dcmread {cd * 1e3:.3f} ms, {cd / cs:.1f}x faster  (target >= 5x)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
