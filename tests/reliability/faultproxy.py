"""A fault-injecting HTTP proxy on loopback, in front of fake-gcs-server.

The official google-cloud-storage client reaches it through
``STORAGE_EMULATOR_HOST=http://127.0.0.1:<port>``, exactly as it reaches the
emulator: what the client sees are real HTTP answers and real TCP resets, so
its own retry policy is what gets tested. ``plan`` decides per request:

- ``None``: forward as is;
- ``Status(503)``: answer with that status and a GCS-style JSON error;
- ``RESET``: read the request, forward nothing, reset the connection;
- ``LOST_RESPONSE``: forward, then reset instead of answering (the write landed,
  the client cannot know);
- ``Stall(s)``: answer nothing for ``s`` seconds, then reset (a read timeout);
- ``Before(fn)``: call ``fn`` first, then forward (another writer gets in first).

Every request is recorded (``seen``) with its time and the fault it got.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

# A multipart upload names its object in the JSON metadata part, which comes first.
_METADATA_NAME = re.compile(rb'"name":\s*"([^"]+)"')
# Hop-by-hop headers: they describe one connection and are never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Status:
    code: int
    message: str = "injected by the test proxy"


@dataclass(frozen=True)
class Stall:
    seconds: float


@dataclass(frozen=True)
class Before:
    hook: Callable[[], None]


class _Reset:
    def __repr__(self) -> str:
        return "RESET"


class _LostResponse:
    def __repr__(self) -> str:
        return "LOST_RESPONSE"


RESET = _Reset()
LOST_RESPONSE = _LostResponse()
Fault = Status | Stall | Before | _Reset | _LostResponse


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    at: float  # time.monotonic() when it arrived
    body: bytes = b""

    @property
    def object_name(self) -> str | None:
        """The object a request is about: from a multipart upload's metadata, ?name=, or the path."""
        if self.is_upload:
            found = _METADATA_NAME.search(self.body)
            if found:
                return found.group(1).decode()
        if "name" in self.query:
            return self.query["name"][0]
        parts = self.path.split("/o/", 1)
        return unquote(parts[1]) if len(parts) == 2 else None

    @property
    def is_upload(self) -> bool:
        return self.method == "POST" and self.path.startswith("/upload/")


@dataclass(frozen=True)
class Seen:
    request: Request
    fault: Fault | None
    upstream_status: int | None  # what fake-gcs-server answered, when asked


Plan = Callable[[Request], Fault | None]


def forward_all(_request: Request) -> Fault | None:
    return None


class FaultProxy:
    """Use as a context manager; ``host`` is the STORAGE_EMULATOR_HOST value."""

    def __init__(self, upstream: str, plan: Plan = forward_all) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = plan
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy")

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def requests_for(self, name: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.request.object_name == name]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _decide(self, request: Request) -> Fault | None:
        with self._lock:  # plans keep counters: one decision at a time
            return self.plan(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client dropping its connection (a timeout, a closed pool) is part of
        # the game here; anything else is a bug in the proxy and is printed.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

    def log_message(self, format: str, *args: object) -> None:
        del format, args  # quiet: the test reads `seen`

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(self.command, url.path, parse_qs(url.query), time.monotonic(), body)
        fault = self.owner._decide(request)
        if isinstance(fault, Status):
            self.owner._record(Seen(request, fault, None))
            self._answer(fault.code, {"Content-Type": "application/json"}, _error_body(fault))
            return
        if isinstance(fault, _Reset):
            self.owner._record(Seen(request, fault, None))
            self._reset()
            return
        if isinstance(fault, Stall):
            self.owner._record(Seen(request, fault, None))
            time.sleep(fault.seconds)
            self._reset()
            return
        if isinstance(fault, Before):
            fault.hook()
        status, headers, payload = self._forward(body)
        self.owner._record(Seen(request, fault, status))
        if isinstance(fault, _LostResponse):
            self._reset()
            return
        self._answer(status, headers, payload)

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}}
            return resp.status, out, payload
        finally:
            conn.close()

    def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, not FIN, as a crashed peer or a load
        # balancer dropping the connection would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def finish(self) -> None:
        # The connection was reset on purpose, or the client gave up on a stall.
        with contextlib.suppress(OSError):
            super().finish()


def _error_body(fault: Status) -> bytes:
    error = {"code": fault.code, "message": fault.message, "errors": [{"message": fault.message}]}
    return json.dumps({"error": error}).encode()


def first(n: int, fault: Fault, when: Callable[[Request], bool] = lambda _r: True) -> Plan:
    """The first ``n`` requests that match ``when`` get ``fault``; the rest are forwarded."""
    left = [n]

    def plan(request: Request) -> Fault | None:
        if left[0] > 0 and when(request):
            left[0] -= 1
            return fault
        return None

    return plan


def every(schedule: dict[int, Fault]) -> Plan:
    """Request number k (from 1) gets ``schedule[p]`` for the first period p dividing k."""
    count = [0]

    def plan(request: Request) -> Fault | None:
        del request
        count[0] += 1
        for period, fault in schedule.items():
            if count[0] % period == 0:
                return fault
        return None

    return plan
