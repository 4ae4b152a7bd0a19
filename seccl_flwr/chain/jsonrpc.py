"""Bare JSON-RPC transports: one call in, the node's JSON-RPC answer out.

:class:`~seccl_flwr.chain.csc.CandidateSelection` speaks to its chain through one
of these, encoding calls and decoding answers itself with eth-abi. A view read
through web3 (``contract.encode_abi``, ``HTTPProvider`` over requests, middleware,
result formatters) costs about 1.6 ms on loopback, and a transaction's nonce, send
and receipt as much each; the node itself answers in a tenth of that.

* :class:`JsonRpcHttp`: a node's URL, on a kept-alive urllib3 connection (0.3 ms);
* :class:`EmbeddedJsonRpc`: the in-process eth-tester chain, answering with the
  wire values a node sends (also what :mod:`~seccl_flwr.chain.rpc_server` serves);
* :class:`ProviderJsonRpc`: any other web3 provider (IPC, WebSocket), raw.
"""

import itertools
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import urllib3
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3

from .connection import EmbeddedProvider
from .errors import ChainError, ChainUnreachableError
from .tester_dialect import RequestError, node_result, request_for_tester

_BLOOM_KEYS = {"logsBloom"}
_CACHED_READS = {"eth_call", "eth_getLogs", "eth_getCode"}
"""Reads :class:`EmbeddedJsonRpc` answers once per chain head: every client asks the
same ``candidatesOf``, ``participants`` or round's anchors, and py-evm takes
milliseconds for each."""


class JsonRpc(Protocol):
    """A chain endpoint that answers JSON-RPC calls."""

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Return the JSON-RPC response object (``result`` or ``error``)."""
        ...

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Return the response objects of several calls, in their order."""
        ...


class _OneByOne:
    """A transport whose ``batch`` is one request after another (no round trip to save)."""

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Return the JSON-RPC response object (``result`` or ``error``)."""
        raise NotImplementedError

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Return the response objects of several calls, in their order."""
        return [self.request(method, params) for method, params in calls]


def json_rpc_of(w3: Web3) -> JsonRpc:
    """Return the fastest bare transport to the chain ``w3`` is connected to."""
    provider = w3.provider
    if isinstance(provider, HTTPProvider):
        timeout = (provider.get_request_kwargs() or {}).get("timeout", 10.0)
        timeout = timeout[-1] if isinstance(timeout, tuple) else timeout
        return JsonRpcHttp(str(provider.endpoint_uri), float(timeout))
    if isinstance(provider, EmbeddedProvider):
        return EmbeddedJsonRpc(w3)
    return ProviderJsonRpc(w3)


def json_rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """Return a JSON-RPC error response."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


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


class EmbeddedJsonRpc(_OneByOne):
    """The embedded chain (eth-tester + py-evm) answering as a JSON-RPC node does.

    Requests go through web3's eth-tester request formatters, results are
    re-encoded the way Ethereum nodes send them (quantities and byte strings as
    ``0x`` hex), and reverts are code-3 errors with their revert data. Calls, log
    queries and code reads are answered from a cache while the chain's head block
    stays the same (every transaction mines a new one).

    Parameters
    ----------
    w3 : Web3
        Web3 on an :class:`~seccl_flwr.chain.connection.EmbeddedProvider`.
    """

    def __init__(self, w3: Web3) -> None:
        if not isinstance(w3.provider, EmbeddedProvider):
            raise TypeError("EmbeddedJsonRpc serves only an EmbeddedProvider chain")
        self._lock = threading.Lock()
        self._request = w3.provider.request_func(w3, w3.middleware_onion)
        self._tester = w3.provider.ethereum_tester
        self._ids = itertools.count(1)
        self._cache: dict[str, dict[str, Any]] = {}
        self._cache_head: Any = None

    def _head(self) -> Any:
        """Return the head block's hash (py-evm's own in 1 us, else eth-tester's)."""
        chain = getattr(self._tester.backend, "chain", None)
        if chain is not None:
            return chain.get_canonical_head().hash
        return self._tester.get_block_by_number("latest")["hash"]

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Return the JSON-RPC response object of one call."""
        return self.answer({"id": next(self._ids), "method": method, "params": params})

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one JSON-RPC request object."""
        request_id = request.get("id")
        method, params = request.get("method"), request.get("params", [])
        if not isinstance(method, str) or not isinstance(params, list | dict):
            return json_rpc_error(request_id, -32600, "invalid request")
        try:
            with self._lock:
                params = request_for_tester(method, params, self._tester)
                key = _cache_key(method, params)
                if key:
                    head = self._head()
                    if head != self._cache_head:
                        self._cache, self._cache_head = {}, head
                    if key in self._cache:
                        return {**self._cache[key], "id": request_id}
                response = self._answer(request_id, method, params)
                if key:
                    self._cache[key] = response
                return response
        except RequestError as exc:
            return json_rpc_error(request_id, exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an RPC error
            return json_rpc_error(request_id, -32000, f"{type(exc).__name__}: {exc}")

    def _answer(self, request_id: Any, method: str, params: Any) -> dict[str, Any]:
        response = self._request(method, params)
        if "error" in response:
            # The error object keeps its integer code (JSON-RPC requires a number);
            # only its ``data`` (revert bytes) is re-encoded as hex.
            error = dict(response["error"])
            if "data" in error:
                error["data"] = to_rpc(error["data"])
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        result = node_result(method, to_rpc(response["result"]))
        return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _cache_key(method: str, params: Any) -> str:
    """Return the cache key of a read answered once per head block, else ``""``."""
    if method not in _CACHED_READS:
        return ""
    try:
        return json.dumps([method, params], sort_keys=True)
    except (TypeError, ValueError):  # not JSON (an in-process caller's objects)
        return ""


class ProviderJsonRpc(_OneByOne):
    """Any other web3 provider, asked with its raw ``make_request``."""

    def __init__(self, w3: Web3) -> None:
        self._provider = w3.provider

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Return the provider's raw JSON-RPC response object."""
        return dict(self._provider.make_request(method, params))


class JsonRpcHttp:
    """One JSON-RPC endpoint reached over a kept-alive HTTP connection pool.

    Parameters
    ----------
    url : str
        The node's ``http://`` or ``https://`` JSON-RPC URL.
    timeout : float
        Seconds to wait for a connection and for the answer.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        # no urllib3-level retry: a node that is down surfaces at once as
        # ChainUnreachableError and the caller's RetryPolicy decides what follows
        self._pool = urllib3.PoolManager(
            maxsize=4, retries=False, timeout=urllib3.Timeout(total=timeout)
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._pool.clear()

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Return the JSON-RPC response object (``result`` or ``error``) of one call.

        Raises
        ------
        ChainUnreachableError
            If the node cannot be reached or does not answer in time.
        ChainError
            If the answer is not a JSON-RPC response (HTTP error, not JSON).
        """
        request_id = self._next_id()
        answer = self._post(method, self._call(request_id, method, params))
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise ChainError(
                f"{method} at {self.url}: not a JSON-RPC answer to request {request_id}"
            )
        return answer

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Return the response objects of several calls, posted as one JSON-RPC batch.

        A node that does not take batches (it answers with one error object) is
        asked one call after another.

        Raises
        ------
        ChainUnreachableError, ChainError
            As :meth:`request`; also if an answer of the batch is missing.
        """
        ids = [self._next_id() for _ in calls]
        what = "+".join(method for method, _ in calls)
        answer = self._post(
            what, [self._call(i, m, p) for i, (m, p) in zip(ids, calls, strict=True)]
        )
        if isinstance(answer, dict):
            return [self.request(method, params) for method, params in calls]
        by_id = (
            {a.get("id"): a for a in answer if isinstance(a, dict)}
            if isinstance(answer, list)
            else {}
        )
        if set(ids) - set(by_id):
            raise ChainError(f"{what} at {self.url}: the batch answer misses requests")
        return [by_id[i] for i in ids]

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    @staticmethod
    def _call(request_id: int, method: str, params: list[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}

    def _post(self, what: str, payload: Any) -> Any:
        try:
            response = self._pool.request(
                "POST",
                self.url,
                body=json.dumps(payload),
                headers={"Content-Type": "application/json"},
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ChainUnreachableError(
                f"chain endpoint {self.url} does not answer: {exc}"
            ) from exc
        if response.status != 200:
            raise ChainError(f"{what} at {self.url}: HTTP {response.status}")
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise ChainError(f"{what} at {self.url}: answer is not JSON") from exc
