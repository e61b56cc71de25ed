"""Shared fixtures: real peers on loopback (Orthanc, the embedded PACS, a Dask cluster) and data.

Orthanc is skipped with a reason only when it is not installed, and never under ``CI=true``:
CI installs it, so a missing Orthanc there is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pacslab.pacs.orthanc import OrthancServer, orthanc_executable
from pacslab.samples import write_samples

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.pacs.embedded import EmbeddedPacs
    from pacslab.store import SliceStore

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Sample sizes: the full 512x512 phantom is what users get; tests use it where size matters.
SAMPLE_CT_SLICES = 120
SAMPLE_SIZE = 512


def require_tool(name: str, package: str) -> str:
    """Path of a command-line tool, or skip (fail under CI) naming its Debian package."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package!r})"
        if IN_CI:
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Every sample series written once per session: pydicom's series and the phantoms."""
    root = tmp_path_factory.mktemp("samples")
    return write_samples(root, ct_slices=SAMPLE_CT_SLICES, size=SAMPLE_SIZE)


@pytest.fixture(scope="session")
def sample_dir(samples: dict[str, list[Path]]) -> Path:
    """The folder holding every sample set (``pydicom/``, ``ct_phantom/``, ``mr_phantom/``)."""
    return Path(os.path.commonpath([str(p) for files in samples.values() for p in files]))


def _start_orthanc(workdir: Path, **kwargs: Any) -> OrthancServer:
    if orthanc_executable() is None:
        message = "Orthanc is not installed (Debian packages 'orthanc orthanc-dicomweb')"
        if IN_CI:
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    return OrthancServer(workdir, **kwargs).start()


@pytest.fixture(scope="session")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, samples: dict[str, list[Path]]
) -> Iterator[OrthancServer]:
    """A real Orthanc (DICOMweb on, TCP_NODELAY=1) seeded with every sample file."""
    server = _start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        server.upload(p for files in samples.values() for p in files)
        yield server
    finally:
        server.stop()


@pytest.fixture
def empty_orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    """A fresh, empty Orthanc for tests that change or stop it."""
    server = _start_orthanc(tmp_path / "orthanc")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedded_pacs(
    tmp_path_factory: pytest.TempPathFactory, samples: dict[str, list[Path]]
) -> Iterator[EmbeddedPacs]:
    """The embedded PACS on a free loopback port, seeded with every sample file."""
    from pacslab.pacs.embedded import EmbeddedPacs

    node = EmbeddedPacs(tmp_path_factory.mktemp("embedded-pacs"), port=0)
    node.add_files(p for files in samples.values() for p in files)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def store(tmp_path: Path) -> SliceStore:
    """An empty slice store in a temp folder."""
    from pacslab.store import SliceStore

    return SliceStore(tmp_path / "store")


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real Dask cluster: a scheduler and two worker processes of one thread each."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
