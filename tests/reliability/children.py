"""Child processes that report JSON lines: read them with a deadline, tell crashes and hangs apart."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.conftest import PROJECT_ROOT

__all__ = ["ChildRun", "json_lines", "run_module_over", "run_sharded"]


def json_lines(process: subprocess.Popen[bytes], deadline_s: float) -> Iterator[dict[str, Any] | None]:
    """JSON objects the child prints, one per line; ``None`` when it printed nothing for ``deadline_s``.

    Ends when the child closes its output (it exited or died).
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], deadline_s)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


@dataclass
class ChildRun:
    """What a set of children reported over a list of items."""

    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    crashed: list[tuple[int, int]] = field(default_factory=list)  # (item, exit code)
    hung: list[int] = field(default_factory=list)
    restarts: int = 0


def run_module_over(
    module: str, manifest: Path, n_items: int, workdir: Path, deadline_s: float, *extra: str
) -> ChildRun:
    """Run ``python -m module MANIFEST START WORKDIR/storeN ...`` until every item is answered.

    The child prints ``{"start": i}`` before item i and ``{"done": i, ...}`` after it. A child
    that dies is restarted after the item it was on (counted as crashed); one silent for
    ``deadline_s`` is killed and restarted after that item (counted as hung).
    """
    run = ChildRun()
    start = 0
    while start < n_items:
        log = (workdir / f"child{run.restarts}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                str(manifest),
                str(start),
                str(workdir / f"store{run.restarts}"),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=PROJECT_ROOT,
        )
        log.close()
        current: int | None = None
        try:
            for message in json_lines(process, deadline_s):
                if message is None:
                    assert current is not None, f"the child of {module} did not start within {deadline_s} s"
                    run.hung.append(current)
                    process.kill()
                    break
                if "start" in message:
                    current = int(message["start"])
                else:
                    run.results[int(message["done"])] = message
        finally:
            code = process.wait()
            assert process.stdout is not None
            process.stdout.close()
        if current is None or current in run.results:
            if current is None or current == n_items - 1:
                break
            # Exited between two items: carry on after the last answered one.
            start = current + 1
        else:
            if current not in run.hung:
                run.crashed.append((current, code))
            start = current + 1
        run.restarts += 1
    return run


def run_sharded(
    module: str, entries: list[dict[str, Any]], workdir: Path, deadline_s: float, shards: int = 2
) -> ChildRun:
    """:func:`run_module_over` on ``shards`` children at once, each taking every n-th entry."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for shard in range(shards):
        folder = workdir / f"shard{shard}"
        folder.mkdir()
        manifest = folder / "manifest.json"
        manifest.write_text(json.dumps(entries[shard::shards]))
        jobs.append((folder, manifest, len(entries[shard::shards])))
    with ThreadPoolExecutor(shards) as pool:
        runs = list(pool.map(lambda job: run_module_over(module, job[1], job[2], job[0], deadline_s), jobs))
    merged = ChildRun()
    for shard, run in enumerate(runs):
        merged.results.update({i * shards + shard: r for i, r in run.results.items()})
        merged.crashed += [(i * shards + shard, code) for i, code in run.crashed]
        merged.hung += [i * shards + shard for i in run.hung]
        merged.restarts += run.restarts
    return merged
