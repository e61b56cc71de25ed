"""Settings handed to notebook kernels in tests: a pacslab config file and a clean environment.

Kernels (papermill, nbval, Voilà, JupyterLab) read ``PACSLAB_CONFIG`` like any user session;
``PACSLAB_*`` variables of the test process are dropped so they cannot override the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from pacslab.config import PacsNode

__all__ = ["kernel_env", "use_config", "write_config"]


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path,
    nodes: Sequence[PacsNode],
    store_path: Path,
    scheduler_address: str = "",
    ae_title: str = "PACSLAB_NB",
) -> Path:
    """Write a pacslab TOML config naming ``nodes`` (the first is the default)."""
    lines = [
        f"ae_title = {_toml_string(ae_title)}",
        "receiver_port = 0",
        f"store_path = {_toml_string(str(store_path))}",
        f"scheduler_address = {_toml_string(scheduler_address)}",
        f"default_node = {_toml_string(nodes[0].name)}",
        "",
        "[timeouts]",
        "connection = 5",
        "acse = 10",
        "dimse = 60",
        "network = 120",
    ]
    for node in nodes:
        lines += [
            "",
            "[[nodes]]",
            f"name = {_toml_string(node.name)}",
            f"ae_title = {_toml_string(node.ae_title)}",
            f"host = {_toml_string(node.host)}",
            f"port = {node.port}",
            f"transport = {_toml_string(node.transport)}",
        ]
        if node.dicomweb_url:
            lines.append(f"dicomweb_url = {_toml_string(node.dicomweb_url)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def kernel_env(config_path: Path) -> dict[str, str]:
    """This process's environment without ``PACSLAB_*``, plus ``PACSLAB_CONFIG``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSLAB_")}
    env["PACSLAB_CONFIG"] = str(config_path)
    env["TCP_NODELAY"] = "1"
    return env


def use_config(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Make kernels started by this process read ``config_path``; return their environment."""
    for name in [k for k in os.environ if k.startswith("PACSLAB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PACSLAB_CONFIG", str(config_path))
    return kernel_env(config_path)
