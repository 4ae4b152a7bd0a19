"""Connections to a chain: the embedded in-process EVM or any JSON-RPC URL."""

import ast
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, HTTPProvider, Web3

from ..errors import ConfigurationError
from .errors import ChainUnreachableError, InsufficientFundsError, WrongChainError

EMBEDDED = "embedded"
"""Endpoint name of the in-process EVM (eth-tester with py-evm)."""

DEFAULT_FUNDING_WEI = 10**21
"""What a fresh transaction-sending account gets on a dev chain (1000 ETH)."""

_GAS_MARGIN_WEI = 10**18
"""What a paying dev account keeps beyond the funding, for the funding's own gas."""


class EmbeddedProvider(EthereumTesterProvider):
    """eth-tester provider that reports reverts as a real node does.

    web3's ``EthereumTesterProvider`` turns a revert into a ``TransactionFailed``
    whose message is a Python ``repr`` of the revert bytes. This subclass answers
    with a standard JSON-RPC error ``{"code": 3, "data": "0x<revert data>"}`` so that
    web3 raises ``ContractCustomError`` with the data, exactly as with anvil or geth,
    and so that :mod:`seccl_flwr.chain.rpc_server` can serve the chain to other
    processes unchanged. Calls and estimates that name no fee are free
    (:mod:`~seccl_flwr.chain.free_call`) and ``net_version`` names the chain id,
    as on a node.
    """

    def __init__(self) -> None:
        from eth_tester import EthereumTester

        from .free_call import FreeCallBackend

        super().__init__(EthereumTester(backend=FreeCallBackend()))

    def make_request(self, method: Any, params: Any) -> Any:
        """Answer one JSON-RPC request; reverts become code-3 errors with data."""
        from eth_tester.exceptions import TransactionFailed

        namespace, _, endpoint = method.partition("_")
        delegator = self.api_endpoints.get(namespace, {}).get(endpoint)
        if delegator is None:
            return super().make_request(method, params)
        request_id = repr(self._current_request_id)
        self._current_request_id += 1
        if method == "net_version":  # eth-tester says "1" (mainnet's) whatever its chain id
            chain_id = self.api_endpoints["eth"]["chainId"](self.ethereum_tester, [])
            return {"id": request_id, "jsonrpc": "2.0", "result": str(chain_id)}
        try:
            result = delegator(self.ethereum_tester, params)
        except NotImplementedError:
            return {
                "id": request_id,
                "jsonrpc": "2.0",
                "error": {"code": -32601, "message": f"not implemented: {method}"},
            }
        except TransactionFailed as exc:
            data = exc.args[0] if exc.args else b""
            if isinstance(data, Exception):
                data = data.args[0] if data.args else b""
            if isinstance(data, str) and data[:2] in ("b'", 'b"'):
                # py-evm's ``call`` reports the revert bytes as their Python repr
                try:
                    data = ast.literal_eval(data)
                except (ValueError, SyntaxError):
                    pass
            error: dict[str, Any] = {"code": 3, "message": "execution reverted"}
            if isinstance(data, bytes | bytearray):
                error["data"] = "0x" + bytes(data).hex()
            else:
                error["message"] = f"execution reverted: {data}"
            return {"id": request_id, "jsonrpc": "2.0", "error": error}
        return {"id": request_id, "jsonrpc": "2.0", "result": result}


def embedded_web3() -> Web3:
    """Return a Web3 on a fresh in-process EVM (its own chain, empty but funded)."""
    return Web3(EmbeddedProvider())


def connect(endpoint: str, *, expected_chain_id: int | None = None, timeout: float = 10.0) -> Web3:
    """Connect to a chain and check that it answers.

    Parameters
    ----------
    endpoint : str
        ``"embedded"`` for a fresh in-process EVM, or an ``http(s)://`` JSON-RPC URL.
    expected_chain_id : int | None
        If given, the chain must report this chain id.
    timeout : float
        Seconds to wait for each JSON-RPC request.

    Returns
    -------
    Web3
        A connected Web3 instance.

    Raises
    ------
    ChainUnreachableError
        If the endpoint does not answer.
    WrongChainError
        If it serves another chain than ``expected_chain_id``.
    ConfigurationError
        If the endpoint is neither ``"embedded"`` nor an http(s) URL.
    """
    if endpoint == EMBEDDED:
        w3 = embedded_web3()
    elif endpoint.startswith(("http://", "https://")):
        w3 = Web3(HTTPProvider(endpoint, request_kwargs={"timeout": timeout}))
    else:
        raise ConfigurationError(
            f"chain endpoint must be 'embedded' or an http(s):// URL, got {endpoint!r}"
        )
    chain_id = chain_id_of(w3, endpoint)
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise WrongChainError(
            f"{endpoint} serves chain id {chain_id}, expected {expected_chain_id}"
        )
    return w3


def chain_id_of(w3: Web3, endpoint: str = "") -> int:
    """Return the chain id, turning connection failures into ``ChainUnreachableError``."""
    try:
        return int(w3.eth.chain_id)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise ChainUnreachableError(
            f"chain endpoint {endpoint or w3.provider} does not answer: {exc}"
        ) from exc


def ensure_funded(w3: Web3, account: LocalAccount, amount_wei: int = DEFAULT_FUNDING_WEI) -> None:
    """Make sure ``account`` can pay for gas, funding it on a development chain.

    On the embedded chain and on dev nodes such as anvil, the node's first unlocked
    account that can pay sends ``amount_wei`` when the balance is below half of it. On other
    chains the account must already hold funds.

    Raises
    ------
    InsufficientFundsError
        If the account has no funds and the node has no unlocked account to pay.
    """
    if w3.eth.get_balance(account.address) >= amount_wei // 2:
        return
    try:
        unlocked = w3.eth.accounts
    except Exception:  # noqa: BLE001 - nodes that do not serve eth_accounts
        unlocked = []
    # the first unlocked account that can pay (anvil's first one runs dry after ten
    # fundings of 1000 ETH on one long-lived node; it has nine more)
    needed = amount_wei + _GAS_MARGIN_WEI
    payer = next((a for a in unlocked if w3.eth.get_balance(a) > needed), None)
    if payer is None:
        raise InsufficientFundsError(
            f"account {account.address} has no funds and none of the node's "
            f"{len(unlocked)} unlocked accounts can fund it; send it some ETH first"
        )
    tx_hash = w3.eth.send_transaction({"from": payer, "to": account.address, "value": amount_wei})
    w3.eth.wait_for_transaction_receipt(tx_hash)


def account_from_key(private_key: bytes | str) -> LocalAccount:
    """Return the local account of a private key (hex string or 32 bytes)."""
    return Account.from_key(private_key)
