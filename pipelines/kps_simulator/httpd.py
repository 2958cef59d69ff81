"""The HTTP side: a threaded server on loopback turning requests into `Simulator.handle` calls."""

from __future__ import annotations

import socket
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kps_simulator.server import Simulator


class HttpServer(ThreadingHTTPServer):
    """Threaded server that knows its Simulator and keeps quiet about clients hanging up."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator):
        self.simulator = simulator
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that hangs up (or a dropped request) is not a server bug
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Turns HTTP into Simulator.handle calls and Replies back into bytes."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a pooled client expects
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK holds
    # the body back about 40 ms.
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    server: HttpServer

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.simulator.handle(self.command, self.path, headers, body)
        if reply.drop:
            self._hang_up()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body[: reply.cut_at])
        if reply.cut_at is not None:
            self._hang_up()

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # Every method goes through the router, so unknown ones get the gateway's 404, not a 501.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def version_string(self) -> str:
        return "api-gateway"  # the Server header Huawei's gateway sends

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read `Simulator.requests` instead."""
