"""Ingest hostile files one by one and measure the peak memory of each; run as a child process.

``python -m tests.reliability.bomb_worker MANIFEST START WORKDIR`` ingests each
``{"name", "path"}`` (a zip through its archive path, anything else as an upload) into an empty
store, with the peak resident memory (VmHWM) reset before each, and prints JSON lines as
:mod:`tests.reliability.ingest_worker` does, adding ``rss_before_mib`` and ``peak_mib``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pacslab.ingest import Ingest, IngestLimits
from pacslab.store import SliceStore

# The caps the tests configure; everything else keeps the defaults.
LIMITS = IngestLimits(max_inflated_bytes=64 << 20, max_zip_member_bytes=64 << 20)


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def ingest_measured(root: Path, name: str, path: Path) -> dict[str, Any]:
    store = SliceStore(root)
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    started = time.perf_counter()
    try:
        with Ingest(store, limits=LIMITS) as ingest:
            if path.suffix == ".zip":
                ingest.add_path(path)
            else:
                ingest.add_bytes(name, path.read_bytes())
        report = ingest.report
        assert report is not None
    except BaseException as exc:  # counted as a crash by the parent
        return {"outcome": "crash", "error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - started
    peak = _status_mib("VmHWM")
    errors = [type(r.error).__name__ for r in report.rejected]
    return {
        "outcome": "rejected" if errors and not report.n_instances else "accepted",
        "errors": errors,
        "messages": [str(r.error) for r in report.rejected],
        "stored_series": len(store.list_series()),
        "seconds": seconds,
        "rss_before_mib": round(before, 1),
        "peak_mib": round(peak, 1),
    }


def main(argv: list[str]) -> int:
    manifest, start, workdir = json.loads(Path(argv[0]).read_text()), int(argv[1]), Path(argv[2])
    for index in range(start, len(manifest)):
        entry = manifest[index]
        print(json.dumps({"start": index}), flush=True)
        result = ingest_measured(workdir / f"store{index}", entry["name"], Path(entry["path"]))
        print(json.dumps({"done": index, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
