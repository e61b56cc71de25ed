"""A separate process that ingests files, for the crash, concurrency and disk-full tests.

Usage: python -m tests.store.ingest_worker STORE [options] FILE...

--wait         print "ready" and wait for a line on stdin before starting (a start barrier)
--block-at N   after N slices are written, print "blocked" and wait on stdin (to be killed)
--spool        add the files as uploaded bytes, print "spooled" and wait on stdin (to be killed)
--fsize BYTES  limit the size of any file this process writes (RLIMIT_FSIZE)
--progress     print every progress event
Prints "done N" (instances stored) or "error ClassName" at the end.
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
from pathlib import Path

from pacslab.ingest import Ingest, IngestProgress
from pacslab.store import SliceStore


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--block-at", type=int, default=0)
    parser.add_argument("--spool", action="store_true")
    parser.add_argument("--fsize", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    if args.fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so writes fail with EFBIG instead
    store = SliceStore(args.store)
    if args.fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, args.fsize))

    def progress(event: IngestProgress) -> None:
        if args.progress:
            print(f"{event.stage} {event.done}/{event.total}", flush=True)
        if args.block_at and event.stage == "writing" and event.done == args.block_at:
            print("blocked", flush=True)
            sys.stdin.readline()

    if args.wait:
        print("ready", flush=True)
        sys.stdin.readline()
    ingest = Ingest(store, progress=progress)
    try:
        if args.spool:
            for f in args.files:
                ingest.add_bytes(f.name, f.read_bytes())
            print("spooled", flush=True)
            sys.stdin.readline()
        for f in args.files if not args.spool else []:
            ingest.add_file(f)
        report = ingest.finish()
    except Exception as error:
        print(f"error {type(error).__name__} {error}", flush=True)
        return 1
    print(f"done {report.n_instances}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
