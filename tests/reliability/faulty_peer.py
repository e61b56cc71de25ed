"""A misbehaving DICOM peer: a TCP relay in front of a real PACS that breaks its answers on cue.

The relay forwards the client's bytes to the PACS untouched and the PACS's answers PDU by PDU,
until the fault starts (after a number of answer bytes or PDUs, possibly halfway through a PDU);
then it aborts (A-ABORT), resets
the connection, stalls (keeps the socket open, sends nothing), trickles one byte at a time, or
sends a P-DATA PDU declaring about 4 GiB followed by a flood of bytes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal

__all__ = ["A_ABORT", "Fault", "FaultyPeer"]

A_ABORT = b"\x07\x00" + struct.pack(">L", 4) + b"\x00\x00\x00\x00"
FaultKind = Literal["none", "abort", "reset", "stall", "slow", "oversize"]


@dataclass(frozen=True)
class Fault:
    """What goes wrong, and when: after ``after_pdus`` answer PDUs and ``after_bytes`` answer bytes."""

    kind: FaultKind
    after_pdus: int = 0
    after_bytes: int = 0
    mid_pdu: bool = False
    slow_byte_s: float = 0.05
    oversize_sent: int = 32 << 20


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class FaultyPeer:
    """Listens on a free loopback port; every connection is relayed to ``upstream`` with ``fault``."""

    def __init__(self, upstream: tuple[str, int], fault: Fault) -> None:
        self.upstream = upstream
        self.fault = fault
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        self.faults_applied = 0
        self.fault_started: float | None = None  # time.monotonic() when the first fault began
        threading.Thread(target=self._accept, name="faulty-peer", daemon=True).start()

    def __enter__(self) -> FaultyPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                # shutdown first: a relay thread blocked reading the socket would keep it open.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            server = self._keep(socket.create_connection(self.upstream))
            self._keep(client)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while chunk := client.recv(1 << 16):
                server.sendall(chunk)
        except OSError:
            pass

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        fault, pdus, sent = self.fault, 0, 0
        try:
            while not self._stop.is_set():
                header = _read_exactly(server, 6)
                body = _read_exactly(server, struct.unpack(">L", header[2:])[0])
                pdu = header + body
                if fault.kind != "none" and pdus >= fault.after_pdus and sent + len(pdu) > fault.after_bytes:
                    # Forward up to exactly after_bytes (or half the PDU), then misbehave.
                    cut = len(pdu) // 2 if fault.mid_pdu else max(0, fault.after_bytes - sent)
                    client.sendall(pdu[:cut])
                    self.faults_applied += 1
                    if self.fault_started is None:
                        self.fault_started = time.monotonic()
                    self._misbehave(client, pdu[cut:])
                    return
                client.sendall(pdu)
                pdus += 1
                sent += len(pdu)
        except OSError:
            pass

    def _misbehave(self, client: socket.socket, rest: bytes) -> None:
        kind = self.fault.kind
        if kind == "abort":
            client.sendall(A_ABORT)
            # shutdown wakes the relay thread reading this socket, so the close really happens.
            client.shutdown(socket.SHUT_RDWR)
            client.close()
        elif kind == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.shutdown(socket.SHUT_RD)
            client.close()
        elif kind == "stall":
            self._stop.wait()  # holds the connection open, silent, until the peer stops
        elif kind == "slow":
            for i in range(len(rest)):
                if self._stop.wait(self.fault.slow_byte_s):  # the pace of a slow sender
                    return
                client.sendall(rest[i : i + 1])
        elif kind == "oversize":
            client.sendall(b"\x04\x00" + struct.pack(">L", 0xFFFFFFF0))
            chunk = b"\0" * (1 << 20)
            for _ in range(self.fault.oversize_sent // len(chunk)):
                client.sendall(chunk)
            self._stop.wait()
