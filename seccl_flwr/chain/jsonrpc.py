"""Bare JSON-RPC over HTTP for the reads every client makes each round.

A view read through web3 (``contract.encode_abi``, ``HTTPProvider`` over requests,
middleware, result formatters) costs about 1.6 ms on loopback; the node itself
answers in a tenth of that. :class:`JsonRpcHttp` posts one JSON-RPC request on a
kept-alive urllib3 connection (0.3 ms), and :class:`~seccl_flwr.chain.csc.CandidateSelection`
encodes and decodes the call with eth-abi. Transactions keep going through web3.
"""

import itertools
import json
import threading
from typing import Any

import urllib3

from .errors import ChainError, ChainUnreachableError


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

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Return the JSON-RPC response object (``result`` or ``error``) of one call.

        Raises
        ------
        ChainUnreachableError
            If the node cannot be reached or does not answer in time.
        ChainError
            If the answer is not a JSON-RPC response (HTTP error, not JSON).
        """
        with self._lock:
            request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        try:
            response = self._pool.request(
                "POST", self.url, body=body, headers={"Content-Type": "application/json"}
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ChainUnreachableError(
                f"chain endpoint {self.url} does not answer: {exc}"
            ) from exc
        if response.status != 200:
            raise ChainError(f"{method} at {self.url}: HTTP {response.status}")
        try:
            answer = json.loads(response.data)
        except ValueError as exc:
            raise ChainError(f"{method} at {self.url}: answer is not JSON") from exc
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise ChainError(
                f"{method} at {self.url}: not a JSON-RPC answer to request {request_id}"
            )
        return answer
