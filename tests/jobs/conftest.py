"""Fixtures for job tests: phantom series written into a real store, small enough for 2 cores."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pacslab.samples import phantom_ct_volume

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.jobs import JobProgress
    from pacslab.store import SliceStore

HU_OFFSET = 1024


def put_series(
    store: SliceStore,
    series_uid: str,
    planes: np.ndarray,
    *,
    channels: Sequence[str] = ("",),
    rescale: Sequence[tuple[float, float]] = ((1.0, -HU_OFFSET),),
    spacing: float = 2.0,
) -> str:
    """Store ``planes`` (n, rows, cols) or (n, channels, rows, cols) of uint16 as a series."""
    from pacslab.store import SeriesMeta, SliceSource

    if planes.ndim == 3:
        planes = planes[:, None]
    n, n_channels, rows, cols = planes.shape
    sources = []
    for i in range(n):
        for c in range(n_channels):
            plane = np.ascontiguousarray(planes[i, c])
            sources.append(
                SliceSource(
                    sop_instance_uid=f"{series_uid}.{i + 1}.{c + 1}",
                    frame=1,
                    channel=channels[c],
                    header_json="{}",
                    read_pixels=lambda plane=plane: plane,
                    rows=rows,
                    cols=cols,
                    dtype=str(plane.dtype),
                    position=(0.0, 0.0, float(i) * 2.0),
                    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                    instance_number=i + 1,
                    rescale_slope=rescale[c][0],
                    rescale_intercept=rescale[c][1],
                )
            )
    meta = SeriesMeta(
        series_uid=series_uid,
        study_uid=series_uid + ".0",
        patient_id="PLAB-TEST",
        modality="CT",
        pixel_spacing=(spacing, spacing),
    )
    store.write_series(meta, sources)
    return series_uid


def ct_planes(n_slices: int, size: int) -> np.ndarray:
    """Phantom CT as stored values (HU + 1024, uint16)."""
    return (phantom_ct_volume(n_slices, size).astype(np.int32) + HU_OFFSET).astype(np.uint16)


@pytest.fixture
def ct_store(store: SliceStore) -> tuple[SliceStore, str]:
    """A store with a 24-slice 48x48 phantom CT (2 mm pixels)."""
    return store, put_series(store, "1.2.826.0.1.3680043.10.1338.1", ct_planes(24, 48))


@pytest.fixture(scope="session")
def client(dask_client: Client) -> Client:
    """The shared 2-worker cluster with the test processors registered on its workers."""
    import dask_cluster
    from tests.jobs import processors  # noqa: F401 - registers them

    dask_cluster.register_processors(dask_client)
    return dask_client


class Recorder:
    """A progress listener that keeps every event and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.events: list[JobProgress] = []
        self._condition = threading.Condition()

    def __call__(self, progress: JobProgress) -> None:
        with self._condition:
            self.events.append(progress)
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[JobProgress], bool], timeout: float = 60.0) -> JobProgress:
        with self._condition:
            ok = self._condition.wait_for(lambda: any(predicate(e) for e in self.events), timeout)
            assert ok, f"no progress event matched within {timeout} s; last: {self.events[-1:]}"
            return next(e for e in self.events if predicate(e))
