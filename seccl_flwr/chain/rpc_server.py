"""Serve the embedded chain on a loopback JSON-RPC port.

Flower's simulation runs each ClientApp in another process (a Ray actor), so the
in-process EVM of the server must be reachable over the network. This module turns
the eth-tester backend into a standard JSON-RPC endpoint: requests go through web3's
eth-tester request formatters, results are re-encoded the way Ethereum nodes send
them (quantities and byte strings as ``0x`` hex), and reverts are code-3 errors with
their revert data. Any JSON-RPC client (web3.py, ``curl``, ethers) can read it.
"""

import json
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hexbytes import HexBytes
from web3 import Web3

from .connection import EmbeddedProvider

MAX_REQUEST_BYTES = 16 * 1024 * 1024
_BLOOM_KEYS = {"logsBloom"}
_FILTER_METHODS = {"eth_getLogs", "eth_newFilter"}


def to_rpc(value: Any, key: str = "") -> Any:
    """Re-encode a web3-formatted result as JSON-RPC wire values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if key in _BLOOM_KEYS:
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, HexBytes | bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {k: to_rpc(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rpc(v, key) for v in value]
    return value


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
        if not isinstance(self.w3.provider, EmbeddedProvider):
            raise TypeError("LoopbackRPCServer serves only an EmbeddedProvider chain")
        self._lock = threading.Lock()
        self._request = self.w3.provider.request_func(self.w3, self.w3.middleware_onion)
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ``http://host:port`` URL clients connect to."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one JSON-RPC request object."""
        request_id = request.get("id")
        method, params = request.get("method"), request.get("params", [])
        if not isinstance(method, str) or not isinstance(params, list | dict):
            return _error(request_id, -32600, "invalid request")
        if method in _FILTER_METHODS and params and isinstance(params[0], dict):
            # eth-tester takes a filter's address only as a list; the spec allows both
            if isinstance(params[0].get("address"), str):
                params = [{**params[0], "address": [params[0]["address"]]}, *params[1:]]
        try:
            with self._lock:
                response = self._request(method, params)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an RPC error
            return _error(request_id, -32000, f"{type(exc).__name__}: {exc}")
        if "error" in response:
            # The error object keeps its integer code (JSON-RPC requires a number);
            # only its ``data`` (revert bytes) is re-encoded as hex.
            error = dict(response["error"])
            if "data" in error:
                error["data"] = to_rpc(error["data"])
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": to_rpc(response["result"]),
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length", 0))
                if length > MAX_REQUEST_BYTES:
                    body = _error(None, -32600, "request too large")
                else:
                    try:
                        payload = json.loads(self.rfile.read(length))
                    except (ValueError, UnicodeDecodeError):
                        payload = None
                    if isinstance(payload, list) and payload:
                        body = [
                            server.answer(r)
                            if isinstance(r, dict)
                            else _error(None, -32600, "invalid request")
                            for r in payload
                        ]
                    elif isinstance(payload, list):
                        body = _error(None, -32600, "invalid request: empty batch")
                    elif isinstance(payload, dict):
                        body = server.answer(payload)
                    else:
                        body = _error(None, -32700, "parse error")
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
        """Stop serving and release the port."""
        self._httpd.shutdown()
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


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message},
    }
