"""The one writer of series files: merge, order, write to a temporary name, publish, catalog.

Every new version of a series is a new file, written whole under the series' lock and only
then renamed into place and recorded in the catalog in one transaction. A reader holding the
previous version keeps reading it; a writer killed at any point leaves the previous version
and the catalog consistent, with the series marked incomplete.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pacslab.store.catalog import Catalog
from pacslab.store.errors import StoreFull
from pacslab.store.geometry import plan_slices
from pacslab.store.locks import series_key, series_lock
from pacslab.store.series_file import SeriesFile, existing_sources, write_series_file
from pacslab.store.slices import SeriesMeta, SliceSource
from pacslab.store.writeback import fsync_path

__all__ = ["WriteOutcome", "is_disk_full", "series_file_name", "write_series"]

# Room kept free beyond the estimate, for the catalog and HDF5's own metadata.
RESERVE_BYTES = 1 << 20
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FULL_TEXT = ("No space left", "errno = 28", "Disk quota", "errno = 122", "File too large", "errno = 27")


@dataclass(frozen=True)
class WriteOutcome:
    """What one call of :func:`write_series` did."""

    series_uid: str
    changed: bool
    n_slices: int
    version: int
    warnings: tuple[str, ...] = ()


def is_disk_full(error: BaseException) -> bool:
    """True for ENOSPC-like failures, however h5py or the OS reported them."""
    for err in (error, error.__cause__, error.__context__):
        if err is None:
            continue
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if any(text in str(err) for text in _FULL_TEXT):
            return True
    return False


def series_file_name(series_uid: str, version: int) -> str:
    """Store-relative path of one version of a series file (never built from the UID itself)."""
    key = series_key(series_uid)
    return f"series/{key[:2]}/{key}.v{version}.h5"


def _estimate_bytes(sources: Sequence[SliceSource], n_planes: int, n_channels: int, dtype: str) -> int:
    first = sources[0]
    plane = first.rows * first.cols * max(first.samples, n_channels) * np.dtype(dtype).itemsize
    return n_planes * plane + sum(len(s.header_json) for s in sources) + 64 * 1024


def write_series(
    root: Path,
    catalog: Catalog,
    meta: SeriesMeta,
    sources: Sequence[SliceSource],
    on_slice: Callable[[int, int], None] | None = None,
) -> WriteOutcome:
    """Add ``sources`` to a series: a new version holding the stored planes plus the new ones.

    A plane already stored (same SOP Instance UID and frame) is replaced, never duplicated; if
    every source is already stored in a complete version, nothing is written.

    Raises
    ------
    StoreFull
        The disk has no room; the previous version stays as it was.
    SliceReadError
        A source could not be read; nothing is published, the caller may retry without it.
    """
    uid = meta.series_uid
    key = series_key(uid)
    with series_lock(root / "locks", key):
        row = catalog.series_row(uid)
        old_rel: str | None = row["path"] if row is not None and row["path"] else None
        old_file = SeriesFile(root / old_rel) if old_rel and (root / old_rel).exists() else None
        try:
            old_sources = existing_sources(old_file) if old_file is not None else []
            incoming: dict[tuple[str, int], SliceSource] = {s.key: s for s in sources}
            old_keys = {s.key for s in old_sources}
            if row is not None and row["complete"] and old_file is not None and incoming.keys() <= old_keys:
                return WriteOutcome(uid, False, int(row["n_slices"]), int(row["version"]))
            merged = [s for s in old_sources if s.key not in incoming] + list(incoming.values())
            if not merged:
                return WriteOutcome(uid, False, 0, int(row["version"]) if row is not None else 0)
            plan = plan_slices(merged)
            dtype = str(np.result_type(*sorted({s.dtype for s in merged})))
            need = _estimate_bytes(merged, len(plan.planes), len(plan.channels), dtype) + RESERVE_BYTES
            series_dir = root / "series" / key[:2]
            series_dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(series_dir).free
            if need > free:
                raise StoreFull(
                    f"not enough disk space for series {uid}: about {need >> 20} MiB needed, "
                    f"{free >> 20} MiB free at {root}; free space or move the store, then ingest again "
                    "(stored data is intact)"
                )
            previous = catalog.begin_write(meta)
            version = (int(row["version"]) if row is not None else 0) + 1
            # Never reuse a name still on disk: a deleted series' file waits out its grace period
            # under it, and a reader may hold it open.
            while (root / series_file_name(uid, version)).exists():
                version += 1
            rel = series_file_name(uid, version)
            final = root / rel
            tmp = final.with_name(final.name + ".tmp")
            try:
                content = write_series_file(tmp, meta, merged, plan, dtype, on_slice)
                tmp.replace(final)
                fsync_path(series_dir)
            except BaseException as error:
                tmp.unlink(missing_ok=True)
                catalog.abort_write(uid, previous)
                if is_disk_full(error):
                    raise StoreFull(
                        f"the disk holding the store {root} filled up while writing series {uid}; free space "
                        "and ingest again (earlier data is intact, this series keeps its previous version)"
                    ) from error
                raise
            try:
                catalog.commit_series(meta, content, rel, version, old_rel)
            except BaseException:
                final.unlink(missing_ok=True)
                # If even that fails, the series stays marked incomplete; its previous file is untouched.
                with contextlib.suppress(StoreFull):
                    catalog.abort_write(uid, previous)
                raise
            return WriteOutcome(uid, True, content.n_slices, version, content.geometry_warnings)
        finally:
            if old_file is not None:
                old_file.close()
