"""seccl-flwr: verifiable federated learning for Flower (the SecCL protocol).

The public API, importable from the package itself::

    from seccl_flwr import SecCL, seccl_mod, audit_run, SecCLError

* the strategy: :class:`SecCL`, its :class:`SecCLResult` and per-round
  :class:`RoundRecord`;
* the client side: :data:`seccl_mod`, the Flower mod around an app's own train and
  evaluate handlers (``ClientApp(mods=[seccl_mod])``);
* :func:`run_simulation`: Flower's (deprecated) ``run_simulation`` with a run config;
* the signed message every party hashes, signs and checks: :class:`SignedMessage`;
* publishing and auditing a run: :class:`DirectoryStore`, :func:`open_store`,
  :func:`audit_run`, :class:`AuditPins`, :func:`format_report`;
* the errors, all under :class:`SecCLError` (chain errors included).

Names are resolved on first use (PEP 562), so ``import seccl_flwr`` stays cheap and a
module such as :mod:`seccl_flwr.protocol.borda` can be imported without Flower's
server side.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # strategy
    "SecCL": "strategy",
    "SecCLResult": "strategy",
    "RoundRecord": "strategy",
    # client
    "seccl_mod": "mod",
    "run_simulation": "simulation",
    # messages, store, audit
    "SignedMessage": "protocol.signed",
    "MessageStore": "store",
    "DirectoryStore": "store",
    "open_store": "store",
    "audit_run": "audit",
    "AuditPins": "audit",
    "format_report": "audit",
    # errors: the root, then each family
    "SecCLError": "errors",
    "ConfigurationError": "errors",
    "EncodingError": "errors",
    "SparseUpdateError": "errors",
    "SignatureError": "errors",
    "VerificationError": "errors",
    "UpdateDigestMismatchError": "errors",
    "UpdateSignatureError": "errors",
    "MalformedMessageError": "errors",
    "GlobalModelMismatchError": "errors",
    "AggregationMismatchError": "errors",
    "AggregationUncheckableError": "errors",
    "BallotMissingError": "errors",
    "WithheldUpdateError": "errors",
    "CommitteeMismatchError": "errors",
    "UpdateNotAnchoredError": "errors",
    "BallotSignatureError": "errors",
    "EvaluationSignatureError": "errors",
    "JoinSignatureError": "errors",
    "UntrustedContractError": "errors",
    "RosterMismatchError": "errors",
    "ParameterMismatchError": "errors",
    "NotEnoughNodesError": "errors",
    "HandlerReplyError": "errors",
    "ScoreMetricError": "errors",
    "ElectionError": "protocol.borda",
    "StoreError": "store",
    "ResumeError": "resume",
    "ChainError": "chain.errors",
    "ChainUnreachableError": "chain.errors",
    "NodeError": "chain.errors",
    "WrongChainError": "chain.errors",
    "NoContractError": "chain.errors",
    "ContractCodeMismatchError": "chain.errors",
    "ContractRevertError": "chain.errors",
    "InsufficientFundsError": "chain.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seccl_flwr' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
