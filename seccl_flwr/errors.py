"""The exceptions of seccl-flwr, under one root: :class:`SecCLError`.

Protocol violations (:class:`VerificationError` and its subclasses) name round, node
and message; they are the only errors that make the server drop a node's reply.
Errors of the building blocks (:class:`EncodingError`, :class:`SparseUpdateError`,
:class:`SignatureError`) are ``ValueError`` subclasses without round or node; the checks of a
received message turn them into the matching :class:`VerificationError`. Chain
errors live in :mod:`seccl_flwr.chain.errors`, store errors in
:mod:`seccl_flwr.store`, :class:`~seccl_flwr.resume.ResumeError` in
:mod:`seccl_flwr.resume`, all under the same root.
"""


class SecCLError(Exception):
    """Root of every exception seccl-flwr raises on purpose."""


class ConfigurationError(SecCLError, ValueError):
    """An argument or setting is invalid; the message names it and the accepted values."""


class EncodingError(SecCLError, ValueError):
    """A payload is malformed: truncated, wrong magic, bad dtype or shape, or extra bytes."""


class SparseUpdateError(SecCLError, ValueError):
    """A sparse update is malformed: bad indices, non-finite values or oversized."""


class SignatureError(SecCLError, ValueError):
    """A signature is malformed or does not recover to the expected author."""


class VerificationError(SecCLError):
    """Something received does not match what the chain or its author committed to.

    Attributes
    ----------
    round : int
        Server round the message belongs to.
    node : str
        Address (or node id) of the author or receiver concerned.
    detail : str
        What did not match.
    """

    def __init__(self, round_: int, node: str, detail: str) -> None:
        self.round = round_
        self.node = node
        self.detail = detail
        super().__init__(f"{type(self).__name__}: round {round_}, node {node}: {detail}")


class UpdateDigestMismatchError(VerificationError):
    """A forwarded update's digest differs from the one anchored for its author."""


class UpdateSignatureError(VerificationError):
    """A forwarded update is not signed by the author it is attributed to."""


class MalformedMessageError(VerificationError):
    """A message is truncated, has wrong shapes or dtypes, NaN/Inf or is oversized."""


class GlobalModelMismatchError(VerificationError):
    """The global model received is not the one anchored on chain."""


class AggregationMismatchError(VerificationError):
    """The anchored global model is not old model + merge of the elected updates."""


class BallotMissingError(VerificationError):
    """An evaluator's signed ballot was dropped or replaced on chain."""


class AggregationUncheckableError(VerificationError):
    """A client that took part in a round cannot recompute its aggregation.

    It trained or cross-evaluated in the round but lacks an elected candidate's
    update or what it kept of the round (the previous model): it cannot vouch for
    the global model, and says so instead of passing silently.
    """


class WithheldUpdateError(VerificationError):
    """A cross-evaluation message lacks an update the chain anchored, or carries one it did not.

    The evaluator does not vote on a partial set; ``node`` is the author concerned.
    """


class CommitteeMismatchError(VerificationError):
    """A committee run's cross-evaluation forwards other peers than the evaluator's assignment.

    In a run with evaluator committees (``committeeSize`` k >= 1) each evaluator
    scores exactly the peers the committee seed assigns it
    (:func:`seccl_flwr.protocol.committee.assignments`), which it re-derives from
    its own chain endpoint (the seal block's hash and the round seed). The server
    forwarded other peers (it chose the committee itself, withheld some assigned
    peers, or forwarded before sealing the round's updates); the evaluator casts
    no ballot. ``node`` is the evaluator; ``missing`` and ``extra`` list the
    assigned peers not forwarded and the forwarded peers not assigned.
    """

    def __init__(self, round_: int, node: str, detail: str, missing=(), extra=()) -> None:
        self.missing = list(missing)
        self.extra = list(extra)
        super().__init__(round_, node, detail)


class UpdateNotAnchoredError(VerificationError):
    """An author's signed update of the round is not the one anchored for it (censorship)."""


class BallotSignatureError(VerificationError):
    """A ballot is not signed by its evaluator."""


class EvaluationSignatureError(VerificationError):
    """Signed evaluation metrics are not signed by the node that sent them."""


class JoinSignatureError(VerificationError):
    """A registration reply's Join signature does not prove the address it claims.

    Raised on the server; ``node`` is the node id that sent the reply (the impostor),
    never the address it claimed.
    """


class UntrustedContractError(SecCLError):
    """The contract a client is pointed to is not a SecCL run it belongs to.

    Its message starts with its type's name, as a :class:`VerificationError`'s does:
    a client raises it inside its ClientApp, and Flower hands the server only the
    message, so the server's log still names the error.

    Attributes
    ----------
    detail : str
        What is wrong with the contract.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{type(self).__name__}: {detail}")


class RosterMismatchError(UntrustedContractError):
    """The contract's roster is not the one this client pins in its own configuration."""


class ParameterMismatchError(UntrustedContractError):
    """A run parameter fixed on chain differs from this client's own configuration."""


class NotEnoughNodesError(SecCLError):
    """Fewer nodes than the configured minimum answered a phase."""


class HandlerReplyError(SecCLError):
    """The app's own train or evaluate handler replied without what SecCL needs.

    Raised by :func:`seccl_flwr.mod.seccl_mod` on the node, about the app's code
    (not the server's): e.g. a train reply without the trained arrays. Its message
    starts with its type's name, as a :class:`VerificationError`'s does.

    Attributes
    ----------
    detail : str
        What the handler's reply lacks.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{type(self).__name__}: {detail}")


class ScoreMetricError(HandlerReplyError):
    """The evaluate handler returned no metric named by ``seccl-score-metric``.

    Cross-evaluation scores each peer's candidate model with that metric of the
    app's own evaluate handler; the message names the metric and those returned.
    """
