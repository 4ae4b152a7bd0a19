"""What a client checks of the server's conduct, as pure functions.

The client handlers (:mod:`seccl_flwr.client`) read the chain and their own
configuration, then call these functions, which raise the named error:

* when a client first trusts a contract: :func:`check_roster`
  (:class:`~seccl_flwr.errors.RosterMismatchError`) and :func:`check_params`
  (:class:`~seccl_flwr.errors.ParameterMismatchError`) compare the run fixed on chain
  with the :class:`RunPins` of the client's own configuration (:func:`run_pins`),
  never with a server message;
* in cross-evaluation: :func:`check_forwarded_authors`
  (:class:`~seccl_flwr.errors.WithheldUpdateError`): the evaluator votes only on
  the complete set of the round's anchored updates; in a run with evaluator
  committees, :func:`check_committee`
  (:class:`~seccl_flwr.errors.CommitteeMismatchError`): exactly the peers the
  committee seed assigns it, re-derived from its own chain endpoint;
* at the next contact after train: :func:`check_update_anchored`
  (:class:`~seccl_flwr.errors.UpdateNotAnchoredError`): the author's own update is
  the one anchored for it;
* in the evaluate phase of the round (or the next train if evaluate never comes):
  :func:`check_ballot_on_chain` (:class:`~seccl_flwr.errors.BallotMissingError`)
  and :func:`check_aggregation` (:class:`~seccl_flwr.errors.AggregationMismatchError`,
  or :class:`~seccl_flwr.errors.AggregationUncheckableError` when the client lacks
  what it needs to recompute the model).
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_utils import to_checksum_address
from flwr.app import Context, RecordDict

from .errors import (
    AggregationMismatchError,
    AggregationUncheckableError,
    BallotMissingError,
    CommitteeMismatchError,
    ConfigurationError,
    ParameterMismatchError,
    RosterMismatchError,
    UpdateNotAnchoredError,
    WithheldUpdateError,
)
from .identity import (
    CANDIDATE_FRACTION,
    COMMITTEE_SIZE,
    ELECTION_RULE,
    KEY_FILE,
    KEY_SEED,
    NUM_PARTITIONS,
    PER_TENSOR,
    QUORUM,
    ROSTER_DIGEST,
    SHARE_FRACTION,
    flag_setting,
    setting,
    simulation_addresses,
)
from .protocol.eip712 import RunBinding, bytes32_hex
from .protocol.params import (
    DEFAULT_CANDIDATE_FRACTION,
    DEFAULT_SHARE_FRACTION,
    ELECTION_RULES,
    TRUNCATED_BORDA,
    MismatchWording,
    RunParams,
    default_quorum,
    election_rule_of,
    param_mismatches,
)
from .protocol.signed import next_global_model


@dataclass(frozen=True)
class RunPins:
    """What a client's own configuration says the run on chain must be.

    Attributes
    ----------
    roster_digest : bytes | None
        The pinned ``rosterDigest`` (deployment), or ``None``.
    simulation_roster : frozenset[str] | None
        Without a pinned digest, in simulation: the addresses of the run's
        simulation keys, the only ones the roster may list.
    candidate_fraction : float
        λ; the client expects ``M = num_candidates(λ, n)``.
    share_fraction : float
        The share fraction the run must fix.
    per_tensor : bool
        Whether the share fraction applies per tensor.
    quorum : int | None
        The least quorum the client accepts; ``None``: a majority of the roster.
    election_rule : int
        The election rule the run must fix (``seccl-election-rule``, a number or name
        of :data:`~seccl_flwr.protocol.params.ELECTION_RULES`; default truncated Borda).
    committee_size : int
        The evaluator committee size k the run must fix (``seccl-committee-size``;
        default 0, full cross-evaluation).
    """

    roster_digest: bytes | None = None
    simulation_roster: frozenset[str] | None = None
    candidate_fraction: float = DEFAULT_CANDIDATE_FRACTION
    share_fraction: float = DEFAULT_SHARE_FRACTION
    per_tensor: bool = False
    quorum: int | None = None
    election_rule: int = TRUNCATED_BORDA
    committee_size: int = 0


def _number(key: str, value: str | None, kind: type, default):
    """Return a numeric setting, or ``default`` when it is not set."""
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"setting {key!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None


def _digest_setting(value: str) -> bytes:
    """Return the 32 bytes of a hex ``seccl-roster-digest`` (the ``0x`` is optional)."""
    digest = bytes32_hex("0x" + value.removeprefix("0x"))
    if digest is None:
        raise ConfigurationError(
            f"setting {ROSTER_DIGEST!r} must be 32 bytes in hex (the contract's "
            f"rosterDigest), got {value!r}"
        )
    return digest


def run_pins(context: Context) -> RunPins:
    """Return the pins of a node's configuration (node config, else run config).

    The simulation roster applies only to a node that derives its key from the run's
    ``seccl-key-seed`` (no key file) and knows ``num-partitions``.

    Raises
    ------
    ConfigurationError
        If a setting does not parse (naming it).
    """
    pinned = setting(context, ROSTER_DIGEST)
    simulated = None
    seed = context.run_config.get(KEY_SEED)
    partitions = context.node_config.get(NUM_PARTITIONS)
    if pinned is None and setting(context, KEY_FILE) is None and None not in (seed, partitions):
        simulated = simulation_addresses(seed, range(int(partitions)))
    return RunPins(
        roster_digest=_digest_setting(pinned) if pinned is not None else None,
        simulation_roster=simulated,
        candidate_fraction=_number(
            CANDIDATE_FRACTION,
            setting(context, CANDIDATE_FRACTION),
            float,
            DEFAULT_CANDIDATE_FRACTION,
        ),
        share_fraction=_number(
            SHARE_FRACTION, setting(context, SHARE_FRACTION), float, DEFAULT_SHARE_FRACTION
        ),
        per_tensor=flag_setting(context, PER_TENSOR, False),
        quorum=_number(QUORUM, setting(context, QUORUM), int, None),
        election_rule=election_rule_of(setting(context, ELECTION_RULE) or TRUNCATED_BORDA),
        committee_size=_committee_size(setting(context, COMMITTEE_SIZE)),
    )


def _committee_size(value: str | None) -> int:
    """Return the pinned committee size (unset: 0, full cross-evaluation).

    Raises
    ------
    ConfigurationError
        If it is not an integer of at least 0.
    """
    size = _number(COMMITTEE_SIZE, value, int, 0)
    if size < 0:
        raise ConfigurationError(
            f"setting {COMMITTEE_SIZE!r} must be at least 0 (0: every author scores every "
            f"other), got {value!r}"
        )
    return size


def pinned_run_config(
    candidate_fraction: float = DEFAULT_CANDIDATE_FRACTION,
    share_fraction: float = DEFAULT_SHARE_FRACTION,
    per_tensor: bool = False,
    quorum: int | None = None,
    election_rule: int = TRUNCATED_BORDA,
    committee_size: int = 0,
) -> dict[str, Any]:
    """Return the run config with which clients pin these run parameters.

    For launchers that configure the server and the clients of one run (simulations,
    benchmarks): pass the strategy's settings, so that honest clients accept the run
    the server opens. ``quorum=None`` leaves the default (a majority).
    """
    config: dict[str, Any] = {
        CANDIDATE_FRACTION: candidate_fraction,
        SHARE_FRACTION: share_fraction,
        PER_TENSOR: per_tensor,
        ELECTION_RULE: ELECTION_RULES[election_rule_of(election_rule)],
        COMMITTEE_SIZE: committee_size,
    }
    if quorum is not None:
        config[QUORUM] = quorum
    return config


def run_config_parameters(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the run parameters a run config pins, as ``SecCL`` takes them.

    The inverse of :func:`pinned_run_config`, read by the clients' own parsing
    (:func:`run_pins`): ``candidate-fraction``, ``share-fraction``, ``per-tensor``,
    ``seccl-quorum`` (0 or unset: a majority), ``seccl-election-rule`` and
    ``seccl-committee-size``, each with its default when unset. A server built from
    the run config its clients pin opens the run they accept.

    Raises
    ------
    ConfigurationError
        If a setting does not parse (naming it).
    """
    context = Context(
        run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )
    pins = run_pins(context)
    return {
        "candidate_fraction": pins.candidate_fraction,
        "share_fraction": pins.share_fraction,
        "per_tensor": pins.per_tensor,
        "quorum": pins.quorum or None,
        "election_rule": pins.election_rule,
        "committee_size": pins.committee_size,
    }


def check_roster(
    pins: RunPins, contract: str, roster: Sequence[str], on_chain_digest: bytes, me: str
) -> None:
    """Check the contract's roster against the client's pins; the client must be listed.

    Parameters
    ----------
    pins : RunPins
        The client's configuration.
    contract : str
        The contract's address (named in errors).
    roster : Sequence[str]
        The contract's participants, in registration order.
    on_chain_digest : bytes
        The contract's ``rosterDigest``.
    me : str
        The client's address.

    Raises
    ------
    RosterMismatchError
        If the pinned digest differs from the contract's, a roster member is not one of the run's
        simulation keys, or the client is not listed.
    UntrustedContractError
        Via :class:`RosterMismatchError`, also when nothing pins the roster
        (neither a digest nor simulation keys).
    """
    if pins.roster_digest is not None:
        if pins.roster_digest != on_chain_digest:
            raise RosterMismatchError(
                f"contract {contract}: rosterDigest 0x{on_chain_digest.hex()} differs from "
                f"the pinned {ROSTER_DIGEST} 0x{pins.roster_digest.hex()}"
            )
    elif pins.simulation_roster is not None:
        strangers = [p for p in roster if p not in pins.simulation_roster]
        if strangers:
            raise RosterMismatchError(
                f"contract {contract}: roster members {strangers} are none of the run's "
                f"{len(pins.simulation_roster)} simulation keys"
            )
    else:
        raise RosterMismatchError(
            f"contract {contract}: this node pins no roster: set {ROSTER_DIGEST!r} to the "
            f"hex of the run's rosterDigest (0x{on_chain_digest.hex()} on chain)"
        )
    if to_checksum_address(me) not in roster:
        raise RosterMismatchError(f"contract {contract} does not list this node's address {me}")


NODE_WORDING = MismatchWording(
    num_candidates="M = {actual}, but λ = {pinned} and n = {n} give M = {expected}",
    quorum=(
        "quorum {actual} is below the {expected} ballots this node accepts "
        f"({QUORUM!r}, default a majority of n = {{n}})"
    ),
    share_fraction=(
        "share fraction {actual} ppm, but this node is configured with {pinned} ({expected} ppm)"
    ),
    per_tensor="per-tensor {actual}, but this node is configured with {expected}",
    election_rule=(
        "election rule {actual}, but this node is configured with {expected} "
        f"({ELECTION_RULE!r})"
    ),
    committee_size=(
        "committee size {actual}, but this node is configured with {expected} "
        f"({COMMITTEE_SIZE!r}; 0: every author scores every other)"
    ),
)
"""How a node words a run parameter that differs from its configuration."""


def check_params(pins: RunPins, contract: str, params: RunParams, num_participants: int) -> None:
    """Check the run parameters fixed on chain against the client's pins.

    Every parameter is pinned (:class:`RunPins` has a default for each); the least
    quorum is the pinned one, else (unset or 0, as the MNIST app's config says) a
    majority of the roster. The comparison is
    :func:`~seccl_flwr.protocol.params.param_mismatches`, the auditor's.

    Raises
    ------
    ParameterMismatchError
        Naming the first parameter that differs: ``M`` (the client computes
        ``num_candidates(λ, n)`` itself), the quorum (below the pinned minimum or a
        majority), the share fraction, per-tensor, the election rule, or the
        evaluator committee size.
    """
    mismatches = param_mismatches(
        params,
        num_participants,
        candidate_fraction=pins.candidate_fraction,
        share_fraction=pins.share_fraction,
        per_tensor=pins.per_tensor,
        least_quorum=pins.quorum or default_quorum(num_participants),
        wording=NODE_WORDING,
        election_rule=pins.election_rule,
        committee_size=pins.committee_size,
    )
    if mismatches:
        raise ParameterMismatchError(f"contract {contract}: {mismatches[0]}")


def check_forwarded_authors(
    round_: int, evaluator: str, anchored: Collection[str], forwarded: Sequence[str]
) -> None:
    """Check that a cross-evaluation forwards exactly the round's anchored updates.

    The evaluator's own update is not needed (it does not score itself).

    Raises
    ------
    WithheldUpdateError
        Naming the first anchored author whose update is missing, else the first
        forwarded author the chain did not anchor; the detail lists all of them.
    """
    expected = {to_checksum_address(a) for a in anchored} - {evaluator}
    received = {to_checksum_address(a) for a in forwarded} - {evaluator}
    missing = sorted(expected - received)
    extra = sorted(received - expected)
    if missing:
        raise WithheldUpdateError(
            round_,
            missing[0],
            f"the chain anchored updates of {missing} that the cross-evaluation sent to "
            f"{evaluator} lacks; no ballot on a partial set",
        )
    if extra:
        raise WithheldUpdateError(
            round_,
            extra[0],
            f"the cross-evaluation sent to {evaluator} carries updates of {extra} that the "
            f"chain did not anchor",
        )


def check_committee(
    round_: int,
    evaluator: str,
    assigned: Sequence[str] | None,
    forwarded: Sequence[str],
    seal_block: int,
) -> None:
    """Check that a committee run's cross-evaluation forwards exactly the evaluator's peers.

    Parameters
    ----------
    round_, evaluator
        The round and the evaluator checking (named in the error).
    assigned : Sequence[str] | None
        The peers the committee seed assigns the evaluator, re-derived from the
        evaluator's OWN chain endpoint
        (:meth:`~seccl_flwr.chain.csc.CandidateSelection.committee_assignment`);
        ``None`` if the evaluator is not among the round's anchored authors.
    forwarded : Sequence[str]
        The authors whose updates the server forwarded (the evaluator's own left out).
    seal_block : int
        The block that sealed the round's updates (``sealBlockOf``; 0: not sealed).

    Raises
    ------
    CommitteeMismatchError
        If the updates are not sealed (no committee exists yet: the server forwarded
        before sealing), the evaluator has no assignment, or the forwarded peers are
        not exactly its assignment; naming the missing and the extra peers.
    """
    received = sorted({to_checksum_address(a) for a in forwarded} - {evaluator})
    if seal_block == 0:
        raise CommitteeMismatchError(
            round_,
            evaluator,
            f"the round's updates are not sealed on chain, so no committee is drawn yet; "
            f"the server forwarded {received} before sealing; no ballot",
            extra=received,
        )
    if assigned is None:
        raise CommitteeMismatchError(
            round_,
            evaluator,
            "this node is no anchored author of the round, so it has no committee "
            "assignment; no ballot",
            extra=received,
        )
    expected = {to_checksum_address(a) for a in assigned}
    missing = sorted(expected - set(received))
    extra = sorted(set(received) - expected)
    if missing or extra:
        raise CommitteeMismatchError(
            round_,
            evaluator,
            f"the cross-evaluation forwards {len(received)} peers, not the {len(expected)} "
            f"the committee seed of seal block {seal_block} assigns this node: missing "
            f"{missing}, extra {extra}; no ballot",
            missing=missing,
            extra=extra,
        )


def check_update_anchored(round_: int, author: str, digest: bytes, anchored: bytes) -> None:
    """Check that the chain anchors exactly the update ``author`` sent in the round.

    Raises
    ------
    UpdateNotAnchoredError
        If the anchor is missing or another digest.
    """
    if anchored != digest:
        found = "nothing" if anchored == bytes(32) else f"0x{anchored.hex()}"
        raise UpdateNotAnchoredError(
            round_,
            author,
            f"my signed update 0x{digest.hex()} is not anchored (the chain holds {found})",
        )


def check_ballot_on_chain(round_: int, evaluator: str, digest: bytes, on_chain: bytes) -> None:
    """Check that the chain holds the ballot ``evaluator`` signed in the round.

    Raises
    ------
    BallotMissingError
        If the chain holds no ballot or another one.
    """
    if on_chain != digest:
        raise BallotMissingError(
            round_,
            evaluator,
            f"my ballot 0x{digest.hex()} is not on chain (found 0x{on_chain.hex()})",
        )


def check_aggregation(  # noqa: PLR0913 - what the recomputation needs
    binding: RunBinding,
    round_: int,
    checker: str,
    owner: str,
    previous: Mapping[str, np.ndarray] | None,
    candidates: Sequence[str],
    updates: Mapping[str, Mapping[str, np.ndarray]],
    anchored: bytes,
) -> None:
    """Check that global model ``round_`` is ``previous`` plus the candidates' updates.

    Parameters
    ----------
    binding, round_, owner
        The run, the round and the run's owner (the global model's author).
    checker : str
        The client checking (named when it cannot check).
    previous : Mapping[str, np.ndarray] | None
        Global model ``round_ - 1`` as the client received it (``None``: not kept).
    candidates : Sequence[str]
        The round's elected candidates, in the contract's order.
    updates : Mapping[str, Mapping[str, np.ndarray]]
        The updates the client verified in the round (its own included), by author.
    anchored : bytes
        The digest anchored for global model ``round_``.

    Raises
    ------
    AggregationUncheckableError
        If the client lacks ``previous`` or a candidate's update.
    AggregationMismatchError
        If the recomputed model's digest differs from the anchored one.
    """
    lacking = [c for c in candidates if c not in updates]
    if previous is None or lacking:
        what = "the previous global model" if previous is None else f"the updates of {lacking}"
        raise AggregationUncheckableError(
            round_,
            checker,
            f"cannot recompute global model {round_}: this node lacks {what} "
            f"(elected candidates {list(candidates)})",
        )
    expected = next_global_model(binding, round_, owner, previous, [updates[c] for c in candidates])
    if expected.digest() != anchored:
        raise AggregationMismatchError(
            round_,
            owner,
            f"global model of round {round_} (anchored 0x{anchored.hex()}) is not the previous "
            f"model plus the merge of the elected candidates {list(candidates)}",
        )
