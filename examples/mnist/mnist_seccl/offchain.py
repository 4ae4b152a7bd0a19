"""Off-chain fast mode of the SecCL harness: the same round, the election in Python.

A round here is SecCL's round with the chain, the signatures and Flower's messages
left out: every participant trains with the very ClientApp functions of
:mod:`mnist_seccl.client_app` (same data, model, SGD, attacks), shares the top
``share_fraction`` of its change (:func:`seccl_flwr.protocol.sparse.sparsify`, or
with error feedback :func:`~seccl_flwr.protocol.sparse.sparsify_with_feedback`),
scores its peers' updates on its validation split (by the metric the run config's
``seccl-score-metric`` names, macro F1 unless told otherwise: what the app's evaluate
handler returns and ``seccl_mod`` scores by, here for all evaluators from one
batched prediction per update, with the library's
:func:`seccl_flwr.torch_task.score_logits`), and the candidates come from
:func:`seccl_flwr.protocol.election.elect` - the Python reference the contract is
differential-tested against (``tests/test_election_differential.py``) - instead of
the contract. The new global model is :func:`seccl_flwr.protocol.sparse.aggregate`
of the candidates, as in :meth:`seccl_flwr.strategy.SecCL._aggregate`.

Committees (issue 16): with ``committee_size`` k >= 1 each participant scores only
the ``k`` peers :func:`seccl_flwr.protocol.committee.assignments` assigns it, and
the election runs with ``assigned=`` (Borda normalised per received ballot, the
median over the received scores), as the contract does. The assignment's seed
stands in for the chain's: on chain it is ``committee_seed(blockhash(seal block),
roundSeed)``; here the seal block's hash is replaced by ``keccak(seed, round)``
(the run seed and the round number, 32 bytes each, big-endian), so
``committee_seed(keccak(seed, round), round_seed(update digests))``. Like a block
hash it is fixed before and independent of the updates (the digests then enter
through ``round_seed``), and nobody in the experiment chooses it. Only the
assigned peers are predicted, so a committee round is cheaper too.

What is left out cannot change the model: signatures and anchors only let nodes
detect a lying server, and the server here is honest. It makes a round about 5x
cheaper, which is what makes the 3-seed sweeps of ``collusion.py`` affordable.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from eth_account import Account
from eth_utils import keccak
from flwr.app import ConfigRecord, Context, RecordDict

from seccl_flwr.attacks import ClientAttack, attack_from_config
from seccl_flwr.identity import ERROR_FEEDBACK, parse_flag, simulation_key
from seccl_flwr.mod import SCORE_METRIC
from seccl_flwr.protocol.borda import round_seed
from seccl_flwr.protocol.committee import assignments, committee_seed, evaluators_of
from seccl_flwr.protocol.eip712 import MAX_SCORE
from seccl_flwr.protocol.election import elect
from seccl_flwr.protocol.params import default_quorum, num_candidates
from seccl_flwr.protocol.sparse import (
    ModelLayout,
    aggregate,
    apply_update,
    sparsify,
    sparsify_with_feedback,
)
from seccl_flwr.records import record_of
from seccl_flwr.torch_task import (
    SCORE_METRICS,
    load_arrays,
    model_arrays,
    predict,
    score_logits,
)
from seccl_flwr.wire import SERVER_ROUND

from .client_app import DATA_KEYS, SCORE_METRIC_DEFAULT, _partition, client_functions
from .task import MnistNet, data_from_config, initial_model, server_evaluate_fn

BALLOTS = ("collude", "adaptive")
"""How colluders vote: ``collude`` - colluders ``MAX_SCORE``, everyone else 0 (the
paper's attack); ``adaptive`` - colluders ``MAX_SCORE``, honest peers half of the
score they really measured (inconspicuous, and aimed at rules that drop extremes)."""


def score_of(value: float) -> int:
    """Return the ballot score of a metric in [0, 1]: ``round(clip(value, 0, 1) * MAX_SCORE)``."""
    return int(round(min(max(value, 0.0), 1.0) * MAX_SCORE))


def cross_scores(
    candidates: dict[str, dict[str, np.ndarray]],
    validation: list[tuple[str, torch.Tensor, Any]],
    assigned: dict[str, list[str]] | None = None,
    metric: str = SCORE_METRIC_DEFAULT,
) -> dict[str, dict[str, int]]:
    """Return evaluator -> peer -> ballot score (by ``metric``) of the candidate models.

    ``validation`` holds ``(evaluator, val_x, val_y)``; each candidate is predicted
    once on the validation splits of its evaluators, then scored per evaluator
    (never by its author). ``assigned`` (evaluator -> peers, from
    :func:`~seccl_flwr.protocol.committee.assignments`) limits each evaluator to its
    peers; ``None``: every evaluator scores every other author.
    """
    model = MnistNet()
    scorers = evaluators_of(assigned) if assigned is not None else None
    table: dict[str, dict[str, int]] = {e: {} for e, _, _ in validation}
    for author, arrays in candidates.items():
        # full cross-evaluation predicts on every split at once (the author's is skipped)
        mine = validation if scorers is None else [v for v in validation if v[0] in scorers[author]]
        x = torch.cat([vx for _, vx, _ in mine])
        bounds = np.cumsum([0, *(len(vy) for _, _, vy in mine)])
        load_arrays(model, arrays, "cpu")
        logits = predict(model, x, "cpu")
        for i, (evaluator, _, vy) in enumerate(mine):
            if evaluator != author:
                value = score_logits(metric, np.asarray(vy), logits[bounds[i] : bounds[i + 1]])
                table[evaluator][author] = score_of(value)
    return table


def round_assignment(
    seed: int, rnd: int, digests: dict[str, bytes], committee_size: int
) -> dict[str, list[str]] | None:
    """Return the round's committee assignment (``None`` for full cross-evaluation).

    The seal block's hash is stood in for by ``keccak(seed, round)`` (module
    docstring); the rest is :func:`~seccl_flwr.protocol.committee.assignments`
    over the authors in anchoring order.
    """
    if not committee_size:
        return None
    stand_in = keccak(seed.to_bytes(32, "big") + rnd.to_bytes(32, "big"))
    chain_seed = committee_seed(stand_in, round_seed(digests.values()))
    return assignments(list(digests), chain_seed, committee_size)


def attack_ballot(
    attack: ClientAttack | None, style: str, me: str, peers: list[str], scores: list[int], rnd: int
) -> list[int]:
    """Return the scores a node signs: honest, or its attack's ballot in ``style``."""
    if attack is None or not attack.colluders or not attack.active(rnd):
        return scores
    if style == "collude":
        return attack.ballot(me, peers, scores, rnd)
    return [
        MAX_SCORE if p in attack.colluders else s // 2 for p, s in zip(peers, scores, strict=True)
    ]


def _context(config: dict[str, Any], partition_id: int, n: int) -> Context:
    return Context(
        run_id=0,
        node_id=partition_id,
        node_config={"partition-id": partition_id, "num-partitions": n},
        state=RecordDict(),
        run_config=config,
    )


def run_offchain(  # noqa: PLR0913 - one experiment's knobs
    config: dict[str, Any],
    participants: int,
    rounds: int,
    candidate_fraction: float,
    rule: int | str,
    ballot_style: str = "collude",
    on_round: Callable[[int, dict, list[str], int], None] | None = None,
    committee_size: int = 0,
    on_ballots: Callable[[int, dict[str, dict[str, int]]], None] | None = None,
) -> list[tuple[int, dict, int]]:
    """Run SecCL off chain; return ``(round, test metrics, attackers elected)`` per round.

    ``config`` is the ClientApps' run config (data, training and attack keys,
    ``seccl-key-seed``); round 0 is the initial model. ``on_round(round, metrics,
    candidates, attackers elected)`` is called after each round. ``committee_size``
    is the run's ``k`` (0: everyone scores everyone else, the paper's protocol).
    ``on_ballots(round, ballots)`` sees every round's ballots (evaluator -> peer ->
    score, as signed: colluders' included) before the election. With
    ``seccl-error-feedback`` true each node adds what its last update left out to
    its change before sparsifying, and keeps what this one leaves out
    (:func:`~seccl_flwr.protocol.sparse.sparsify_with_feedback`, as
    :func:`seccl_flwr.client.sparse_update` does); false (the default here): plain
    top-k, as in the paper. ``seccl-score-metric`` names the metric peers are
    scored by (one of :data:`seccl_flwr.torch_task.SCORE_METRICS`; macro F1, the
    paper's, without it).
    """
    n = participants
    feedback = parse_flag(ERROR_FEEDBACK, config.get(ERROR_FEEDBACK, False))
    metric = str(config.get(SCORE_METRIC, SCORE_METRIC_DEFAULT))
    if metric not in SCORE_METRICS:
        raise ValueError(f"{SCORE_METRIC} {metric!r} is none of {SCORE_METRICS}")
    seed = int(config.get("seed", 0))
    data = data_from_config(config)
    evaluate = server_evaluate_fn(data)
    key_seed = config.get("seccl-key-seed", seed)
    address = [Account.from_key(simulation_key(key_seed, p)).address for p in range(n)]
    functions = [client_functions(_context(config, p, n)) for p in range(n)]
    data_settings = tuple(sorted((k, v) for k, v in config.items() if k in DATA_KEYS))
    parts = [_partition(data_settings, p, n) for p in range(n)]
    validation = [(address[p], parts[p].val_x, parts[p].val_y) for p in range(n)]
    attacks = [attack_from_config(config, p, n) for p in range(n)]
    attackers = {address[p] for p in range(n) if attacks[p] is not None}
    m = num_candidates(candidate_fraction, n)
    share = float(config.get("share-fraction", 0.1))
    arrays = model_arrays(initial_model(seed))
    layout = ModelLayout.of(arrays)
    residuals: list[np.ndarray | None] = [None] * n  # error feedback: what was left out
    out = [(0, dict(evaluate(0, record_of(arrays))), 0)]
    for rnd in range(1, rounds + 1):
        base = layout.flatten(arrays)
        train_config = ConfigRecord({SERVER_ROUND: rnd})
        updates = {}
        for p, (train, _) in enumerate(functions):
            trained, _ = train(arrays, train_config)
            delta = layout.flatten(trained) - base
            if attacks[p] is not None:
                delta = attacks[p].update(delta, rnd)
            if feedback:
                updates[address[p]], residuals[p] = sparsify_with_feedback(
                    delta, residuals[p], share, layout
                )
            else:
                updates[address[p]] = sparsify(delta, share, layout)
        candidates_arrays = {
            a: layout.unflatten(apply_update(base, u), arrays) for a, u in updates.items()
        }
        digests = {a: keccak(u.indices.tobytes() + u.values.tobytes()) for a, u in updates.items()}
        assigned = round_assignment(seed, rnd, digests, committee_size)
        table = cross_scores(candidates_arrays, validation, assigned, metric)
        ballots = {}
        for p in range(n):
            me = address[p]
            peers = list(table[me])
            scores = [table[me][a] for a in peers]
            scores = attack_ballot(attacks[p], ballot_style, me, peers, scores, rnd)
            ballots[me] = dict(zip(peers, scores, strict=True))
        if on_ballots is not None:
            on_ballots(rnd, ballots)
        candidates, _ = elect(digests, ballots, m, default_quorum(n), rule, assigned=assigned)
        arrays = aggregate(layout, arrays, [updates[c] for c in candidates])
        metrics = dict(evaluate(rnd, record_of(arrays)))
        won = sum(c in attackers for c in candidates)
        out.append((rnd, metrics, won))
        if on_round is not None:
            on_round(rnd, metrics, candidates, won)
    return out
