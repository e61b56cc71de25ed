"""Fixtures of the widget tests: settings for a PACS on loopback, small stored series, helpers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from pacslab.config import Config, PacsNode, Timeouts
from pacslab.ingest import Ingest
from pacslab.samples import mr_phantom_datasets, phantom_ct_datasets
from pacslab.store import SliceStore

OUR_AE = "PACSLAB_WIDGETS"
WAIT_S = 60.0


def make_config(node: PacsNode, ae_title: str = OUR_AE) -> Config:
    """Settings for talking to ``node`` with short timeouts."""
    return Config(
        ae_title=ae_title,
        receiver_port=0,
        nodes=(node,),
        default_node=node.name,
        timeouts=Timeouts(connection=3.0, acse=5.0, dimse=20.0, network=20.0),
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settle(view: Any, timeout: float = WAIT_S) -> None:
    """Wait until the view's background work has ended (fails the test on timeout)."""
    assert view.wait(timeout), f"{type(view).__name__} still busy after {timeout} s"


@pytest.fixture
def settled() -> Callable[[Any], None]:
    return settle


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SliceStore]:
    """A store holding a 6-slice 64x64 CT phantom and a 4-position two-channel MR phantom."""
    store = SliceStore(tmp_path_factory.mktemp("widget-store") / "store")
    with Ingest(store) as ingest:
        for ds in phantom_ct_datasets(n_slices=6, size=64):
            ingest.add_dataset(ds)
        for ds in mr_phantom_datasets(n_slices=4, size=32):
            ingest.add_dataset(ds)
    yield store
    store.close()


@pytest.fixture(scope="session")
def ct_uid(small_store: SliceStore) -> str:
    return next(s.series_uid for s in small_store.list_series() if s.modality == "CT")


@pytest.fixture(scope="session")
def mr_uid(small_store: SliceStore) -> str:
    return next(s.series_uid for s in small_store.list_series() if s.modality == "MR")


@pytest.fixture(scope="session")
def sample_series(samples: dict[str, list[Path]]) -> dict[str, dict[str, Any]]:
    """Every sample series by UID: study, modality, description and its files."""
    found: dict[str, dict[str, Any]] = {}
    for files in samples.values():
        for path in files:
            ds = dcmread(path, stop_before_pixels=True)
            entry = found.setdefault(
                ds.SeriesInstanceUID,
                {
                    "study_uid": ds.StudyInstanceUID,
                    "patient_name": str(ds.PatientName),
                    "modality": str(ds.Modality),
                    "files": [],
                },
            )
            entry["files"].append(path)
    return found


@pytest.fixture(scope="session")
def small_series(sample_series: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The smallest sample series with more than one image (quick to retrieve)."""
    candidates = [(len(v["files"]), uid) for uid, v in sample_series.items() if len(v["files"]) > 1]
    _, uid = min(candidates)
    return uid, sample_series[uid]
