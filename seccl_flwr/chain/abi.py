"""The packaged contract's ABI in eth-abi terms: call encoding, result and error decoding.

:class:`~seccl_flwr.chain.csc.CandidateSelection` encodes its calls and decodes the
node's answers with these tables instead of web3's contract machinery (a tenth of
its cost per call); :mod:`~seccl_flwr.chain.transactions` decodes revert data with
:meth:`ContractAbi.decode_error`. Decoded addresses are checksummed, as web3 returns
them.
"""

import functools
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector
from eth_utils import to_checksum_address as _to_checksum_address

from .artifact import load_artifact
from .errors import ChainError

to_checksum_address = functools.lru_cache(maxsize=1 << 16)(_to_checksum_address)
"""eth-utils' checksum (a keccak per call), cached: a run names the same few addresses
in every read, and decoding a round's anchors or candidates checksums each of them."""


@dataclass(frozen=True)
class ContractAbi:
    """Each function's eth-abi types and call prefix, and the custom-error table.

    Attributes
    ----------
    inputs : dict[str, list[str]]
        Argument types by function name (``"constructor"`` for the deployment).
    outputs : dict[str, list[str]]
        Result types by function name.
    prefixes : dict[str, bytes]
        What a call's data starts with: the selector, or the init code for the
        constructor.
    errors : dict[bytes, tuple[str, list[str], list[str]]]
        Custom errors by selector: name, argument names, argument types.
    """

    inputs: dict[str, list[str]]
    outputs: dict[str, list[str]]
    prefixes: dict[str, bytes]
    errors: dict[bytes, tuple[str, list[str], list[str]]]

    def call_data(self, function: str, args: tuple) -> bytes:
        """Return the ABI-encoded call of ``function`` (or the deployment) with ``args``."""
        return self.prefixes[function] + abi_encode(self.inputs[function], list(args))

    def decode_result(self, function: str, result: Any) -> Any:
        """Decode a call's ``0x``-hex result: the single value, or a tuple of several."""
        values = abi_values(self.outputs[function], hex_bytes(result))
        return values[0] if len(values) == 1 else tuple(values)

    def decode_error(self, data: bytes) -> tuple[str, dict[str, Any]] | None:
        """Return the custom error's name and arguments in revert ``data``, or ``None``.

        ``None`` means the selector is none of the contract's custom errors.
        """
        entry = self.errors.get(data[:4])
        if entry is None:
            return None
        name, arg_names, types = entry
        return name, dict(zip(arg_names, abi_values(types, data[4:]), strict=True))


@functools.cache
def contract_abi() -> ContractAbi:
    """Return the packaged artifact's :class:`ContractAbi` (built once)."""
    artifact = load_artifact()
    abi = artifact["abi"]
    functions = [e for e in abi if e.get("type") in ("function", "constructor")]
    inputs = {e.get("name", "constructor"): [_abi_type(i) for i in e["inputs"]] for e in functions}
    named = [e for e in functions if e["type"] == "function"]
    outputs = {e["name"]: [_abi_type(o) for o in e["outputs"]] for e in named}
    prefixes = {e["name"]: _selector(e["name"], inputs[e["name"]]) for e in named}
    prefixes["constructor"] = bytes.fromhex(artifact["bytecode"].removeprefix("0x"))
    errors = {}
    for entry in (e for e in abi if e.get("type") == "error"):
        types = [_abi_type(i) for i in entry["inputs"]]
        errors[_selector(entry["name"], types)] = (
            entry["name"],
            [i["name"] for i in entry["inputs"]],
            types,
        )
    return ContractAbi(inputs, outputs, prefixes, errors)


def _selector(name: str, types: list[str]) -> bytes:
    return function_signature_to_4byte_selector(f"{name}({','.join(types)})")


def _abi_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


def abi_values(types: list[str], data: bytes) -> list[Any]:
    """Decode ABI ``data``, with addresses checksummed as web3 returns them."""
    return [_checksummed(t, v) for t, v in zip(types, abi_decode(types, data), strict=True)]


def _checksummed(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type == "address[]":
        return [to_checksum_address(v) for v in value]
    return value


def hex_bytes(value: Any) -> bytes:
    """Return the bytes of a ``0x``-hex wire value.

    Raises
    ------
    ChainError
        If the node sent something else.
    """
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"expected 0x-hex bytes from the node, got {value!r:.80}")
    return bytes.fromhex(value[2:])
