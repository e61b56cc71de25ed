"""Typed settings: PACS nodes, our own AE, the store, the Dask scheduler.

Settings come from three layers, later ones winning:

1. built-in defaults that point at the embedded PACS on loopback;
2. a TOML file: ``$PACSLAB_CONFIG``, else ``~/.config/pacslab/config.toml`` when it exists;
3. environment variables ``PACSLAB_<KEY>`` (``PACSLAB_STORE_PATH``, ``PACSLAB_TIMEOUTS_DIMSE``,
   ``PACSLAB_EMBEDDED_PACS_PORT``, ``PACSLAB_NODE_<NAME>_<FIELD>`` ...).

An invalid value raises :class:`ConfigError` naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = [
    "Config",
    "ConfigError",
    "EmbeddedPacsSettings",
    "PacsNode",
    "Timeouts",
    "Transport",
    "default_config_path",
    "load_config",
]

Transport = Literal["dimse", "dicomweb"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)
ENV_PREFIX = "PACSLAB_"


class ConfigError(ValueError):
    """A setting is missing, of the wrong type or out of range; the message names key and source."""

    def __init__(self, key: str, source: str, problem: str) -> None:
        self.key = key
        self.source = source
        self.problem = problem
        super().__init__(f"invalid setting {key!r} in {source}: {problem}")


@dataclass(frozen=True)
class PacsNode:
    """A PACS we talk to: its DIMSE address and, for DICOMweb, its base URL."""

    name: str
    ae_title: str
    host: str = "127.0.0.1"
    port: int = 11112
    transport: Transport = "dimse"
    dicomweb_url: str = ""
    # DICOM TLS (PS3.15 annex B): the PEM file of the authorities we trust for this PACS turns
    # TLS on; our certificate and key are shown when the PACS asks for them.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca)


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each stage of a DICOM exchange."""

    connection: float = 5.0
    acse: float = 10.0
    dimse: float = 30.0
    network: float = 60.0


@dataclass(frozen=True)
class EmbeddedPacsSettings:
    """The demo PACS that pacslab runs itself (``pacslab pacs serve``)."""

    ae_title: str = "PACSLAB_PACS"
    host: str = "127.0.0.1"
    port: int = 11112
    root: Path = field(default_factory=lambda: Path("~/.local/share/pacslab/pacs").expanduser())
    # Calling AE titles allowed to associate; empty means any.
    allowed_calling_aes: tuple[str, ...] = ()


def _default_nodes() -> tuple[PacsNode, ...]:
    return (PacsNode(name="embedded", ae_title="PACSLAB_PACS", host="127.0.0.1", port=11112),)


@dataclass(frozen=True)
class Config:
    """Everything pacslab needs to know about its surroundings."""

    ae_title: str = "PACSLAB"
    receiver_port: int = 11113
    # DICOM TLS on our receiver (the C-MOVE destination): its certificate and key, and the CA
    # whose certificates senders must show (empty: any sender, as over plain TCP).
    receiver_tls_cert: str = ""
    receiver_tls_key: str = ""
    receiver_tls_ca: str = ""
    store_path: Path = field(default_factory=lambda: Path("~/pacslab-store").expanduser())
    scheduler_address: str = ""  # empty: start a LocalCluster
    scheduler_tls_ca: str = ""
    scheduler_tls_cert: str = ""
    scheduler_tls_key: str = ""
    default_node: str = "embedded"
    nodes: tuple[PacsNode, ...] = field(default_factory=_default_nodes)
    timeouts: Timeouts = field(default_factory=Timeouts)
    embedded_pacs: EmbeddedPacsSettings = field(default_factory=EmbeddedPacsSettings)
    source: str = "built-in defaults"

    def node(self, name: str | None = None) -> PacsNode:
        """The node called ``name`` (the default node when ``None``)."""
        wanted = name or self.default_node
        for node in self.nodes:
            if node.name == wanted:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise KeyError(f"No PACS node named {wanted!r} (configured: {known})")


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("PACSLAB_CONFIG"):
        return Path(env["PACSLAB_CONFIG"]).expanduser()
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".config" / "pacslab" / "config.toml"


def _coerce(key: str, source: str, value: Any, target: Any) -> Any:
    """Convert ``value`` to the type of the default ``target``, or raise ConfigError."""
    if isinstance(target, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        raise ConfigError(key, source, f"expected true or false, got {value!r}")
    if isinstance(target, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(key, source, f"expected an integer, got {value!r}") from None
        if key.endswith("port") and not 0 <= number <= 65535:
            raise ConfigError(key, source, f"port must be between 0 and 65535, got {number}")
        return number
    if isinstance(target, float):
        try:
            number_f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, source, f"expected a number of seconds, got {value!r}") from None
        if number_f <= 0:
            raise ConfigError(key, source, f"must be positive, got {number_f}")
        return number_f
    if isinstance(target, Path):
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(key, source, f"expected a path, got {value!r}")
        return Path(value).expanduser()
    if isinstance(target, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(key, source, f"expected a list of strings, got {value!r}")
    if not isinstance(value, str):
        raise ConfigError(key, source, f"expected a string, got {value!r}")
    return value


def _check_ae(key: str, source: str, value: str) -> str:
    if not value or len(value) > 16 or "\\" in value or not value.isprintable():
        raise ConfigError(key, source, f"an AE title is 1-16 printable characters, got {value!r}")
    return value


def _merge(obj: Any, values: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """Return a copy of dataclass ``obj`` with ``values`` applied and checked."""
    known = {f.name: f for f in dataclasses.fields(obj) if f.name not in {"nodes", "source"}}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(full, source, f"unknown setting (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(full, source, "expected a table")
            changes[key] = _merge(current, value, source, prefix=f"{full}.")
        else:
            changes[key] = _coerce(full, source, value, current)
            if key == "ae_title":
                _check_ae(full, source, changes[key])
            if key == "transport" and changes[key] not in TRANSPORTS:
                raise ConfigError(full, source, f"expected one of {TRANSPORTS}, got {value!r}")
    return dataclasses.replace(obj, **changes)


def _nodes_from(raw: Any, source: str) -> tuple[PacsNode, ...]:
    if not isinstance(raw, list):
        raise ConfigError("nodes", source, "expected an array of tables ([[nodes]])")
    nodes = []
    for i, item in enumerate(raw):
        key = f"nodes[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(key, source, "expected a table")
        for required in ("name", "ae_title"):
            if required not in item:
                raise ConfigError(f"{key}.{required}", source, "missing")
        template = PacsNode(name=str(item["name"]), ae_title=str(item["ae_title"]))
        nodes.append(_merge(template, item, source, prefix=f"{key}."))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError("nodes", source, f"node names must be unique, got {names}")
    for node in nodes:
        if node.transport == "dicomweb" and not node.dicomweb_url:
            raise ConfigError(f"nodes.{node.name}.dicomweb_url", source, "required for dicomweb")
        _check_tls(node, source, f"nodes.{node.name}.")
    return tuple(nodes)


def _check_tls(settings: Any, source: str, prefix: str, stem: str = "tls_", client: bool = True) -> None:
    """TLS settings name files that exist, and a certificate comes with its key.

    ``stem`` names the fields (``tls_`` of a node, ``receiver_tls_`` of our receiver); a client
    must say whom it trusts, a server may take any peer.
    """

    def name(key: str) -> str:  # environment variables are named in capitals
        return f"{prefix}{key.upper()}" if prefix.startswith(ENV_PREFIX) else f"{prefix}{key}"

    ca, cert, key = (f"{stem}{part}" for part in ("ca", "cert", "key"))
    if client and (getattr(settings, cert) or getattr(settings, key)) and not getattr(settings, ca):
        raise ConfigError(name(ca), source, f"required with {cert}/{key} (whom to trust)")
    if bool(getattr(settings, cert)) != bool(getattr(settings, key)):
        raise ConfigError(name(key), source, f"{cert} and {key} go together")
    if not client and getattr(settings, ca) and not getattr(settings, cert):
        raise ConfigError(name(cert), source, f"required with {ca} (a TLS server needs its certificate)")
    for field_name in (ca, cert, key):
        value = getattr(settings, field_name)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(name(field_name), source, f"no such file: {value}")


def _env_layer(config: Config, env: Mapping[str, str]) -> Config:
    source = "environment"
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    node_changes: dict[str, dict[str, Any]] = {}
    sections = {
        f.name for f in dataclasses.fields(config) if dataclasses.is_dataclass(getattr(config, f.name))
    }
    node_names = {n.name.upper(): n.name for n in config.nodes}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "PACSLAB_CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key.startswith("node_"):
            rest = name[len(ENV_PREFIX) + 5 :]
            for upper, real in node_names.items():
                if rest.startswith(upper + "_"):
                    node_changes.setdefault(real, {})[rest[len(upper) + 1 :].lower()] = value
                    break
            else:
                raise ConfigError(
                    name, source, f"no PACS node matches (configured: {list(node_names.values())})"
                )
            continue
        for section in sections:
            if key.startswith(section + "_"):
                nested.setdefault(section, {})[key[len(section) + 1 :]] = value
                break
        else:
            flat[key] = value
    merged = _merge(config, {**flat, **nested}, source)
    if node_changes:
        nodes = tuple(
            _merge(n, node_changes.get(n.name, {}), source, prefix=f"PACSLAB_NODE_{n.name.upper()}_")
            for n in merged.nodes
        )
        for node in nodes:
            if node.name in node_changes:
                _check_tls(node, source, f"PACSLAB_NODE_{node.name.upper()}_")
        merged = dataclasses.replace(merged, nodes=nodes)
    return merged


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the settings: defaults, then the TOML file, then ``PACSLAB_*`` variables."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get("PACSLAB_CONFIG"))
    file = Path(path).expanduser() if path is not None else default_config_path(env)
    config = Config()
    if file.exists():
        source = str(file)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("(file)", source, f"not valid TOML: {exc}") from None
        nodes = raw.pop("nodes", None)
        config = _merge(config, raw, source)
        if nodes is not None:
            config = dataclasses.replace(config, nodes=_nodes_from(nodes, source))
        config = dataclasses.replace(config, source=source)
    elif explicit:
        raise ConfigError("PACSLAB_CONFIG", str(file), "file does not exist")
    config = _env_layer(config, env)
    if config.nodes and config.default_node not in {n.name for n in config.nodes}:
        raise ConfigError("default_node", config.source, f"no node named {config.default_node!r}")
    _check_tls(config, config.source, "", stem="receiver_tls_", client=False)
    return config
