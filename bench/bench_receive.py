"""CPU per received instance on the way into the store, against pydicom reading the same bytes.

A retrieve hands each instance's bytes to ``Ingest.add_encoded`` (checked and spooled as it
arrives) and stores the series in ``finish()``. Prints CPU milliseconds per instance of both,
and the ratio of ``add_encoded`` to a reference measured in the same run: pydicom reading the
header of the same bytes to DICOM JSON plus writing the bytes to a file (what any receiver
that keeps headers does at least). No asserts.

Usage: ``python bench/bench_receive.py [--slices 300] [--size 512] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pydicom

from pacslab.ingest import Ingest
from pacslab.samples import phantom_ct_datasets
from pacslab.store import SliceStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    blobs = []
    for ds in phantom_ct_datasets(args.slices, args.size):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        blobs.append(buffer.getvalue())
    n = len(blobs)
    work = Path(tempfile.mkdtemp(prefix="pacslab-bench-receive-"))
    add, finish, reference = [], [], []
    try:
        for attempt in range(args.repeat):
            store = SliceStore(work / f"store{attempt}")
            ingest = Ingest(store, durable=False)
            started = time.process_time()
            for data in blobs:
                ingest.add_encoded(data)
            added = time.process_time()
            report = ingest.finish()
            finished = time.process_time()
            assert report.n_instances == n, report
            store.close()
            shutil.rmtree(work / f"store{attempt}")
            add.append((added - started) / n)
            finish.append((finished - added) / n)

            folder = work / f"reference{attempt}"
            folder.mkdir()
            started = time.process_time()
            for i, data in enumerate(blobs):
                (folder / f"{i}.dcm").write_bytes(data)
                pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).to_json_dict()
            reference.append((time.process_time() - started) / n)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, f, r = (statistics.median(x) * 1e3 for x in (add, finish, reference))
    print(f"receive {n} slices of {args.size}x{args.size}, CPU per instance:")
    print(f"add_encoded (check + spool):          {a:8.3f} ms")
    print(f"finish (series file + catalog):       {f:8.3f} ms")
    print(f"pydicom header JSON + file write:     {r:8.3f} ms")
    print(f"add_encoded / reference:              {a / r:8.2f}x  (lower is better)")


if __name__ == "__main__":
    main()
