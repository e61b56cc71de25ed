"""Notebook tests: a small embedded PACS, a config file for the kernels, the test Dask cluster.

Kernels started by papermill and nbval inherit this process's environment, so the fixture
``kernel_environment`` sets ``PACSLAB_CONFIG`` in it for the test that asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pacslab.samples import write_samples
from tests.notebooks.kernel_env import use_config, write_config

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.pacs.embedded import EmbeddedPacs

# Small phantoms: the notebooks do the same work on them, in a fraction of the time.
NOTEBOOK_CT_SLICES = 16
NOTEBOOK_SIZE = 128
NOTEBOOK_MR_SLICES = 8


@pytest.fixture(scope="session")
def notebook_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPacs]:
    """An embedded PACS of its own (the notebooks send results to it), seeded with small samples."""
    from pacslab.pacs.embedded import EmbeddedPacs

    written = write_samples(
        tmp_path_factory.mktemp("notebook-samples"),
        ct_slices=NOTEBOOK_CT_SLICES,
        size=NOTEBOOK_SIZE,
        mr_slices=NOTEBOOK_MR_SLICES,
    )
    node = EmbeddedPacs(tmp_path_factory.mktemp("notebook-pacs"), port=0)
    node.add_files(p for files in written.values() for p in files)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def notebook_config(
    tmp_path_factory: pytest.TempPathFactory, notebook_pacs: EmbeddedPacs, dask_client: Client
) -> Path:
    """The config file the notebooks' kernels read: the small PACS, a store, the test cluster."""
    root = tmp_path_factory.mktemp("notebook-env")
    address = dask_client.scheduler.address  # type: ignore[union-attr]
    return write_config(root / "pacslab.toml", [notebook_pacs.node], root / "store", address)


@pytest.fixture
def kernel_environment(notebook_config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Kernels started during the test read ``notebook_config``."""
    return use_config(notebook_config, monkeypatch)
