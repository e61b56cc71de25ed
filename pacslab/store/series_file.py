"""The HDF5 series file: written whole by the one writer, read by viewers and workers.

Layout (``format_version`` 2, ``encoding`` ``"pacslab.series"``):

``/pixels``
    ``(n, rows, cols)`` or ``(n, rows, cols, channels)`` in the stored dtype, one chunk per
    slice, compressed losslessly with HDF5 filter 32001 (Blosc: LZ4 after a byte shuffle,
    named in the ``pixel_compression`` attribute). Other HDF5 readers need the filter, which
    ``import hdf5plugin`` registers. Format 1 files, still read, hold the same layout
    uncompressed.
``/headers``
    ``(n, image_channels)`` DICOM JSON of each plane (bulk data left out); ``""`` where a
    channel is missing.
``/sop_instance_uids``, ``/frames``, ``/instance_numbers``, ``/rescale_slope``, ``/rescale_intercept``
    ``(n, image_channels)`` per plane.
``/positions`` ``(n, 3)`` ImagePositionPatient (NaN when unknown); ``/slice_location`` ``(n,)``
    distance along the slice normal.

Attributes hold the series facts: UIDs, geometry, rescale, window presets, channel names,
geometry warnings, the writer's version and the time written.

The writer compresses each slice itself (numcodecs' Blosc, the C library the HDF5 filter wraps,
giving the same bytes) and writes it as the chunk; the reader reads the chunk and decompresses
it straight into the result. Both skip HDF5's filter pipeline and chunk cache, which cost as
much again as the decompression.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
from numcodecs import blosc

from pacslab.store.catalog import SeriesContent
from pacslab.store.errors import SeriesFileError, SliceIndexError
from pacslab.store.geometry import SlicePlan
from pacslab.store.records import utc_now
from pacslab.store.slices import SeriesMeta, SliceReadError, SliceSource
from pacslab.store.writeback import fsync_path, start_writeback

__all__ = [
    "ENCODING",
    "FORMAT_VERSION",
    "SeriesFile",
    "existing_sources",
    "read_series_slices",
    "sample_channel_names",
    "write_series_file",
]

FORMAT_VERSION = 2
ENCODING = "pacslab.series"
# A slice is read far more often than written. LZ4 after a byte shuffle (high bytes apart from
# low bytes) halves CT and decompresses a 512x512 slice in about 0.13 ms, so a read from a cold
# page cache moves half the bytes for little CPU. Bit shuffle, zstd and zlib shrink it a further
# fifth to quarter but decompress 2.5 to 25 times slower: more time than the disk saves.
PIXEL_COMPRESSION = "blosc:lz4:shuffle"
_BLOSC_LEVEL = 5
_PIXEL_FILTER = hdf5plugin.Blosc(cname="lz4", clevel=_BLOSC_LEVEL, shuffle=hdf5plugin.Blosc.SHUFFLE)
_BLOSC_HEADER = 16
# One slice is two Blosc blocks: handing them to Blosc's thread pool (its default on the main
# thread) costs more than it saves, and far more on a busy machine. Other threads already run
# without the pool; a choice the user made stays.
if blosc.use_threads is None:
    blosc.use_threads = False
# Slices compressed ahead of the one being written (each holds one slice in memory).
COMPRESS_AHEAD = 2
# Queue written slices for the disk every this many slices (see pacslab.store.writeback).
WRITEBACK_EVERY = 8
_STR = h5py.string_dtype("utf-8")


def sample_channel_names(photometric: str, samples: int) -> tuple[str, ...]:
    """Names of the colour samples of one pixel (``("",)`` for a grey image)."""
    if samples == 1:
        return ("",)
    if photometric.startswith("YBR") and samples == 3:
        return ("Y", "Cb", "Cr")
    if samples == 3:
        return ("red", "green", "blue")
    return tuple(f"sample{i}" for i in range(samples))


def _pixels_of(source: SliceSource, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = source.read_pixels()
    except Exception as error:
        raise SliceReadError(source, error) from error
    if arr.shape != shape:
        raise SliceReadError(source, ValueError(f"decoded shape {arr.shape} is not the declared {shape}"))
    if arr.dtype != dtype:
        if not np.can_cast(arr.dtype, dtype, "safe"):
            raise SliceReadError(source, ValueError(f"decoded dtype {arr.dtype} cannot be stored as {dtype}"))
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def _compressible(plane_bytes: int) -> bool:
    # Blosc takes buffers below 2 GiB; a larger slice (none a DICOM ingest lets through) is
    # stored uncompressed rather than refused.
    return plane_bytes <= blosc.MAX_BUFFERSIZE


def _compress(plane: np.ndarray) -> bytes:
    return bytes(blosc.compress(plane, b"lz4", _BLOSC_LEVEL, blosc.SHUFFLE))


class _ChunkWriter:
    """Writes whole slices as their chunks, in order, Blosc-compressed when ``compressed``.

    Compression runs on a second thread (Blosc releases the GIL) while the writer reads the
    next slice, so it adds little to an ingest's time where a second core is free.
    """

    def __init__(self, pixels: h5py.Dataset, compressed: bool) -> None:
        self._pixels = pixels
        self._origin = (0,) * (pixels.ndim - 1)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pacslab-compress") if compressed else None
        self._pending: deque[tuple[int, Future[bytes]]] = deque()

    def write(self, index: int, plane: np.ndarray) -> None:
        """Queue ``plane`` (left unchanged from here on) as slice ``index``."""
        if self._pool is None:
            self._pixels.id.write_direct_chunk((index, *self._origin), plane)
            return
        self._pending.append((index, self._pool.submit(_compress, plane)))
        while len(self._pending) > COMPRESS_AHEAD:
            self._write_oldest()

    def _write_oldest(self) -> None:
        index, future = self._pending.popleft()
        self._pixels.id.write_direct_chunk((index, *self._origin), future.result())

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            while kind is None and self._pending:
                self._write_oldest()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)


def write_series_file(
    path: Path,
    meta: SeriesMeta,
    sources: Sequence[SliceSource],
    plan: SlicePlan,
    dtype: str,
    on_slice: Callable[[int, int], None] | None = None,
) -> SeriesContent:
    """Write a complete series file at ``path`` (a temporary name) and fsync it.

    Raises :class:`SliceReadError` if a source cannot be read; the caller removes the file.
    """
    first = next(sources[i] for plane in plan.planes for i in plane if i is not None)
    rows, cols, samples = first.rows, first.cols, first.samples
    stored_dtype = np.dtype(dtype).newbyteorder("=")
    if samples > 1 and len(plan.channels) > 1:
        raise SliceReadError(
            first, ValueError("colour images cannot also have several channels per position")
        )
    channel_names = (
        sample_channel_names(meta.photometric_interpretation, samples) if samples > 1 else plan.channels
    )
    n, n_image = len(plan.planes), len(plan.channels)
    n_stored = len(channel_names)
    plane_shape: tuple[int, ...] = (rows, cols) if n_stored == 1 else (rows, cols, n_stored)
    source_shape: tuple[int, ...] = (rows, cols) if samples == 1 else (rows, cols, samples)

    headers = np.full((n, n_image), "", dtype=object)
    uids = np.full((n, n_image), "", dtype=object)
    frames = np.zeros((n, n_image), dtype=np.int32)
    numbers = np.full((n, n_image), -1, dtype=np.int64)
    slopes = np.ones((n, n_image), dtype=np.float64)
    intercepts = np.zeros((n, n_image), dtype=np.float64)
    positions = np.full((n, 3), np.nan, dtype=np.float64)
    orientations = np.full((n, n_image, 6), np.nan, dtype=np.float64)
    instances: list[tuple[int, int, str, int, str, int | None, float | None]] = []
    auto_window = not meta.window_presets and samples == 1
    low, high = math.inf, -math.inf

    compressed = _compressible(math.prod(plane_shape) * stored_dtype.itemsize)
    with h5py.File(path, "w", libver="latest") as f:
        pixels = f.create_dataset(
            "pixels",
            shape=(n, *plane_shape),
            dtype=stored_dtype,
            chunks=(1, *plane_shape),
            fillvalue=0,
            **(_PIXEL_FILTER if compressed else {}),
        )
        fd = int(f.id.get_vfd_handle())
        with _ChunkWriter(pixels, compressed) as chunks:
            for k, plane in enumerate(plan.planes):
                # A new buffer per plane: the chunk writer may still be compressing the last one.
                buffer = np.zeros(plane_shape, dtype=stored_dtype) if n_image > 1 else None
                for c, index in enumerate(plane):
                    if index is None:
                        continue
                    source = sources[index]
                    if (source.rows, source.cols, source.samples) != (rows, cols, samples):
                        raise SliceReadError(
                            source,
                            ValueError(
                                f"{source.rows}x{source.cols} image does not match the series' {rows}x{cols}"
                            ),
                        )
                    arr = _pixels_of(source, stored_dtype, source_shape)
                    if buffer is not None:
                        buffer[..., c] = arr
                    else:
                        chunks.write(k, arr)
                    if auto_window and c == 0 and arr.size:
                        low = min(low, float(arr.min()) * source.rescale_slope + source.rescale_intercept)
                        high = max(high, float(arr.max()) * source.rescale_slope + source.rescale_intercept)
                    headers[k, c] = source.header_json
                    uids[k, c] = source.sop_instance_uid
                    frames[k, c] = source.frame
                    numbers[k, c] = -1 if source.instance_number is None else source.instance_number
                    slopes[k, c] = source.rescale_slope
                    intercepts[k, c] = source.rescale_intercept
                    if source.orientation is not None:
                        orientations[k, c] = source.orientation
                    if source.position is not None and np.isnan(positions[k, 0]):
                        positions[k] = source.position
                    instances.append(
                        (
                            k,
                            c,
                            source.sop_instance_uid,
                            source.frame,
                            source.sop_class_uid,
                            source.instance_number,
                            plan.positions[k],
                        )
                    )
                if buffer is not None:
                    chunks.write(k, buffer)
                if k % WRITEBACK_EVERY == WRITEBACK_EVERY - 1:
                    start_writeback(fd)
                if on_slice is not None:
                    on_slice(k + 1, n)

        f.create_dataset("headers", data=headers, dtype=_STR)
        f.create_dataset("sop_instance_uids", data=uids, dtype=_STR)
        f.create_dataset("frames", data=frames)
        f.create_dataset("instance_numbers", data=numbers)
        f.create_dataset("rescale_slope", data=slopes)
        f.create_dataset("rescale_intercept", data=intercepts)
        f.create_dataset("positions", data=positions)
        f.create_dataset("orientations", data=orientations)
        f.create_dataset(
            "slice_location",
            data=np.array([np.nan if p is None else p for p in plan.positions], dtype=np.float64),
        )

        presets = meta.window_presets
        if auto_window and low <= high:
            presets = (("auto", (low + high) / 2, max(high - low, 1.0)),)
        spacing = plan.spacing if plan.spacing is not None else meta.spacing_between_slices
        pixel_spacing = meta.pixel_spacing or (1.0, 1.0)
        warnings = (
            plan.warnings if meta.pixel_spacing else (*plan.warnings, "no pixel spacing (1 mm assumed)")
        )
        attrs = f.attrs
        attrs["encoding"] = ENCODING
        attrs["format_version"] = FORMAT_VERSION
        attrs["pixel_compression"] = PIXEL_COMPRESSION if compressed else ""
        attrs["series_uid"] = meta.series_uid
        attrs["study_uid"] = meta.study_uid
        attrs["modality"] = meta.modality
        attrs["frame_of_reference_uid"] = meta.frame_of_reference_uid
        attrs["channels"] = json.dumps(list(channel_names))
        attrs["image_channels"] = json.dumps(list(plan.channels))
        attrs["photometric_interpretation"] = meta.photometric_interpretation
        attrs["image_orientation_patient"] = np.asarray(plan.orientation or (), dtype=np.float64)
        attrs["pixel_spacing"] = np.asarray(pixel_spacing, dtype=np.float64)
        attrs["slice_thickness"] = np.nan if meta.slice_thickness is None else meta.slice_thickness
        attrs["spacing_between_slices"] = np.nan if spacing is None else spacing
        attrs["rescale_slope"] = float(slopes[0, 0]) if n else 1.0
        attrs["rescale_intercept"] = float(intercepts[0, 0]) if n else 0.0
        attrs["rescale_type"] = meta.rescale_type
        attrs["window_presets"] = json.dumps([list(p) for p in presets])
        attrs["geometry_warnings"] = json.dumps(list(warnings))
        attrs["written"] = utc_now()
        f.flush()
    # The rename that publishes the file must never land before its bytes.
    fsync_path(path)
    return SeriesContent(
        n_slices=n,
        rows=rows,
        cols=cols,
        channels=channel_names,
        dtype=str(np.dtype(dtype)),
        pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
        slice_thickness=meta.slice_thickness,
        spacing_between_slices=spacing,
        rescale_slope=float(slopes[0, 0]) if n else 1.0,
        rescale_intercept=float(intercepts[0, 0]) if n else 0.0,
        window_presets=tuple(presets),
        geometry_warnings=tuple(warnings),
        image_orientation=tuple(plan.orientation or ()),
        format_version=FORMAT_VERSION,
        instances=tuple(instances),
    )


class SeriesFile:
    """A series file opened read-only; slices come back as one chunk read each."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as error:
            raise SeriesFileError(
                f"cannot open series file {self.path}: {error}; ingest the series again to rebuild it"
            ) from error
        try:
            attrs = self.file.attrs
            encoding = attrs.get("encoding")
            version = int(attrs.get("format_version", 0))
            if encoding != ENCODING or version > FORMAT_VERSION or version < 1:
                raise SeriesFileError(
                    f"{self.path} is not a pacslab series file this version reads "
                    f"(encoding {encoding!r}, format_version {version}); upgrade pacslab or re-ingest"
                )
            self.pixels = self.file["pixels"]
            self.shape: tuple[int, ...] = tuple(self.pixels.shape)
            self.dtype = self.pixels.dtype
            self.channels: tuple[str, ...] = tuple(json.loads(attrs["channels"]))
            self.image_channels: tuple[str, ...] = tuple(json.loads(attrs["image_channels"]))
            self.slopes = np.asarray(self.file["rescale_slope"][()])
            self.intercepts = np.asarray(self.file["rescale_intercept"][()])
            # One chunk per slice, uncompressed (format 1) or Blosc alone: read the chunk and
            # copy or decompress it straight into the result.
            plist = self.pixels.id.get_create_plist()
            filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            one_chunk = self.pixels.chunks == (1, *self.shape[1:])
            self._direct = one_chunk and not filters
            self._blosc = one_chunk and filters == [hdf5plugin.BLOSC_ID]
        except KeyError as error:
            self.file.close()
            raise SeriesFileError(f"series file {self.path} lacks {error}; re-ingest the series") from error
        except SeriesFileError:
            self.file.close()
            raise

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        """Close the HDF5 file."""
        self.file.close()

    def channel_index(self, channel: int | str) -> int:
        """A channel by position or by name (``"phase"``); :class:`SliceIndexError` if absent."""
        if isinstance(channel, str):
            if channel not in self.channels:
                raise SliceIndexError(
                    f"no channel {channel!r} in this series; its channels are {self.channels}"
                )
            return self.channels.index(channel)
        if not 0 <= channel < len(self.channels):
            raise SliceIndexError(
                f"channel {channel} is not one of the {len(self.channels)} channels {self.channels}"
            )
        return int(channel)

    def _check(self, index: int) -> int:
        n = self.shape[0]
        if not -n <= index < n:
            raise SliceIndexError(f"slice {index} is outside this series of {n} slices ({self.path.name})")
        return index % n

    def read_plane(self, index: int) -> np.ndarray:
        """All channels of one slice: ``(rows, cols)`` or ``(rows, cols, channels)``."""
        index = self._check(index)
        if self._direct:
            out = np.empty(self.shape[1:], dtype=self.dtype)
            origin = (index,) + (0,) * (len(self.shape) - 1)
            self.pixels.id.read_direct_chunk(origin, out=out.reshape(-1).view(np.uint8))
            return out
        if self._blosc:
            out = np.empty(self.shape[1:], dtype=self.dtype)
            origin = (index,) + (0,) * (len(self.shape) - 1)
            skipped, chunk = self.pixels.id.read_direct_chunk(origin)
            # A set filter mask means HDF5 itself stored this chunk raw; let it read it.
            if not skipped:
                self._decompress(index, chunk, out)
                return out
        return np.asarray(self.pixels[index])

    def _decompress(self, index: int, chunk: bytes, out: np.ndarray) -> None:
        # Blosc's header holds the decompressed and compressed sizes (bytes 4-8 and 12-16);
        # checking them first keeps a damaged chunk from being read past its end.
        sizes = (-1, -1)
        if len(chunk) >= _BLOSC_HEADER:
            sizes = (int.from_bytes(chunk[4:8], "little"), int.from_bytes(chunk[12:16], "little"))
        if sizes != (out.nbytes, len(chunk)):
            raise SeriesFileError(
                f"slice {index} of {self.path} is damaged (its chunk holds {sizes[0]} bytes of "
                f"{out.nbytes}); ingest the series again to rebuild it"
            )
        try:
            blosc.decompress(chunk, out)
        except RuntimeError as error:
            raise SeriesFileError(
                f"slice {index} of {self.path} is damaged ({error}); ingest the series again to rebuild it"
            ) from error

    def read(self, index: int, channel: int | str = 0) -> np.ndarray:
        """One channel (by position or name) of one slice, ``(rows, cols)``."""
        column = self.channel_index(channel)
        plane = self.read_plane(index)
        if len(self.shape) == 3:
            return plane
        return np.ascontiguousarray(plane[..., column])

    def _meta_column(self, channel: int) -> int:
        return channel if len(self.image_channels) > 1 else 0

    def rescale(self, index: int, channel: int | str = 0) -> tuple[float, float]:
        """RescaleSlope and RescaleIntercept of one plane."""
        index = self._check(index)
        column = self._meta_column(self.channel_index(channel))
        return float(self.slopes[index, column]), float(self.intercepts[index, column])

    def header_json(self, index: int, channel: int | str = 0) -> str:
        """The stored DICOM JSON of one plane (``""`` where that channel is missing)."""
        index = self._check(index)
        value = self.file["headers"][index, self._meta_column(self.channel_index(channel))]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def existing_sources(series_file: SeriesFile) -> list[SliceSource]:
    """The stored planes as sources, so a new version can merge them with new instances."""
    f = series_file.file
    uids = f["sop_instance_uids"].asstr()[()]
    headers = f["headers"].asstr()[()]
    frames = f["frames"][()]
    numbers = f["instance_numbers"][()]
    positions = f["positions"][()]
    orientations = f["orientations"][()]
    samples = len(series_file.channels) if len(series_file.image_channels) == 1 else 1
    rows, cols = series_file.shape[1], series_file.shape[2]
    sources: list[SliceSource] = []
    for k in range(series_file.n_slices):
        for c, channel in enumerate(series_file.image_channels):
            uid = str(uids[k, c])
            if not uid:
                continue
            header = str(headers[k, c])
            orientation = orientations[k, c]

            def read(k: int = k, c: int = c) -> np.ndarray:
                plane = series_file.read_plane(k)
                if len(series_file.image_channels) > 1:
                    return np.ascontiguousarray(plane[..., c])
                return plane

            position = positions[k]
            sources.append(
                SliceSource(
                    sop_instance_uid=uid,
                    frame=int(frames[k, c]),
                    channel=channel,
                    header_json=header,
                    read_pixels=read,
                    rows=rows,
                    cols=cols,
                    dtype=str(series_file.dtype),
                    samples=samples,
                    position=None
                    if np.isnan(position[0])
                    else (float(position[0]), float(position[1]), float(position[2])),
                    orientation=None if np.isnan(orientation[0]) else _six(orientation),
                    instance_number=None if numbers[k, c] < 0 else int(numbers[k, c]),
                    rescale_slope=float(series_file.slopes[k, c]),
                    rescale_intercept=float(series_file.intercepts[k, c]),
                    origin=f"{series_file.path.name}[{k}]",
                )
            )
    return sources


def _six(values: np.ndarray) -> tuple[float, float, float, float, float, float]:
    a, b, c, d, e, f = (float(v) for v in values)
    return (a, b, c, d, e, f)


def read_series_slices(path: Path, indices: Sequence[int], channel: int | str = 0) -> np.ndarray:
    """Read slices of a series file straight from disk (for Dask workers that see the store).

    Parameters
    ----------
    path : Path
        The series file, from :meth:`SliceStore.series_path`.
    indices : sequence of int
        Slice indices, in the order wanted.
    channel : int or str
        Channel to read for multi-channel series, by position or name.

    Returns
    -------
    numpy.ndarray
        ``(len(indices), rows, cols)`` in the stored dtype.
    """
    series_file = SeriesFile(Path(path))
    try:
        out = np.empty((len(indices), series_file.shape[1], series_file.shape[2]), dtype=series_file.dtype)
        for i, index in enumerate(indices):
            out[i] = series_file.read(int(index), channel)
        return out
    finally:
        series_file.close()
