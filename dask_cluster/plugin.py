"""The worker plugin that makes pacslab and the notebook's processors available on every worker."""

from __future__ import annotations

import logging
from typing import Any

from distributed import Client, WorkerPlugin

from pacslab.processing import Processor, registry
from pacslab.store.results import pacslab_version

__all__ = ["PLUGIN_NAME", "ProcessorsPlugin", "register_processors"]

PLUGIN_NAME = "pacslab-processors"
log = logging.getLogger("dask_cluster")


class ProcessorsPlugin(WorkerPlugin):
    """On every worker (also ones that join later): import pacslab's processors and register
    the ones defined in the notebook, which travel inside the plugin (cloudpickle).

    Parameters
    ----------
    processors
        Processors a worker cannot import by itself (``registry.shippable()``).
    client_version
        pacslab version of the client, compared with the worker's.
    """

    name = PLUGIN_NAME

    def __init__(self, processors: list[Processor], client_version: str) -> None:
        self.processors = processors
        self.client_version = client_version

    def setup(self, worker: Any) -> None:
        from pacslab.processing import registry as worker_registry

        here = pacslab_version()
        if here != self.client_version:
            log.warning(
                "worker %s runs pacslab %s, the client %s; results record each processor's version",
                getattr(worker, "address", "?"),
                here,
                self.client_version,
            )
        for proc in self.processors:
            # No listeners: in a threads-only local cluster this registry is the client's own,
            # whose listener would send the plugin again from inside this setup.
            worker_registry.register(proc, notify=False)


def register_processors(client: Client) -> None:
    """Send pacslab's worker plugin with every notebook-registered processor to the cluster.

    ``connect`` calls this, and again whenever a processor is registered afterwards.

    Raises
    ------
    ClusterError
        The workers cannot load the plugin (pacslab missing or another Python there).
    """
    from dask_cluster.errors import ClusterError

    plugin = ProcessorsPlugin(registry.shippable(), pacslab_version())
    try:
        # One plugin per client: a second notebook or the dashboard must not replace this
        # client's processors on workers that restart later.
        client.register_plugin(plugin, name=f"{PLUGIN_NAME}-{client.id}")
    except (ImportError, AttributeError, TypeError) as exc:
        raise ClusterError(
            f"the Dask workers cannot load pacslab ({exc}); install pacslab (the same version) in "
            "every worker's environment"
        ) from exc
