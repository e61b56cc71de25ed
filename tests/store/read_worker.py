"""A viewer in its own process: reads a series over and over until told to stop.

Usage: python -m tests.store.read_worker STORE SERIES_UID DIGESTS_FILE
Prints "reading" once started; stops when a line arrives on stdin and prints
"reads N problems M" followed by each problem.
"""

from __future__ import annotations

import hashlib
import select
import sys
from pathlib import Path

from pacslab.store import SliceStore


def main() -> int:
    root, series_uid, digests_file = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    digests = set(digests_file.read_text().split())
    store = SliceStore(root)
    reads, problems = 0, []
    print("reading", flush=True)
    while not select.select([sys.stdin], [], [], 0)[0]:
        try:
            for i in range(store.series(series_uid).n_slices):
                if hashlib.sha256(store.read_slice(series_uid, i).tobytes()).hexdigest() not in digests:
                    problems.append(f"torn or unknown slice {i}")
                reads += 1
        except Exception as error:  # every error is a failure of the store to report
            problems.append(repr(error))
    print(f"reads {reads} problems {len(problems)}", flush=True)
    for problem in problems[:20]:
        print(problem, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
