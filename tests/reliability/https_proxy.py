"""HTTPS in front of a plain HTTP server, for DICOMweb over TLS.

Orthanc 1.10 as packaged here resets every HTTPS connection after the handshake, so the tests
put this proxy, with a certificate of the test authority, in front of its HTTP port.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

__all__ = ["HttpsProxy"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class HttpsProxy:
    """Serves ``https://127.0.0.1:<port>`` with ``context`` and forwards each request to ``upstream``."""

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        session = requests.Session()

        class Forward(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                answer = session.request(
                    self.command, upstream + self.path, headers=headers, data=body, timeout=60
                )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._session = session
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="https-proxy", daemon=True)

    def __enter__(self) -> HttpsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
        self._session.close()
