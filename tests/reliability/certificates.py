"""Throw-away certificate authorities and certificates for loopback TLS (made with the openssl CLI)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Authority", "Certificate", "client_context", "server_context"]


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA that signs certificates for 127.0.0.1."""

    folder: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.folder / f"{self.name}-ca.pem"

    @classmethod
    def create(cls, folder: Path, name: str) -> Authority:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("openssl is not installed (Debian package 'openssl')")
        authority = cls(folder, name)
        key = folder / f"{name}-ca.key"
        _run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
              "-out", str(authority.cert), "-days", "2", "-subj", f"/CN={name} test CA"])  # fmt: skip
        return authority

    def issue(self, common_name: str) -> Certificate:
        """A certificate for ``common_name`` valid for the address 127.0.0.1, signed by this CA."""
        stem = self.folder / f"{self.name}-{common_name}"
        key, csr, cert, ext = (stem.with_suffix(s) for s in (".key", ".csr", ".pem", ".cnf"))
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
              "-subj", f"/CN={common_name}"])  # fmt: skip
        _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert),
              "-CAkey", str(self.folder / f"{self.name}-ca.key"), "-CAcreateserial", "-out", str(cert),
              "-days", "2", "-extfile", str(ext)])  # fmt: skip
        return Certificate(cert, key)


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def server_context(authority: Authority, own: Certificate) -> ssl.SSLContext:
    """A server that shows ``own`` and accepts only clients with a certificate ``authority`` signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(authority.cert))
    context.load_cert_chain(str(own.cert), str(own.key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(trusted: Authority | None, own: Certificate | None) -> ssl.SSLContext:
    """A client that trusts ``trusted`` (the system's CAs when None) and shows ``own`` if given."""
    cafile = str(trusted.cert) if trusted is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if own is not None:
        context.load_cert_chain(str(own.cert), str(own.key))
    return context
