"""Large outputs handed from workers on the client's machine to the writer through shared memory.

A job's outputs all go to its one writer in the client process. Sent back inside the batch
result, a 512x512 float32 image (1 MiB) costs a few milliseconds of CPU on each side of the
connection, as much as a 10 ms processor. A worker that sees the job's spool folder (a
folder in ``/dev/shm``, so only a worker on the same machine does) writes each large output
there instead and sends back its name; the writer maps the file, writes the slice and
deletes it. Workers elsewhere, and small outputs, send the values as before.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SPOOL_MIN_BYTES", "SpooledOutput", "create_spool", "remove_spool", "spool_output"]

# Smaller outputs ride with the batch result: a file costs more than sending them.
SPOOL_MIN_BYTES = 64 * 2**10
_PREFIX = "pacslab-spool-"
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only


@dataclass(frozen=True)
class SpooledOutput:
    """An output array left by a worker in a file of the spool folder."""

    path: str
    dtype: str
    shape: tuple[int, ...]

    def load(self) -> np.ndarray:
        """The array, mapped from its file (read-only, no copy).

        Raises
        ------
        OSError
            The file is missing or shorter than the array (its worker died writing it).
        """
        dtype = np.dtype(self.dtype)
        size = dtype.itemsize * math.prod(self.shape)
        with Path(self.path).open("rb") as handle:
            if os.fstat(handle.fileno()).st_size != size:
                raise OSError(f"{self.path} does not hold {size} bytes")
            # All pages mapped in one call: faulting them in one by one cost the writer
            # about as much as writing them to the result file.
            mapped = mmap.mmap(handle.fileno(), size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
        return np.frombuffer(mapped, dtype=dtype).reshape(self.shape)

    def discard(self) -> None:
        """Delete the file (a mapping still open keeps its pages until it is dropped)."""
        Path(self.path).unlink(missing_ok=True)


def _spool_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def create_spool() -> Path:
    """A fresh spool folder for one job; also removes folders left by killed client processes."""
    root = _spool_root()
    for old in root.glob(f"{_PREFIX}*"):
        pid = old.name.removeprefix(_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    return path


def remove_spool(path: Path | str) -> None:
    """Delete a job's spool folder and whatever outputs are still in it.

    Batches abandoned by a cancel may still be running: the folder is renamed first, so a
    worker finishing one afterwards cannot add a file to it (its output stays in the result).
    """
    path = Path(path)
    gone = path.with_name(f"{path.name}.removed")
    try:
        path.rename(gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def spool_output(spool: str, value: Any) -> Any:
    """``value`` written to a file in ``spool`` when it is a large array, else ``value`` itself.

    Runs on the worker. A worker that cannot see ``spool`` (another machine), or cannot write
    it (full), returns the value, which then travels with the batch result.
    """
    if not spool or not isinstance(value, np.ndarray) or value.nbytes < SPOOL_MIN_BYTES:
        return value
    array = np.ascontiguousarray(value)
    path = Path(spool) / uuid.uuid4().hex
    try:
        with path.open("xb") as handle:
            handle.write(array.data)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return value
    return SpooledOutput(path=str(path), dtype=array.dtype.str, shape=tuple(array.shape))
