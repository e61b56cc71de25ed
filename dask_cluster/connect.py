"""``connect``: a Dask client on the configured scheduler, or on a local cluster sized to the machine."""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

import dask.config
from distributed import Client, LocalCluster
from distributed.security import Security

from dask_cluster.errors import ClusterError
from dask_cluster.plugin import register_processors
from pacslab.config import Config, load_config
from pacslab.processing import Processor, registry

__all__ = ["connect", "local_cluster", "local_cluster_kwargs", "security_for"]

log = logging.getLogger("dask_cluster")


def local_cluster_kwargs(
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    dashboard_address: str | None = "default",
    **kwargs: Any,
) -> dict[str, Any]:
    """Settings of the local cluster: worker processes on loopback, one per core by default.

    ``dashboard_address=None`` turns the dashboard off (tests); the default is
    ``pacslab.cluster.dashboard-address`` (127.0.0.1 only).
    """
    if n_workers is None:
        n_workers = dask.config.get("pacslab.cluster.n-workers", None) or os.cpu_count() or 1
    if threads_per_worker is None:
        threads_per_worker = int(dask.config.get("pacslab.cluster.threads-per-worker", 1))
    if dashboard_address == "default":
        dashboard_address = dask.config.get("pacslab.cluster.dashboard-address", "127.0.0.1:8787")
    if dashboard_address is None:
        # The scheduler serves its HTTP routes even without a dashboard, on 8787 unless told
        # otherwise: a free loopback port keeps parallel clusters from clashing.
        kwargs["scheduler_kwargs"] = {**kwargs.get("scheduler_kwargs", {}), "dashboard": False}
        dashboard_address = "127.0.0.1:0"
    return {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": dashboard_address,
        **kwargs,
    }


def local_cluster(*args: Any, **kwargs: Any) -> LocalCluster:
    """The local cluster ``connect`` starts; also the JupyterLab Dask tab's factory (``dask.yaml``).

    Takes the arguments of :func:`local_cluster_kwargs`.
    """
    return LocalCluster(**local_cluster_kwargs(*args, **kwargs))


def security_for(config: Config) -> Security | None:
    """TLS settings for a ``tls://`` scheduler from the config's CA, certificate and key.

    Raises
    ------
    ClusterError
        A ``tls://`` address without all three files, or a file that does not exist.
    """
    if not config.scheduler_address.startswith("tls://"):
        return None
    files = {
        "scheduler_tls_ca": config.scheduler_tls_ca,
        "scheduler_tls_cert": config.scheduler_tls_cert,
        "scheduler_tls_key": config.scheduler_tls_key,
    }
    paths: dict[str, str] = {}
    for key, value in files.items():
        if not value:
            raise ClusterError(f"{config.scheduler_address} needs TLS files: set {key} in the pacslab config")
        path = Path(value).expanduser()
        if not path.exists():
            raise ClusterError(f"{key} names {value}, which does not exist")
        paths[key] = str(path)
    return Security(
        tls_ca_file=paths["scheduler_tls_ca"],
        tls_client_cert=paths["scheduler_tls_cert"],
        tls_client_key=paths["scheduler_tls_key"],
        require_encryption=True,
    )


def _follow_registry(client: Client) -> None:
    """Re-send the worker plugin when the notebook registers another processor."""
    ref = weakref.ref(client)

    def on_register(proc: Processor) -> None:
        live = ref()
        if live is None or live.status != "running":
            unsubscribe()
            return
        if proc.origin == "decorator":
            register_processors(live)

    unsubscribe = registry.subscribe(on_register)


def connect(config: Config | None = None, *, timeout: float = 10.0, **cluster_kwargs: Any) -> Client:
    """A ``distributed.Client`` ready to run pacslab jobs.

    With ``config.scheduler_address`` set (``tcp://host:port`` or ``tls://host:port``) the
    client joins that scheduler; otherwise a :func:`local_cluster` is started and closed
    with the client. Either way every worker gets pacslab's processor plugin.

    Parameters
    ----------
    config
        pacslab settings (``load_config()`` when ``None``).
    timeout
        Seconds to wait for the scheduler.
    **cluster_kwargs
        Passed to :func:`local_cluster_kwargs` (``n_workers``, ``dashboard_address`` ...).

    Raises
    ------
    ClusterError
        The scheduler is unreachable, TLS files are missing, or workers cannot load pacslab.
    """
    config = config if config is not None else load_config()
    address = config.scheduler_address
    if address:
        if "://" not in address:
            address = "tcp://" + address
        if not address.startswith(("tcp://", "tls://")):
            raise ClusterError(f"scheduler_address {address!r} must start with tcp:// or tls://")
        security = security_for(config) if address.startswith("tls://") else None
        try:
            client = Client(address, security=security, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} ({exc}); start it (dask scheduler) "
                "or clear scheduler_address to use a local cluster"
            ) from exc
    else:
        # A client given cluster settings owns its LocalCluster and closes it on close().
        client = Client(timeout=timeout, **local_cluster_kwargs(**cluster_kwargs))
    try:
        register_processors(client)
    except BaseException:
        client.close()
        raise
    _follow_registry(client)
    return client
