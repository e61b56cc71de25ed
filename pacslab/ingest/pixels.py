"""Pixel readers for the store's writer: straight from the file when uncompressed, else pydicom.

Both give exactly what ``pydicom.dcmread(path).pixel_array`` gives for each frame.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom

from pacslab.ingest.errors import DecodeFailed, ImageTooLarge, IngestError
from pacslab.ingest.pydicom_guard import quiet_pydicom

__all__ = ["DecodedFrames", "NativeFrames"]


class NativeFrames:
    """Frames of uncompressed little-endian grey pixel data, read at their byte offset.

    Mirrors pydicom: when BitsStored < BitsAllocated the unused high bits are cleared
    (unsigned) or filled with the sign (signed) by the same shift pair pydicom applies.
    """

    def __init__(self, path: Path, offset: int, rows: int, cols: int, dtype: str, bits_stored: int) -> None:
        self.path = path
        self.offset = offset
        self.rows = rows
        self.cols = cols
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.frame_bytes = rows * cols * self.dtype.itemsize
        self.shift = self.dtype.itemsize * 8 - bits_stored if 0 < bits_stored < self.dtype.itemsize * 8 else 0

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as ``(rows, cols)``."""
        arr = np.empty((self.rows, self.cols), dtype=self.dtype)
        # Unbuffered readinto: one read straight into the array (np.fromfile goes through stdio).
        with self.path.open("rb", buffering=0) as fp:
            fp.seek(self.offset + index * self.frame_bytes)
            got = fp.readinto(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        if got != self.frame_bytes:
            raise DecodeFailed(
                str(self.path), "the pixel data ends early (the file changed after it was checked)"
            )
        if self.shift:
            np.left_shift(arr, self.shift, out=arr)
            np.right_shift(arr, self.shift, out=arr)
        return arr


class DecodedFrames:
    """Frames decoded by pydicom's pixel handlers, the whole instance once.

    The decoded array is dropped when its last frame has been handed out, so a series of
    multi-frame instances never holds more than the instances being written.
    """

    def __init__(self, path: Path, name: str, n_frames: int) -> None:
        self.path = path
        self.name = name
        self.n_frames = n_frames
        self._remaining = n_frames
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    def _decode(self) -> np.ndarray:
        try:
            with quiet_pydicom():
                return pydicom.dcmread(self.path).pixel_array
        except IngestError:
            raise
        except MemoryError as error:
            raise ImageTooLarge(self.name, "decoding it needs more memory than is available") from error
        except Exception as error:
            raise DecodeFailed(self.name, f"{type(error).__name__}: {error}") from error

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based)."""
        with self._lock:
            array = self._array if self._array is not None else self._decode()
            self._remaining -= 1
            self._array = array if self._remaining > 0 else None
        return array if self.n_frames == 1 else array[index]
