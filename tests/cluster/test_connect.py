"""dask_cluster.connect: a local cluster by default, a configured scheduler otherwise, clear errors."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest

import dask_cluster
from dask_cluster import ClusterError
from pacslab.config import Config
from pacslab.processing import processor, registry


def _names_on_workers() -> list[str]:
    from pacslab.processing import registry as worker_registry

    return worker_registry.names()


def test_defaults_come_from_dask_yaml() -> None:
    assert dask.config.get("distributed.scheduler.allowed-failures") == 1
    assert dask.config.get("distributed.scheduler.no-workers-timeout") == "60s"
    assert dask.config.get("labextension.factory.module") == "dask_cluster"
    assert dask.config.get("labextension.factory.class") == "local_cluster"
    assert dask_cluster.local_cluster_kwargs()["dashboard_address"].startswith("127.0.0.1:")


def test_local_cluster_gets_notebook_processors_also_when_registered_later() -> None:
    client = dask_cluster.connect(Config(), n_workers=1, dashboard_address=None)
    cluster = client.cluster
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")

        @processor(name="test_later", version="7")
        def later(pixels: np.ndarray) -> np.ndarray:
            return pixels

        [names] = client.run(_names_on_workers).values()
        assert "test_later" in names
        assert "otsu_mask" in names
    finally:
        registry._processors.pop("test_later", None)
        client.close()
    assert cluster.status.name == "closed"


def test_unreachable_scheduler_is_a_clear_error() -> None:
    from tests.cluster.conftest import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        dask_cluster.connect(Config(scheduler_address=address), timeout=1)


def test_bad_addresses_and_missing_tls_files(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="must start with tcp:// or tls://"):
        dask_cluster.connect(Config(scheduler_address="ws://127.0.0.1:1"))
    with pytest.raises(ClusterError, match="set scheduler_tls_ca in the pacslab config"):
        dask_cluster.connect(Config(scheduler_address="tls://127.0.0.1:1"))
    missing = str(tmp_path / "ca.pem")
    config = Config(
        scheduler_address="tls://127.0.0.1:1",
        scheduler_tls_ca=missing,
        scheduler_tls_cert=missing,
        scheduler_tls_key=missing,
    )
    with pytest.raises(ClusterError, match=r"scheduler_tls_ca names .*ca\.pem, which does not exist"):
        dask_cluster.connect(config)
