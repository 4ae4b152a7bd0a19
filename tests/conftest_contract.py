"""Helpers for the CSC contract tests: deploy and open a run, sign ballots, decode reverts.

Imported by the contract test modules (``from tests.conftest_contract import ...``).
"""

import ast
import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from eth_abi import decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3 import Web3

from seccl_flwr.chain.artifact import load_artifact
from seccl_flwr.protocol.eip712 import RunBinding, ballot_typed_data, sign_join, sign_typed
from seccl_flwr.protocol.params import RunParams

ARTIFACT = load_artifact()
ABI = ARTIFACT["abi"]

ERRORS: dict[bytes, dict[str, Any]] = {
    function_signature_to_4byte_selector(
        f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
    ): e
    for e in ABI
    if e["type"] == "error"
}
"""4-byte selector -> ABI entry of every custom error of the contract."""


def revert_data(exc: BaseException) -> bytes:
    """Return the raw revert data carried by a web3 or eth-tester exception."""
    data = getattr(exc, "data", None)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, dict) and isinstance(data.get("data"), str):
        return bytes.fromhex(data["data"].removeprefix("0x"))
    text = str(exc.args[0]) if exc.args else str(exc)
    # eth-tester: "execution reverted: b'...'" (a Python bytes literal)
    match = re.search(r"(b'.*'|b\".*\")", text, re.S)
    if match:
        return ast.literal_eval(match.group(1))
    match = re.search(r"0x[0-9a-fA-F]{8,}", text)
    if match:
        return bytes.fromhex(match.group(0)[2:])
    raise AssertionError(f"no revert data in {type(exc).__name__}: {exc!r}")


def decode_revert(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """Decode revert data against the contract's custom errors -> (name, args)."""
    data = revert_data(exc)
    entry = ERRORS.get(data[:4])
    if entry is None:
        raise AssertionError(f"revert data {data.hex()} matches no custom error")
    values = decode([i["type"] for i in entry["inputs"]], data[4:])
    args = {}
    for spec, value in zip(entry["inputs"], values, strict=True):
        if spec["type"] == "address":
            value = to_checksum_address(value)
        args[spec["name"]] = value
    return entry["name"], args


@contextlib.contextmanager
def reverts(name: str, **expected: Any) -> Iterator[None]:
    """Assert that the block reverts with custom error ``name`` (and these args)."""
    with pytest.raises(Exception) as info:  # noqa: B017 - checked below by name
        yield
    got_name, got_args = decode_revert(info.value)
    assert got_name == name, f"expected {name}, got {got_name}({got_args})"
    for key, value in expected.items():
        if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
            value = to_checksum_address(value)
        assert got_args[key] == value, f"{name}.{key}: {got_args[key]!r} != {value!r}"


def make_keys(n: int, label: str = "seccl-test") -> list[Any]:
    """Return ``n`` deterministic participant accounts (they never need funds)."""
    return [Account.from_key(keccak(text=f"{label}/{i}")) for i in range(n)]


def join_signatures(run_id: bytes, chain_id: int, accounts: Sequence[Any]) -> list[bytes]:
    """Return each account's signature of ``Join(run_id, account)`` on ``chain_id``."""
    return [sign_join(a.key, run_id, chain_id) for a in accounts]


def create(
    w3: Web3,
    owner: str,
    run_id: bytes,
    params: RunParams,
    artifact: dict[str, Any] = ARTIFACT,
) -> Any:
    """Deploy the CSC from the artifact with fixed parameters (no roster, not open)."""
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(run_id, params.as_tuple()).transact({"from": owner})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


def deploy(
    w3: Web3,
    owner: str,
    run_id: bytes,
    accounts: Sequence[Any],
    num_candidates: int,
    *,
    quorum: int = 1,
    share_fraction_ppm: int = 100_000,
    per_tensor: bool = False,
    batch: int | None = None,
    open_run: bool = True,
    election_rule: int = 0,
    committee_size: int = 0,
) -> Any:
    """Deploy, register ``accounts`` (in batches of ``batch``, default one) with their
    join signatures and open the run; return the contract object."""
    params = RunParams(
        num_candidates, quorum, share_fraction_ppm, per_tensor, election_rule, committee_size
    )
    csc = create(w3, owner, run_id, params)
    signatures = join_signatures(run_id, w3.eth.chain_id, accounts)
    addresses = [a.address for a in accounts]
    step = batch or max(1, len(accounts))
    for start in range(0, len(accounts), step):
        send(
            csc.functions.register(
                addresses[start : start + step], signatures[start : start + step]
            ),
            owner,
        )
    if open_run:
        send(csc.functions.open(), owner)
    return csc


def binding_of(w3: Web3, contract: Any) -> RunBinding:
    """Return the run binding (chain id, address, run id) of a deployed contract."""
    return RunBinding(w3.eth.chain_id, contract.address, contract.functions.runId().call())


def signed_ballot(
    binding: RunBinding,
    round_: int,
    account: Any,
    peers: Sequence[str],
    scores: Sequence[int],
    key: Any = None,
) -> tuple[str, list[str], list[int], bytes]:
    """Return the ABI tuple of a ballot of ``account`` signed with ``key`` (default own)."""
    typed = ballot_typed_data(binding, round_, account.address, peers, scores)
    signature = sign_typed((key or account).key, typed)
    return (account.address, list(peers), [int(s) for s in scores], signature)


def send(fn: Any, sender: str, **tx: Any) -> Any:
    """Transact a contract function; return the successful receipt."""
    tx_hash = fn.transact({"from": sender, **tx})
    receipt = fn.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt.status == 1, receipt
    return receipt


def digest(label: str) -> bytes:
    """Return a non-zero 32-byte test digest."""
    return keccak(text=label)


def table_of(ballots: Sequence[tuple]) -> dict[str, dict[str, int]]:
    """Return evaluator -> (peer -> score) of ballots given as ``submitBallots`` tuples."""
    return {b[0]: dict(zip(b[1], b[2], strict=True)) for b in ballots}
