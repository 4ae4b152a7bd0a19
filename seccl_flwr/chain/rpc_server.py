"""Serve the embedded chain on a loopback JSON-RPC port.

Flower's simulation runs each ClientApp in another process (a Ray actor), so the
in-process EVM of the server must be reachable over the network. This module serves
:class:`~seccl_flwr.chain.jsonrpc.EmbeddedJsonRpc` (the eth-tester backend answering
with the wire values a node sends, reverts as code-3 errors with their data) over
HTTP, single requests and batches. Any JSON-RPC client (web3.py, ``curl``, ethers)
can read it.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from web3 import Web3

from .connection import EmbeddedProvider
from .jsonrpc import EmbeddedJsonRpc, json_rpc_error

MAX_REQUEST_BYTES = 16 * 1024 * 1024


class LoopbackRPCServer:
    """A threaded HTTP JSON-RPC server in front of an in-process EVM.

    Parameters
    ----------
    w3 : Web3 | None
        Web3 on an :class:`EmbeddedProvider`; a fresh chain if ``None``.
    host : str
        Interface to bind; loopback by default (the chain has unlocked accounts).
    port : int
        Port to bind; ``0`` picks a free one.
    """

    def __init__(self, w3: Web3 | None = None, host: str = "127.0.0.1", port: int = 0):
        self.w3 = w3 if w3 is not None else Web3(EmbeddedProvider())
        self.rpc = EmbeddedJsonRpc(self.w3)
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The ``http://host:port`` URL clients connect to."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # keep connections alive (every answer has a Content-Length): a client's
            # reads then skip a TCP connect and a new server thread each
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms stall

            def setup(self) -> None:
                super().setup()
                with server._connections_lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._connections_lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length", 0))
                if length > MAX_REQUEST_BYTES:
                    body = json_rpc_error(None, -32600, "request too large")
                else:
                    try:
                        payload = json.loads(self.rfile.read(length))
                    except (ValueError, UnicodeDecodeError):
                        payload = None
                    if isinstance(payload, list) and payload:
                        body = [
                            server.rpc.answer(r)
                            if isinstance(r, dict)
                            else json_rpc_error(None, -32600, "invalid request")
                            for r in payload
                        ]
                    elif isinstance(payload, list):
                        body = json_rpc_error(None, -32600, "invalid request: empty batch")
                    elif isinstance(payload, dict):
                        body = server.rpc.answer(payload)
                    else:
                        body = json_rpc_error(None, -32700, "parse error")
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        return Handler

    def start(self) -> "LoopbackRPCServer":
        """Serve in a daemon thread; return self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="seccl-embedded-rpc", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the kept-alive connections and release the port."""
        self._httpd.shutdown()
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # the client has closed it already
                    pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackRPCServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_loopback_url() -> str:
    """Return ``http://127.0.0.1:PORT`` for a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
