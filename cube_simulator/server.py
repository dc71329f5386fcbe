"""The HTTP server: threads, keep-alive connections, and the bytes of each answer.

Answers are written whole, in one write, as nginx in front of the real service sends
them; a reset drops the connection with an RST, and a trickled body goes out one byte
at a time.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from cube_simulator.answers import Request
from cube_simulator.model import RequestRecord

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from cube_simulator.answers import Answer
    from cube_simulator.page_cache import PageCache

_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"  # for the few answers the stdlib makes itself (400, 501)
    sys_version = ""
    disable_nagle_algorithm = True  # each response is one write; do not let Nagle delay it
    timeout = 120  # idle keep-alive connections end eventually
    server: CubeHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the simulator keeps its own request log."""

    def do_GET(self) -> None:
        self.server.serve(self)

    do_HEAD = do_GET

    def _other(self) -> None:
        # Read any body so the keep-alive connection stays in sync, then answer 405.
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        self.server.serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = _other


class CubeHTTPServer(ThreadingHTTPServer):
    """Serves `respond`'s answers (given the raw target and the request), logging each to `log`."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        respond: Callable[[str, Request], Answer],
        log: list[RequestRecord],
        lock: threading.Lock,
        tls: ssl.SSLContext | None,
    ) -> None:
        self._respond = respond
        self._log = log
        self._log_lock = lock
        self._default_host = f"{address[0]}:{address[1]}"  # for a request without Host
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients dropping connections (and injected resets) are routine here."""

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cube-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and drop open keep-alive connections."""
        self.shutdown()
        self.server_close()
        # Keep-alive handler threads would otherwise go on serving after stop().
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve(self, handler: _Handler) -> None:
        arrived = time.time()
        path, _, query = handler.path.partition("?")
        req = Request(
            method=handler.command,
            path=path,
            query=query,
            host=handler.headers.get("Host") or self._default_host,
            authorization=handler.headers.get("Authorization"),
        )
        answer = self._respond(handler.path, req)
        body = answer.render() if answer.status else b""
        # Logged before answering, so a client that got its response finds it in the log.
        record = RequestRecord(
            req.method, path, query, answer.status, bool(req.authorization), arrived
        )
        with self._log_lock:
            self._log.append(record)
        if answer.status == 0:
            _reset(handler)
            return
        lines = [
            f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Unknown')}",
            "Server: nginx",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {answer.content_type}",
            f"Content-Length: {len(body)}",
            "Vary: Accept, Cookie",
            "Allow: GET, HEAD, OPTIONS",
        ]
        lines += [f"{name}: {value}" for name, value in answer.headers]
        if handler.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if answer.trickle and req.method != "HEAD":
                handler.wfile.write(head)
                for index in range(len(body)):
                    handler.wfile.write(body[index : index + 1])
                    handler.wfile.flush()
                    time.sleep(answer.trickle)
            else:
                handler.wfile.write(head if req.method == "HEAD" else head + body)
        except OSError:
            handler.close_connection = True


def _reset(handler: _Handler) -> None:
    """Drop the connection without an answer (RST, not an orderly close)."""
    handler.close_connection = True
    connection = handler.connection
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()


class Listener:
    """The server at `host`:`port` (0: a free port), from start() to stop()."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        respond: Callable[[str, Request], Answer],
        log: list[RequestRecord],
        cache: PageCache,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls
        self._respond = respond
        self._log = log
        self._cache = cache  # renders pages ahead while serving
        self._server: CubeHTTPServer | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        address = (self.host, self.port)
        server = CubeHTTPServer(address, self._respond, self._log, self._cache.lock, self._tls)
        self._server = server
        server.start()
        self._cache.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._cache.stop()
            server.stop()

    @property
    def origin(self) -> str:
        """Scheme, host and port of the running server, e.g. "http://127.0.0.1:8123"."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host = self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"  # noqa: S104
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://{host}:{self._server.server_port}"
