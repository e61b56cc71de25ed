"""``python -m bench``: run every benchmark in bench/ and print its ratios.

Each ``bench/bench_*.py`` has a ``main()`` that measures pacslab against a reference in the
same run and prints one line per figure. ``python -m bench retrieve ingest`` runs a subset.
The long soak (``make soak``) runs only when named: ``python -m bench soak``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

LONG_RUNS = {"soak"}


def main(argv: list[str]) -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    wanted = argv or [n for n in names if n not in LONG_RUNS]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"No benchmark named {unknown} (have: {', '.join(names)})", file=sys.stderr)
        return 2
    failed = 0
    for name in wanted:
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        sys.argv = [f"bench/bench_{name}.py"]  # each benchmark parses its own options
        try:
            module.main()
        except Exception as exc:  # report and go on: one broken benchmark must not hide the others
            failed += 1
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
