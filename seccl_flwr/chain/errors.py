"""Exceptions of the chain layer; each names the endpoint, address or error at fault.

All derive from :class:`ChainError`, which sits under the package root
:class:`~seccl_flwr.errors.SecCLError`; stdlib mixins stay where callers expect them
(``RuntimeError`` for all, ``PermissionError`` and ``FileNotFoundError`` where named).
"""

from typing import Any

from ..errors import SecCLError


class ChainError(SecCLError, RuntimeError):
    """Base class of every chain-layer error."""


class ChainUnreachableError(ChainError):
    """The JSON-RPC endpoint does not answer."""


class NodeError(ChainError):
    """The node answered a JSON-RPC call with an error (other than a named revert).

    Attributes
    ----------
    method : str
        The JSON-RPC method, e.g. ``"eth_sendRawTransaction"``.
    error : Any
        The node's error object.
    """

    def __init__(self, method: str, error: Any) -> None:
        self.method = method
        self.error = error
        super().__init__(f"{method} failed: {error}")


class WrongChainError(ChainError):
    """The endpoint serves another chain id than the one expected."""


class NoContractError(ChainError):
    """There is no contract code at the given address."""


class ContractCodeMismatchError(ChainError):
    """The code at the address is not the runtime code of the packaged artifact."""


class InsufficientFundsError(ChainError):
    """The account that sends transactions cannot pay for gas."""


class NoSenderError(ChainError, PermissionError):
    """A transaction was asked of a contract client that has no account to sign it."""


class AnvilNotFoundError(ChainError):
    """No anvil executable was found (``$SECCL_ANVIL``, ``PATH``, ``contracts/node_modules``)."""


class ArtifactMissingError(ChainError, FileNotFoundError):
    """The packaged contract artifact is missing (rebuild it from the source)."""


class ArtifactMismatchError(ChainError):
    """The committed artifact was not built from the current Solidity source."""


class CompilerNotFoundError(ChainError):
    """No Solidity compiler is available to rebuild the artifact."""


class ContractRevertError(ChainError):
    """A contract call reverted with a custom error of the CSC.

    Attributes
    ----------
    error_name : str
        Name of the Solidity custom error, e.g. ``"DuplicateBallot"``.
    error_args : dict[str, Any]
        Its decoded arguments by name.
    function : str
        The contract function that reverted.
    """

    def __init__(self, function: str, error_name: str, error_args: dict[str, Any]) -> None:
        self.function = function
        self.error_name = error_name
        self.error_args = error_args
        args = ", ".join(f"{k}={v}" for k, v in error_args.items())
        super().__init__(f"{function} reverted with {error_name}({args})")


class CommitteeUnavailableError(ChainError):
    """A round's committees cannot be derived yet (unsealed, or no seal block on the node)."""


class CommitteeSeedMismatchError(ChainError):
    """The contract's committee seed is not the one this node's seal block hash gives.

    The node, or the chain it follows, is not the one the contract ran on.
    """
