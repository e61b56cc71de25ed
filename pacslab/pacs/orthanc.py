"""A private Orthanc on loopback: its own config and folders, free ports, stopped on exit.

Used by the test fixtures and the benchmarks as the real PACS to talk to, and by anyone who
wants a throw-away Orthanc next to their notebook. Needs Debian's ``orthanc`` (and, for
DICOMweb, ``orthanc-dicomweb``) packages.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import requests

from pacslab.config import PacsNode

__all__ = ["DICOMWEB_PLUGIN", "OrthancServer", "OrthancUnavailable", "free_port", "orthanc_executable"]

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class OrthancUnavailable(RuntimeError):
    """Orthanc is not installed or did not come up; the message says why."""


def orthanc_executable() -> str | None:
    """Path of the Orthanc binary, or ``None`` when the Debian package is missing."""
    return shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancServer:
    """Run Orthanc in ``workdir`` with DICOM and HTTP on free loopback ports.

    Orthanc 1.10 cannot choose the interface of its DICOM port, so remote HTTP access stays
    off and every client here connects to 127.0.0.1.
    """

    def __init__(
        self,
        workdir: Path,
        ae_title: str = "ORTHANC",
        modalities: Mapping[str, tuple[str, int]] | None = None,
        dicomweb: bool = True,
        tcp_nodelay: bool = True,
        startup_timeout: float = 30.0,
        dicom_tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.ae_title = ae_title
        self.host = "127.0.0.1"
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modalities = dict(modalities or {})
        self.dicomweb = dicomweb and DICOMWEB_PLUGIN.exists()
        self.tcp_nodelay = tcp_nodelay
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._session = requests.Session()
        # DICOM TLS on its DICOM port and to its modalities: (certificate, key, trusted CAs).
        self.dicom_tls = dicom_tls

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def node(self) -> PacsNode:
        """This Orthanc as a DIMSE node of the config."""
        return PacsNode(name="orthanc", ae_title=self.ae_title, host=self.host, port=self.dicom_port)

    @property
    def web_node(self) -> PacsNode:
        """This Orthanc as a DICOMweb node of the config."""
        return PacsNode(
            name="orthanc-web",
            ae_title=self.ae_title,
            host=self.host,
            port=self.dicom_port,
            transport="dicomweb",
            dicomweb_url=self.dicomweb_url,
        )

    def config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "Name": "pacslab-orthanc",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": True,
            "OverwriteInstances": True,
            "StorageCompression": False,
            "HttpCompressionEnabled": False,
            "DicomModalities": {ae.lower(): [ae, host, port] for ae, (host, port) in self.modalities.items()},
            "Plugins": [str(DICOMWEB_PLUGIN)] if self.dicomweb else [],
            "DicomWeb": {"Enable": self.dicomweb, "Root": "/dicom-web/"},
        }
        if self.dicom_tls is not None:
            cert, key, trusted = self.dicom_tls
            config.update(
                DicomTlsEnabled=True,
                DicomTlsCertificate=str(cert),
                DicomTlsPrivateKey=str(key),
                DicomTlsTrustedCertificates=str(trusted),
                DicomTlsRemoteCertificateRequired=True,
            )
        return config

    def start(self) -> OrthancServer:
        if self.running:
            return self
        executable = orthanc_executable()
        if executable is None:
            raise OrthancUnavailable(
                "Orthanc is not installed: install the Debian packages 'orthanc orthanc-dicomweb'."
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        env = dict(os.environ)
        if self.tcp_nodelay:
            env["TCP_NODELAY"] = "1"
        else:
            env.pop("TCP_NODELAY", None)
        log = (self.workdir / "orthanc.log").open("ab")
        self._process = subprocess.Popen(
            [executable, str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise OrthancUnavailable(
                    f"Orthanc exited with code {self._process.returncode}; see {self.workdir / 'orthanc.log'}"
                )
            try:
                if self._session.get(f"{self.url}/system", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)  # readiness poll of a child process, not test synchronisation
        self.stop()
        raise OrthancUnavailable(f"Orthanc did not answer on {self.url} within {self.startup_timeout} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Stop Orthanc at once (SIGKILL), as a crash or a power loss would."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def add_modality(self, ae_title: str, host: str, port: int, tls: bool = False) -> None:
        """Tell Orthanc about a C-MOVE destination (or a peer allowed to query); ``tls``: over DICOM TLS."""
        self.modalities[ae_title] = (host, port)
        response = self._session.put(
            f"{self.url}/modalities/{ae_title.lower()}",
            json={"AET": ae_title, "Host": host, "Port": port, "UseDicomTls": tls},
            timeout=10,
        )
        response.raise_for_status()

    def upload(self, paths: Iterable[Path]) -> int:
        """Store files through the REST API; returns how many Orthanc accepted."""
        count = 0
        for path in paths:
            response = self._session.post(f"{self.url}/instances", data=Path(path).read_bytes(), timeout=30)
            response.raise_for_status()
            count += 1
        return count

    def get_json(self, path: str) -> object:
        response = self._session.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
