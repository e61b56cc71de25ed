"""Dask for pacslab: ``connect(config)`` gives a client on the configured scheduler or a local cluster.

Importing this package loads ``dask.yaml`` beside it as Dask defaults (allowed failures,
no-workers timeout, the local cluster's size and dashboard, the JupyterLab Dask tab's factory).
"""

from pathlib import Path

import dask.config
import distributed  # noqa: F401 - its defaults must be loaded first, so these replace them
import yaml

dask.config.update_defaults(
    yaml.safe_load((Path(__file__).with_name("dask.yaml")).read_text(encoding="utf-8"))
)

from dask_cluster.connect import connect, local_cluster, local_cluster_kwargs, security_for  # noqa: E402
from dask_cluster.errors import ClusterError  # noqa: E402
from dask_cluster.plugin import PLUGIN_NAME, ProcessorsPlugin, register_processors  # noqa: E402

__all__ = [
    "PLUGIN_NAME",
    "ClusterError",
    "ProcessorsPlugin",
    "connect",
    "local_cluster",
    "local_cluster_kwargs",
    "register_processors",
    "security_for",
]
