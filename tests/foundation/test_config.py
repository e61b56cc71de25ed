"""Settings: defaults, the TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacslab.config import ConfigError, PacsNode, load_config


def test_defaults_point_at_the_embedded_pacs(tmp_path: Path) -> None:
    config = load_config(env={"HOME": str(tmp_path)})
    node = config.node()
    assert node == PacsNode(name="embedded", ae_title="PACSLAB_PACS", host="127.0.0.1", port=11112)
    assert config.embedded_pacs.port == node.port
    assert config.scheduler_address == ""
    assert config.source == "built-in defaults"


def test_toml_file_from_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        """
ae_title = "RESEARCH1"
store_path = "~/scans"
scheduler_address = "tcp://127.0.0.1:8786"
default_node = "orthanc-web"

[timeouts]
dimse = 12.5

[[nodes]]
name = "orthanc"
ae_title = "ORTHANC"
port = 4242

[[nodes]]
name = "orthanc-web"
ae_title = "ORTHANC"
transport = "dicomweb"
dicomweb_url = "http://127.0.0.1:8042/dicom-web"
""",
        encoding="utf-8",
    )
    config = load_config(env={"PACSLAB_CONFIG": str(path)})
    assert config.ae_title == "RESEARCH1"
    assert config.store_path == Path("~/scans").expanduser()
    assert config.timeouts.dimse == 12.5
    assert config.timeouts.acse == 10.0  # untouched defaults survive
    assert config.node().transport == "dicomweb"
    assert config.node("orthanc").port == 4242
    assert config.source == str(path)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('receiver_port = 11200\n[[nodes]]\nname = "pacs"\nae_title = "PACS"\n', encoding="utf-8")
    config = load_config(
        path,
        env={
            "PACSLAB_RECEIVER_PORT": "11300",
            "PACSLAB_TIMEOUTS_NETWORK": "5",
            "PACSLAB_EMBEDDED_PACS_ALLOWED_CALLING_AES": "PACSLAB, FINDSCU",
            "PACSLAB_NODE_PACS_PORT": "104",
            "PACSLAB_DEFAULT_NODE": "pacs",
        },
    )
    assert config.receiver_port == 11300
    assert config.timeouts.network == 5.0
    assert config.embedded_pacs.allowed_calling_aes == ("PACSLAB", "FINDSCU")
    assert config.node().port == 104


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("receiver_port = 70000\n", "receiver_port"),
        ('ae_title = "A_TITLE_LONGER_THAN_16"\n', "ae_title"),
        ("[timeouts]\ndimse = -1\n", "timeouts.dimse"),
        ('colour = "blue"\n', "colour"),
        ('[[nodes]]\nname = "x"\nae_title = "X"\ntransport = "ftp"\n', "nodes[0].transport"),
        ('[[nodes]]\nname = "x"\nae_title = "X"\ntransport = "dicomweb"\n', "nodes.x.dicomweb_url"),
        ('[[nodes]]\nname = "x"\n', "nodes[0].ae_title"),
        ('default_node = "nowhere"\n', "default_node"),
        ("this is not toml", "(file)"),
    ],
)
def test_invalid_file_names_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == key
    assert str(path) in str(caught.value)


def test_invalid_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"timeouts\.dimse.*environment.*'soon'"):
        load_config(env={"PACSLAB_TIMEOUTS_DIMSE": "soon", "HOME": "/nonexistent"})
    with pytest.raises(ConfigError, match="PACSLAB_NODE_NOWHERE_PORT"):
        load_config(env={"PACSLAB_NODE_NOWHERE_PORT": "1", "HOME": "/nonexistent"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(env={"PACSLAB_CONFIG": str(tmp_path / "absent.toml")})


def test_unknown_node_lists_the_configured_ones() -> None:
    config = load_config(env={"HOME": "/nonexistent"})
    with pytest.raises(KeyError, match="embedded"):
        config.node("elsewhere")


def _tls_file(tmp_path: Path, text: str) -> str:
    base = tmp_path / "config.toml"
    node = '[[nodes]]\nname = "secure"\nae_title = "PACS"\nport = 2762'
    base.write_text(f'default_node = "secure"\n{node}\n{text}\n')
    return str(base)


def test_a_node_with_tls_files_turns_tls_on(tmp_path: Path) -> None:
    for name in ("ca.pem", "me.pem", "me.key"):
        (tmp_path / name).write_text("PEM")
    path = _tls_file(
        tmp_path,
        f'tls_ca = "{tmp_path}/ca.pem"\ntls_cert = "{tmp_path}/me.pem"\ntls_key = "{tmp_path}/me.key"',
    )
    node = load_config(env={"PACSLAB_CONFIG": path}).node("secure")
    assert node.uses_tls
    assert node.tls_cert == f"{tmp_path}/me.pem"
    assert not PacsNode("plain", "PACS").uses_tls


@pytest.mark.parametrize(
    ("lines", "key", "problem"),
    [
        ('tls_ca = "{d}/missing.pem"', "nodes.secure.tls_ca", "no such file"),
        ('tls_ca = "{d}/ca.pem"\ntls_cert = "{d}/ca.pem"', "nodes.secure.tls_key", "go together"),
        ('tls_cert = "{d}/ca.pem"\ntls_key = "{d}/ca.pem"', "nodes.secure.tls_ca", "whom to trust"),
    ],
)
def test_tls_settings_that_cannot_work_name_the_key(
    tmp_path: Path, lines: str, key: str, problem: str
) -> None:
    (tmp_path / "ca.pem").write_text("PEM")
    path = _tls_file(tmp_path, lines.format(d=tmp_path))
    with pytest.raises(ConfigError, match=problem) as caught:
        load_config(env={"PACSLAB_CONFIG": path})
    assert caught.value.key == key


def test_tls_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    path = _tls_file(tmp_path, "")
    env = {"PACSLAB_CONFIG": path, "PACSLAB_NODE_SECURE_TLS_CA": str(tmp_path / "nowhere.pem")}
    with pytest.raises(ConfigError, match="no such file") as caught:
        load_config(env=env)
    assert caught.value.key == "PACSLAB_NODE_SECURE_TLS_CA"


def test_receiver_tls_settings_are_checked(tmp_path: Path) -> None:
    (tmp_path / "me.pem").write_text("PEM")
    path = tmp_path / "config.toml"
    path.write_text(f'receiver_tls_cert = "{tmp_path}/me.pem"\n')
    with pytest.raises(ConfigError, match="go together") as caught:
        load_config(env={"PACSLAB_CONFIG": str(path)})
    assert caught.value.key == "receiver_tls_key"
    path.write_text(f'receiver_tls_ca = "{tmp_path}/me.pem"\n')
    with pytest.raises(ConfigError, match="needs its certificate"):
        load_config(env={"PACSLAB_CONFIG": str(path)})
    path.write_text(f'receiver_tls_cert = "{tmp_path}/me.pem"\nreceiver_tls_key = "{tmp_path}/me.pem"\n')
    assert load_config(env={"PACSLAB_CONFIG": str(path)}).receiver_tls_cert == f"{tmp_path}/me.pem"
