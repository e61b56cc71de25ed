"""Job result files: one HDF5 file per job and series, written by one writer, read with SWMR.

Layout (format version 1)::

    /data or /measurements   (n, *shape) output, one chunk per slice; measurements are a
                             structured (n,) table of float64 columns
    /done                    (n,) uint8, set to 1 only after the slice's data are flushed
    /failed                  (n,) uint8, 1 when the slice failed (its traceback in /error)
    /error                   (n,) fixed-length bytes, the end of the traceback
    /writes                  (n,) uint16, how many times the slice was written and marked done
    /sop_instance_uids       (n,) the input instances, in slice order
    attributes               format_version, kind, processor, processor_version, params (JSON),
                             series_uid, job_id, started, finished, status, pacslab_version

Every dataset is created before the first result and the file is switched to SWMR mode
before it appears under its final name, so a viewer can open it (``swmr=True``) at any time
while the job writes. A writer killed mid-job leaves the file readable; reopening it for
writing copies what it holds into a fresh file first, because HDF5 refuses to reopen a file
whose SWMR writer did not close it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import h5py
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMAT_VERSION",
    "ResultBusyError",
    "ResultFile",
    "ResultFileError",
    "ResultKind",
    "ResultLock",
    "ResultMismatchError",
    "ResultNotFoundError",
    "ResultNotReadyError",
    "ResultReader",
    "ResultWriter",
    "pacslab_version",
]

FORMAT_VERSION = 1
ResultKind = Literal["image", "mask", "measurements"]
RESULT_KINDS: tuple[str, ...] = get_args(ResultKind)
ERROR_BYTES = 2048
# Attributes rewritten in SWMR mode keep a fixed size so they are modified in place.
_STATUS_DTYPE = "S16"
_TIME_DTYPE = "S32"
_IDENTITY = ("processor", "processor_version", "params", "series_uid")


class ResultFileError(Exception):
    """A job result file cannot be created, opened or read as asked."""


class ResultNotFoundError(ResultFileError, FileNotFoundError):
    """There is no result file at the path (the job has not produced a result yet)."""


class ResultNotReadyError(ResultFileError):
    """The requested slice has not been written yet (or it failed)."""


class ResultBusyError(ResultFileError):
    """Another writer holds the result file; only one job may write a file at a time."""


class ResultMismatchError(ResultFileError):
    """An existing result file was written by a different processor, parameters or input."""


def pacslab_version() -> str:
    """The installed pacslab version, recorded in every result's provenance."""
    try:
        return version("pacslab")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).rstrip(b"\0").decode("utf-8", "replace").strip()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


@dataclass(frozen=True)
class _Layout:
    kind: ResultKind
    n_slices: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def data_name(self) -> str:
        return "measurements" if self.kind == "measurements" else "data"


def _fill_value(dtype: np.dtype[Any]) -> Any:
    if dtype.names:
        return np.array(tuple(np.nan for _ in dtype.names), dtype=dtype)
    if dtype.kind == "f":
        return np.nan
    return None


def _create(path: Path, layout: _Layout, provenance: Mapping[str, Any], uids: Sequence[str]) -> h5py.File:
    """Create every dataset, switch to SWMR, and only then give the file its final name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    f = h5py.File(tmp, "w", libver="latest")
    try:
        n = layout.n_slices
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = layout.kind
        for key, value in provenance.items():
            f.attrs[key] = json.dumps(value, sort_keys=True) if key == "params" else str(value)
        f.attrs.create("started", np.array(_now().encode(), dtype=_TIME_DTYPE))
        f.attrs.create("finished", np.array(b"", dtype=_TIME_DTYPE))
        f.attrs.create("status", np.array(b"running", dtype=_STATUS_DTYPE))
        f.attrs["pacslab_version"] = pacslab_version()
        f.create_dataset(
            layout.data_name,
            shape=(n, *layout.shape),
            dtype=layout.dtype,
            chunks=(1, *layout.shape) if layout.shape else (max(1, min(n, 1024)),),
            fillvalue=_fill_value(layout.dtype),
        )
        f.create_dataset("done", shape=(n,), dtype="u1", chunks=(max(1, min(n, 4096)),))
        f.create_dataset("failed", shape=(n,), dtype="u1", chunks=(max(1, min(n, 4096)),))
        f.create_dataset("writes", shape=(n,), dtype="u2", chunks=(max(1, min(n, 4096)),))
        f.create_dataset(
            "error", shape=(n,), dtype=f"S{ERROR_BYTES}", chunks=(max(1, min(n, 16)),), compression="gzip"
        )
        f.create_dataset("sop_instance_uids", data=np.array([u.encode() for u in uids], dtype="S64"))
        f.swmr_mode = True
        tmp.replace(path)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    return f


def _recover(path: Path) -> None:
    """Rewrite a file whose writer was killed: HDF5 only lets SWMR readers open it."""
    tmp = path.with_name(path.name + ".recover")
    tmp.unlink(missing_ok=True)
    with h5py.File(path, "r", libver="latest", swmr=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
        for key, value in src.attrs.items():
            dst.attrs.create(key, value)
        for name in src:
            src.copy(src[name], dst, name=name)
    tmp.replace(path)


def _contiguous(items: Sequence[tuple[int, Any]]) -> list[tuple[int, list[Any]]]:
    """Group sorted ``(index, value)`` pairs into runs of consecutive indices."""
    runs: list[tuple[int, list[Any]]] = []
    for index, value in items:
        if runs and runs[-1][0] + len(runs[-1][1]) == index:
            runs[-1][1].append(value)
        else:
            runs.append((index, [value]))
    return runs


def _write_rows(dataset: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """``dataset[start:start + len(values)] = values`` for a 1-D dataset, without h5py's
    selection machinery (about a millisecond a call, twice per written batch)."""
    rows = np.ascontiguousarray(values, dtype=dataset.dtype)
    file_space = dataset.id.get_space()
    file_space.select_hyperslab((start,), (len(rows),))
    dataset.id.write(h5py.h5s.create_simple((len(rows),)), file_space, rows)


class ResultLock:
    """Claim on a result file: while held, no other writer (in any process) may open it.

    The claim is an exclusive ``flock`` on ``<file>.lock``; the OS drops it when the holder
    dies, so a killed job never leaves a file claimed.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: Any = self.path.with_name(self.path.name + ".lock").open("a+b")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise ResultBusyError(
                f"{self.path} is being written by another job; wait for it to finish or cancel it"
            ) from None

    @property
    def held(self) -> bool:
        return not self._handle.closed

    def close(self) -> None:
        """Release the claim (idempotent)."""
        if not self._handle.closed:
            self._handle.close()


class ResultWriter:
    """The one writer of a job's result file for one series.

    Opening an existing file resumes it: its ``done`` mask says which slices to skip. The
    file must have been made by the same processor, version, parameters and series.

    Parameters
    ----------
    path
        Where the file lives; its folder is created.
    kind
        ``"image"``, ``"mask"`` or ``"measurements"``.
    n_slices
        Number of slices in the series.
    shape
        Shape of one slice's output, ``()`` for measurements.
    dtype
        Output dtype; a structured dtype with float fields for measurements.
    provenance
        ``processor``, ``processor_version``, ``params`` (a dict), ``series_uid``, ``job_id``
        and ``sop_instance_uids`` (one per slice).

    Raises
    ------
    ResultBusyError
        Another writer holds the file.
    ResultMismatchError
        The existing file belongs to another processor, parameters, series or shape.
    """

    def __init__(
        self,
        path: Path | str,
        kind: ResultKind,
        n_slices: int,
        shape: Sequence[int],
        dtype: Any,
        provenance: Mapping[str, Any],
        lock: ResultLock | None = None,
    ) -> None:
        if kind not in RESULT_KINDS:
            raise ResultFileError(f"result kind must be one of {RESULT_KINDS}, got {kind!r}")
        dtype = np.dtype(dtype)
        if kind == "mask":
            dtype = np.dtype(np.uint8)
        if (kind == "measurements") != bool(dtype.names):
            raise ResultFileError("measurements need a structured dtype of named fields, and only they do")
        self.path = Path(path)
        self.layout = _Layout(kind, int(n_slices), tuple(int(s) for s in shape), dtype)
        provenance = dict(provenance)
        uids = [str(u) for u in provenance.pop("sop_instance_uids", [""] * self.layout.n_slices)]
        if len(uids) != self.layout.n_slices:
            raise ResultFileError(f"{len(uids)} SOP Instance UIDs given for {self.layout.n_slices} slices")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._own_lock = lock is None
        self._lock = lock if lock is not None else ResultLock(self.path)
        try:
            if self.path.exists():
                self._file = self._reopen(provenance, uids)
            else:
                self._file = _create(self.path, self.layout, provenance, uids)
        except BaseException:
            if self._own_lock:
                self._lock.close()
            raise
        self._data = self._file[self.layout.data_name]
        self._chunk_origin = (0,) * len(self.layout.shape)
        self._done = self._file["done"]
        self._failed = self._file["failed"]
        self._writes = self._file["writes"]
        self._error = self._file["error"]
        self._done_cache = self._done[:].astype(bool)
        self._failed_cache = self._failed[:].astype(bool)
        self._writes_cache = self._writes[:].astype(np.int64)

    @classmethod
    def open_existing(
        cls, path: Path | str, provenance: Mapping[str, Any], lock: ResultLock | None = None
    ) -> ResultWriter:
        """Reopen a result file to resume its job; shape, dtype and kind come from the file."""
        path = Path(path)
        try:
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                kind = _text(f.attrs["kind"])
                name = "measurements" if kind == "measurements" else "data"
                shape, dtype = f[name].shape, f[name].dtype
        except FileNotFoundError:
            raise ResultNotFoundError(f"no result file at {path}") from None
        except (OSError, KeyError) as exc:
            raise ResultFileError(
                f"{path} is not a readable result file ({exc}); delete it to start again"
            ) from exc
        if kind not in RESULT_KINDS:
            raise ResultFileError(f"{path} has an unknown kind {kind!r}; delete it to start again")
        return cls(path, kind, shape[0], shape[1:], dtype, provenance, lock=lock)  # type: ignore[arg-type]

    def _reopen(self, provenance: Mapping[str, Any], uids: Sequence[str]) -> h5py.File:
        try:
            f = h5py.File(self.path, "r+", libver="latest")
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise ResultFileError(f"cannot reopen result file {self.path}: {exc}") from exc
            _recover(self.path)
            f = h5py.File(self.path, "r+", libver="latest")
        try:
            self._check_matches(f, provenance)
            stored = [_text(u) for u in f["sop_instance_uids"][:]]
            if any(uids) and stored != list(uids):
                raise ResultMismatchError(
                    f"{self.path} was made from other instances of the series; delete it to start again"
                )
            f.attrs.modify("status", np.array(b"running", dtype=_STATUS_DTYPE))
            f.attrs.modify("finished", np.array(b"", dtype=_TIME_DTYPE))
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        return f

    def _check_matches(self, f: h5py.File, provenance: Mapping[str, Any]) -> None:
        layout = self.layout
        name = layout.data_name
        found = (
            _text(f.attrs.get("kind", "")),
            f[name].shape if name in f else None,
            f[name].dtype if name in f else None,
        )
        wanted = (layout.kind, (layout.n_slices, *layout.shape), layout.dtype)
        if found != wanted:
            raise ResultMismatchError(
                f"{self.path} holds {found[0]} {found[1]} {found[2]}, "
                f"not {wanted[0]} {wanted[1]} {wanted[2]}; delete it to start the job again"
            )
        data = f[name]
        if layout.kind != "measurements" and (data.chunks != (1, *layout.shape) or data.compression):
            # Slices are written as whole chunks of raw bytes (see write_many).
            raise ResultMismatchError(
                f"{self.path} is stored in chunks {data.chunks} with compression {data.compression!r}, "
                "not one uncompressed chunk per slice; delete it to start the job again"
            )
        for key in _IDENTITY:
            if key not in provenance:
                continue
            want = json.dumps(provenance[key], sort_keys=True) if key == "params" else str(provenance[key])
            have = _text(f.attrs.get(key, ""))
            if have != want:
                raise ResultMismatchError(
                    f"{self.path} was written with {key} {have!r}, not {want!r}; delete it or use another job"
                )

    # -- writing ---------------------------------------------------------------------------

    def done_mask(self) -> np.ndarray:
        """Boolean mask of slices already written (the ones a resumed job skips)."""
        return self._done_cache.copy()

    def write_many(self, items: Sequence[tuple[int, Any]]) -> int:
        """Write slices, flush, then mark them done and flush again.

        Slices already marked done are skipped, so a slice is never written twice. Returns
        the number of slices written.
        """
        fresh = sorted((int(i), v) for i, v in items if not self._done_cache[int(i)])
        if not fresh:
            return 0
        runs = _contiguous(fresh)
        for start, values in runs:
            stop = start + len(values)
            if self.layout.kind == "measurements":
                # One HDF5 write per run of neighbouring rows: per-row calls cost more than the data.
                names = self.layout.dtype.names or ()
                block = np.array([tuple(v[n] for n in names) for v in values], dtype=self.layout.dtype)
                self._data[start:stop] = block
            else:
                # Each slice is one uncompressed chunk: hand its bytes to HDF5 as they are, with
                # no stacked copy and no selection or conversion (a 512x512 image is 1 MiB).
                for offset, value in enumerate(values):
                    plane = np.ascontiguousarray(value, dtype=self.layout.dtype)
                    self._data.id.write_direct_chunk((start + offset, *self._chunk_origin), plane)
        self._file.flush()
        for start, values in runs:
            stop = start + len(values)
            # Counted with the done mark: data written but never marked done do not count.
            self._writes_cache[start:stop] += 1
            _write_rows(self._writes, start, self._writes_cache[start:stop])
            self._done_cache[start:stop] = True
            _write_rows(self._done, start, self._done_cache[start:stop])
            if self._failed_cache[start:stop].any():
                self._failed[start:stop] = 0
                self._failed_cache[start:stop] = False
                for index in range(start, stop):
                    self._error[index] = b""
        self._file.flush()
        return len(fresh)

    def write(self, index: int, value: Any) -> bool:
        """Write one slice; ``False`` if it was already done."""
        return self.write_many([(index, value)]) == 1

    def write_failure(self, index: int, traceback: str) -> None:
        """Record that ``index`` failed; the end of ``traceback`` is kept."""
        if self._done_cache[index]:
            return
        encoded = traceback.encode("utf-8", "replace")[-ERROR_BYTES:]
        self._error[index] = encoded
        self._failed[index] = 1
        self._failed_cache[index] = True
        self._file.flush()

    def close(self, status: str = "done") -> None:
        """Record the final status and time, and release the file."""
        if self._file.id.valid:
            self._file.attrs.modify("status", np.array(status.encode()[:16], dtype=_STATUS_DTYPE))
            self._file.attrs.modify("finished", np.array(_now().encode(), dtype=_TIME_DTYPE))
            self._file.flush()
            self._file.close()
        if self._own_lock:
            self._lock.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close("failed" if exc_type else "done")


class ResultReader:
    """Read a job result file, also while its job is still writing it.

    Each call opens the file with SWMR for that call only, so it sees the latest flushed
    slices and never holds the file open.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ResultNotFoundError(f"no result file at {self.path}; the job has not written a slice yet")

    @contextlib.contextmanager
    def _open(self) -> Iterator[h5py.File]:
        try:
            f = h5py.File(self.path, "r", libver="latest", swmr=True)
        except FileNotFoundError:
            raise ResultNotFoundError(f"no result file at {self.path}") from None
        except OSError as exc:
            raise ResultFileError(f"cannot open result file {self.path}: {exc}") from exc
        try:
            yield f
        finally:
            f.close()

    @property
    def kind(self) -> ResultKind:
        with self._open() as f:
            kind = _text(f.attrs["kind"])
        if kind not in RESULT_KINDS:
            raise ResultFileError(f"{self.path} has an unknown kind {kind!r}")
        return kind  # type: ignore[return-value]

    @property
    def n_slices(self) -> int:
        with self._open() as f:
            return int(f["done"].shape[0])

    @property
    def provenance(self) -> dict[str, Any]:
        """Processor, version, parameters, input UIDs, times and pacslab version."""
        with self._open() as f:
            out: dict[str, Any] = {key: _text(value) for key, value in f.attrs.items()}
            out["format_version"] = int(f.attrs["format_version"])
            out["params"] = json.loads(out.get("params", "{}") or "{}")
            out["sop_instance_uids"] = [_text(u) for u in f["sop_instance_uids"][:]]
        return out

    def done_mask(self) -> np.ndarray:
        """Boolean mask of slices whose results are complete."""
        with self._open() as f:
            done = f["done"]
            done.refresh()
            return np.asarray(done[:], dtype=bool)

    def failed_mask(self) -> np.ndarray:
        """Boolean mask of slices that failed."""
        with self._open() as f:
            failed = f["failed"]
            failed.refresh()
            return np.asarray(failed[:], dtype=bool)

    def errors(self) -> dict[int, str]:
        """Traceback (its last part) of each failed slice."""
        with self._open() as f:
            f["failed"].refresh()
            f["error"].refresh()
            failed = np.flatnonzero(f["failed"][:])
            return {int(i): _text(f["error"][int(i)]) for i in failed}

    def write_counts(self) -> np.ndarray:
        """How many times each slice was written (1 for every done slice of a sound job)."""
        with self._open() as f:
            f["writes"].refresh()
            return np.asarray(f["writes"][:], dtype=np.int64)

    def read(self, index: int) -> np.ndarray:
        """The output of slice ``index`` (a mask comes back as bool).

        Raises
        ------
        ResultNotReadyError
            The slice is not done yet, or it failed.
        """
        with self._open() as f:
            done = f["done"]
            done.refresh()
            n = done.shape[0]
            if not 0 <= index < n:
                raise IndexError(f"slice {index} is outside 0..{n - 1}")
            if not done[index]:
                raise ResultNotReadyError(f"slice {index} of {self.path.name} is not done yet")
            name = "measurements" if "measurements" in f else "data"
            data = f[name]
            data.refresh()
            value = np.asarray(data[index])
            if _text(f.attrs["kind"]) == "mask":
                return value.astype(bool)
            return value

    def measurements(self) -> pd.DataFrame:
        """One row per done slice: the measurements and the slice's SOP Instance UID."""
        import pandas as pd  # only readers of measurements pay for it (workers never do)

        with self._open() as f:
            if "measurements" not in f:
                raise ResultFileError(f"{self.path} holds {_text(f.attrs['kind'])} results, not measurements")
            done = f["done"]
            done.refresh()
            data = f["measurements"]
            data.refresh()
            mask = np.asarray(done[:], dtype=bool)
            table = data[:]
            uids = [_text(u) for u in f["sop_instance_uids"][:]]
        index = np.flatnonzero(mask)
        frame = pd.DataFrame({name: table[name][index] for name in table.dtype.names or ()}, index=index)
        frame.index.name = "slice"
        frame.insert(0, "sop_instance_uid", [uids[i] for i in index])
        return frame


# The name the interface between the store and the jobs gives the writer.
ResultFile = ResultWriter
