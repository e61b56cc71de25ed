"""Item 12: only configured callers get in — DICOM AE titles and hosts, DICOM TLS, a TLS Dask
scheduler, and token authentication on Jupyter and Voilà outside the loopback demo.

Every test counts the attempts that should fail and checks that each did, next to one that
must succeed (so a refusal is not just a broken server).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from distributed import Client
from distributed.security import Security
from pydicom.uid import CTImageStorage
from pynetdicom import AE

import dask_cluster
from pacslab.config import Config, PacsNode, Timeouts
from pacslab.pacs import PacsError, ReceivedInstance, TlsFailed
from pacslab.pacs.association import VERIFICATION
from pacslab.pacs.dicomweb import DicomwebClient
from pacslab.pacs.dimse import DimseClient
from pacslab.pacs.embedded import EmbeddedPacs
from pacslab.pacs.orthanc import OrthancServer
from pacslab.pacs.receiver import Receiver
from tests.reliability.certificates import Authority, Certificate, client_context, server_context
from tests.reliability.conftest import Figures, free_port
from tests.reliability.dicom_bytes import encode, series
from tests.reliability.https_proxy import HttpsProxy
from tests.reliability.plain_cluster import PlainScheduler
from tests.servers import BIN, ServerProcess

ITEM = 12
ELSEWHERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): an allowed host that is not this one

pytestmark = pytest.mark.timeout(240)


def _associates(port: int, called: str, calling: str, tls: Any = None, context: str = VERIFICATION) -> bool:
    ae = AE(calling)
    ae.add_requested_context(context)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls)
    established = bool(assoc.is_established)
    if established:
        assoc.release()
    elif assoc.dul.socket is not None and assoc.dul.socket.socket is not None:
        assoc.dul.socket.socket.close()  # pynetdicom leaves a refused socket open
    return established


def _config(node: PacsNode, ae_title: str) -> Config:
    return Config(ae_title=ae_title, nodes=(node,), default_node=node.name, timeouts=Timeouts(3, 5, 5, 5))


def _echo_refused(node: PacsNode, ae_title: str, seconds: bool = False) -> str | None:
    """The named error of a C-ECHO from pacslab's client (and how long it took), or None if it got in."""
    started = time.monotonic()
    try:
        DimseClient(node, _config(node, ae_title)).echo()
    except PacsError as exc:
        took = f" after {time.monotonic() - started:.1f} s" if seconds else ""
        return type(exc).__name__ + took
    return None


def test_our_receiver_takes_only_configured_calling_aes(figures: Figures) -> None:
    config = _config(PacsNode("x", "X"), "PACSLAB_REL")
    with Receiver(config, port=0, allowed_calling_aes=["TRUSTED"]) as receiver:
        stranger = _associates(receiver.port, "PACSLAB_REL", "STRANGER", context=CTImageStorage)
        trusted = _associates(receiver.port, "PACSLAB_REL", "TRUSTED", context=CTImageStorage)
    figures("receiver: unknown calling AE refused", not stranger)
    assert trusted
    assert not stranger


def test_our_receiver_takes_only_allowed_hosts(figures: Figures) -> None:
    config = _config(PacsNode("x", "X"), "PACSLAB_REL")
    with Receiver(config, port=0, allowed_calling_aes=["TRUSTED"], allowed_hosts=["127.0.0.1"]) as receiver:
        here = _associates(receiver.port, "PACSLAB_REL", "TRUSTED", context=CTImageStorage)
    with Receiver(config, port=0, allowed_calling_aes=["TRUSTED"], allowed_hosts=[ELSEWHERE]) as receiver:
        node = PacsNode("receiver", "PACSLAB_REL", "127.0.0.1", receiver.port)
        refusal = _echo_refused(node, "TRUSTED", seconds=True)
    figures("receiver: a connection from a host not allowed", refusal)
    assert here
    assert refusal is not None
    assert refusal.startswith("AssociationAborted")


def test_the_embedded_pacs_takes_only_configured_callers_and_hosts(tmp_path: Path, figures: Figures) -> None:
    with EmbeddedPacs(tmp_path / "a", port=0, allowed_calling_aes=["TRUSTED"]) as pacs:
        stranger = _echo_refused(pacs.node, "STRANGER")
        trusted = _echo_refused(pacs.node, "TRUSTED")
        wrong_called = _echo_refused(PacsNode("p", "NOT_THE_PACS", "127.0.0.1", pacs.port), "TRUSTED")
    with EmbeddedPacs(
        tmp_path / "b", port=0, allowed_calling_aes=["TRUSTED"], allowed_hosts=[ELSEWHERE]
    ) as pacs:
        wrong_host = _echo_refused(pacs.node, "TRUSTED", seconds=True)
    refusals = {"unknown calling AE": stranger, "wrong called AE": wrong_called, "another host": wrong_host}
    figures("embedded PACS refusals", refusals)
    assert trusted is None
    assert all(refusals.values())
    assert stranger == wrong_called == "AssociationRejected"
    assert wrong_host is not None
    assert wrong_host.startswith("AssociationAborted")


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    """The site's CA and a stranger's CA."""
    folder = tmp_path_factory.mktemp("pki")
    return Authority.create(folder, "site"), Authority.create(folder, "stranger")


def test_dicom_over_tls_takes_only_peers_with_a_site_certificate(
    tmp_path: Path, authorities: tuple[Authority, Authority], figures: Figures
) -> None:
    site, stranger = authorities
    server = server_context(site, site.issue("pacs"))
    member, outsider = site.issue("workstation"), stranger.issue("workstation")
    with EmbeddedPacs(tmp_path / "pacs", port=0, tls=server) as pacs:
        port, called = pacs.port, pacs.ae_title
        member_gets_in = _associates(port, called, "PACSLAB", (client_context(site, member), "127.0.0.1"))
        attempts = {
            "plain TCP": _associates(port, called, "PACSLAB"),
            "TLS without a certificate": _associates(
                port, called, "PACSLAB", (client_context(site, None), "127.0.0.1")
            ),
            "TLS with a stranger's certificate": _associates(
                port, called, "PACSLAB", (client_context(site, outsider), "127.0.0.1")
            ),
            "TLS not trusting the PACS": _associates(
                port, called, "PACSLAB", (client_context(stranger, outsider), "127.0.0.1")
            ),
        }
    figures(
        "DICOM TLS: unauthorised attempts refused",
        f"{sum(not v for v in attempts.values())} of {len(attempts)}",
    )
    assert member_gets_in
    assert not any(attempts.values()), attempts


def _tls_node(port: int, called: str, trusted: Authority, own: Certificate | None) -> PacsNode:
    return PacsNode(
        "tls", called, "127.0.0.1", port,
        tls_ca=str(trusted.cert), tls_cert=str(own.cert) if own else "", tls_key=str(own.key) if own else "",
    )  # fmt: skip


def test_pacslab_queries_and_retrieves_from_a_tls_pacs(
    tmp_path: Path, authorities: tuple[Authority, Authority], figures: Figures
) -> None:
    site, stranger = authorities
    mine = site.issue("pacslab")
    files = tmp_path / "files"
    files.mkdir()
    slices = series(3, rows=8, cols=8)
    for i, ds in enumerate(slices):
        (files / f"{i}.dcm").write_bytes(encode(ds))
    study, series_uid = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    with EmbeddedPacs(tmp_path / "pacs", port=0, tls=server_context(site, site.issue("pacs2"))) as pacs:
        pacs.add_files([files])
        node = _tls_node(pacs.port, pacs.ae_title, site, mine)
        client = DimseClient(node, _config(node, "PACSLAB"))
        client.echo()
        found = client.find_studies(study_uid=study)
        got: list[ReceivedInstance] = []
        result = client.retrieve_series(study, series_uid, on_instance=got.append, method="c-get")
        refusals = {
            "no certificate of ours": _echo_refused(
                _tls_node(pacs.port, pacs.ae_title, site, None), "PACSLAB"
            ),
            "PACS signed by a CA we do not trust": _echo_refused(
                _tls_node(pacs.port, pacs.ae_title, stranger, mine), "PACSLAB"
            ),
            "plain TCP": _echo_refused(PacsNode("plain", pacs.ae_title, "127.0.0.1", pacs.port), "PACSLAB"),
        }
    figures("pacslab's DICOM TLS client: refused without the right certificates", refusals)
    assert [s.study_uid for s in found] == [study]
    assert result.status == "success"
    assert sorted(r.sop_instance_uid for r in got) == sorted(str(ds.SOPInstanceUID) for ds in slices)
    assert refusals["no certificate of ours"] == "TlsFailed"
    assert refusals["PACS signed by a CA we do not trust"] == "TlsFailed"
    assert refusals["plain TCP"] is not None


def test_tls_failures_name_the_certificate_problem(
    tmp_path: Path, authorities: tuple[Authority, Authority]
) -> None:
    site, stranger = authorities
    with EmbeddedPacs(tmp_path / "pacs", port=0, tls=server_context(site, site.issue("pacs3"))) as pacs:
        node = _tls_node(pacs.port, pacs.ae_title, stranger, site.issue("ws"))
        with pytest.raises(TlsFailed, match="CERTIFICATE_VERIFY_FAILED") as caught:
            DimseClient(node, _config(node, "PACSLAB")).echo()
    assert caught.value.port == pacs.port
    bad = tmp_path / "not-a-certificate.pem"
    bad.write_text("not PEM")
    with pytest.raises(TlsFailed, match="cannot load the certificate files"):
        DimseClient(PacsNode("tls", "X", "127.0.0.1", pacs.port, tls_ca=str(bad)), Config()).echo()


def test_dicomweb_over_https_trusts_only_the_configured_authority(
    orthanc: Any, authorities: tuple[Authority, Authority], figures: Figures
) -> None:
    site, stranger = authorities
    mine = site.issue("pacslab-web")
    with HttpsProxy(orthanc.url, server_context(site, site.issue("web"))) as proxy:

        def node(trusted: Authority | None, own: Certificate | None = mine) -> PacsNode:
            return replace(
                orthanc.web_node,
                dicomweb_url=f"https://127.0.0.1:{proxy.port}/dicom-web",
                tls_ca=str(trusted.cert) if trusted else "",
                tls_cert=str(own.cert) if own and trusted else "",
                tls_key=str(own.key) if own and trusted else "",
            )

        def refused(web: PacsNode) -> str | None:
            try:
                DicomwebClient(web, _config(web, "PACSLAB")).echo()
            except PacsError as exc:
                return type(exc).__name__
            return None

        client = DicomwebClient(node(site), _config(node(site), "PACSLAB"))
        found = client.find_studies(limit=3)
        refusals = {
            "PACS signed by a CA we do not trust": refused(node(stranger)),
            "no certificate of ours": refused(node(site, None)),
            "system CAs only": refused(node(None)),
        }
    figures("DICOMweb over HTTPS: refused without the right certificates", refusals)
    assert len(found) == 3
    assert refusals == dict.fromkeys(refusals, "TlsFailed")


def test_c_move_from_a_tls_orthanc_reaches_our_receiver_over_tls(
    tmp_path: Path, authorities: tuple[Authority, Authority], figures: Figures
) -> None:
    site, stranger = authorities
    pacs_cert, mine, outsider = site.issue("orthanc-dicom"), site.issue("pacslab-move"), stranger.issue("x")
    files = tmp_path / "files"
    files.mkdir()
    slices = series(3, rows=8, cols=8)
    for i, ds in enumerate(slices):
        (files / f"{i}.dcm").write_bytes(encode(ds))
    port = free_port()
    tls = {"tls_ca": str(site.cert), "tls_cert": str(mine.cert), "tls_key": str(mine.key)}
    try:
        with OrthancServer(
            tmp_path / "orthanc", dicom_tls=(pacs_cert.cert, pacs_cert.key, site.cert)
        ) as orthanc:
            orthanc.upload(sorted(files.iterdir()))
            orthanc.add_modality("PACSLAB_TLS", "127.0.0.1", port, tls=True)
            node = replace(orthanc.node, **tls)
            config = Config(
                ae_title="PACSLAB_TLS",
                receiver_port=port,
                receiver_tls_cert=str(mine.cert),
                receiver_tls_key=str(mine.key),
                receiver_tls_ca=str(site.cert),
                nodes=(node,),
                default_node=node.name,
                timeouts=Timeouts(5, 10, 30, 30),
            )
            got: list[ReceivedInstance] = []
            result = DimseClient(node, config).retrieve_series(
                str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID), on_instance=got.append,
                method="c-move",
            )  # fmt: skip
            attempts = {
                "plain TCP": _associates(port, "PACSLAB_TLS", "ORTHANC", context=CTImageStorage),
                "TLS with a stranger's certificate": _associates(
                    port,
                    "PACSLAB_TLS",
                    "ORTHANC",
                    (client_context(site, outsider), "127.0.0.1"),
                    CTImageStorage,
                ),
            }
    finally:
        Receiver.stop_shared()
    figures(
        "our receiver over DICOM TLS: unauthorised senders refused",
        f"{sum(not v for v in attempts.values())} of 2",
    )
    assert result.status == "success"
    assert sorted(r.sop_instance_uid for r in got) == sorted(str(ds.SOPInstanceUID) for ds in slices)
    assert not any(attempts.values()), attempts


def test_dcmtk_echoscu_reaches_the_embedded_pacs_over_tls(
    tmp_path: Path, authorities: tuple[Authority, Authority]
) -> None:
    site, stranger = authorities
    own, foreign = site.issue("dcmtk"), stranger.issue("dcmtk")
    with EmbeddedPacs(tmp_path / "pacs", port=0, tls=server_context(site, site.issue("pacs4"))) as pacs:

        def echoscu(cert: Certificate) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["echoscu", "+tls", str(cert.key), str(cert.cert), "+cf", str(site.cert),
                 "-aec", pacs.ae_title, "-aet", "DCMTK", "127.0.0.1", str(pacs.port)],
                check=False, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        member, outsider = echoscu(own), echoscu(foreign)
    assert member.returncode == 0, member.stderr
    assert outsider.returncode != 0


def test_a_tls_dask_scheduler_refuses_plain_and_foreign_clients(
    tmp_path: Path, authorities: tuple[Authority, Authority], figures: Figures
) -> None:
    site, stranger = authorities
    own, foreign = site.issue("dask"), stranger.issue("dask")
    tls = ("--tls-ca-file", str(site.cert), "--tls-cert", str(own.cert), "--tls-key", str(own.key))
    cluster = PlainScheduler(tmp_path, protocol="tls", extra=tls)

    def refused(address: str, security: Security | None) -> bool:
        try:
            Client(address, security=security, timeout=5).close()
        except (OSError, TimeoutError):
            return True
        return False

    def refused_without_certificate() -> bool:
        """A TLS client trusting the scheduler but showing no certificate of its own."""
        context = client_context(site, None)
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"\0" * 8)
                    return tls.recv(1) == b""  # TLS 1.3 reports the refusal on the first read
            except (ssl.SSLError, OSError):
                return True

    try:
        good = Config(
            scheduler_address=cluster.address,
            scheduler_tls_ca=str(site.cert),
            scheduler_tls_cert=str(own.cert),
            scheduler_tls_key=str(own.key),
        )
        with dask_cluster.connect(good, timeout=60) as client:
            assert client.status == "running"
        plain = cluster.address.replace("tls://", "tcp://")
        attempts = {
            "plain TCP": refused(plain, None),
            "TLS without a certificate": refused_without_certificate(),
            "TLS with a stranger's certificate": refused(
                cluster.address,
                Security(
                    tls_ca_file=str(site.cert),
                    tls_client_cert=str(foreign.cert),
                    tls_client_key=str(foreign.key),
                    require_encryption=True,
                ),
            ),
        }
    finally:
        cluster.stop()
    figures(
        "tls:// Dask scheduler: unauthorised clients refused", f"{sum(attempts.values())} of {len(attempts)}"
    )
    assert all(attempts.values()), attempts


def test_jupyter_server_asks_for_its_token(tmp_path: Path, figures: Figures) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE")}
    port = free_port()
    argv = [str(BIN / "jupyter"), "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    server = ServerProcess("jupyter-server", argv, env, tmp_path, tmp_path / "jupyter.log")
    try:
        line = server.wait_for(f"127.0.0.1:{port}/")
        server.wait_listening(port)
        found = re.search(r"token=([0-9a-f]+)", line)
        base = f"http://127.0.0.1:{port}"
        without = {
            "GET /api/contents": requests.get(f"{base}/api/contents", timeout=10).status_code,
            "POST /api/kernels": requests.post(f"{base}/api/kernels", timeout=10).status_code,
            "GET /lab": requests.get(f"{base}/lab", timeout=10, allow_redirects=False).status_code,
        }
        with_token = requests.get(
            f"{base}/api/contents", params={"token": found.group(1) if found else ""}, timeout=10
        )
    finally:
        server.stop()
    figures("Jupyter server without its token", without)
    assert found, f"no token in {line!r}"
    assert with_token.status_code == 200
    assert without["GET /api/contents"] == without["POST /api/kernels"] == 403
    assert without["GET /lab"] in (302, 403)


def test_voila_started_with_the_project_config_asks_for_a_token(tmp_path: Path, figures: Figures) -> None:
    """``voila`` run from the project root, with no flags: what a site serving the dashboard gets."""
    from tests.reliability.conftest import PROJECT_ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE")}
    port = free_port()
    argv = [str(BIN / "voila"), f"--port={port}", "--no-browser"]
    server = ServerProcess("voila", argv, env, PROJECT_ROOT, tmp_path / "voila.log")
    try:
        line = server.wait_for(f"127.0.0.1:{port}/")  # the line after "Voilà is running at:"
        server.wait_listening(port)
        found = re.search(r"token=([0-9a-f]+)", line)
        base = f"http://127.0.0.1:{port}"
        without = {
            "GET / (the dashboard)": requests.get(f"{base}/", timeout=60, allow_redirects=False),
            "GET /api/kernels": requests.get(f"{base}/api/kernels", timeout=60, allow_redirects=False),
        }
        statuses = {what: (r.status_code, r.headers.get("Location", "")) for what, r in without.items()}
        token = {"token": found.group(1) if found else ""}
        # The answer starts before the kernel runs the dashboard: its status is all this needs.
        with requests.get(f"{base}/", params=token, timeout=120, stream=True) as with_token:
            pass
    finally:
        server.stop()
    figures("Voilà with voila.json, without its token", statuses)
    assert found, f"no token in {line!r}"
    assert with_token.status_code == 200
    assert statuses["GET / (the dashboard)"][0] == 302  # to the login page, not the dashboard
    assert statuses["GET / (the dashboard)"][1].startswith("/login")
    assert statuses["GET /api/kernels"][0] in (302, 403, 404)
