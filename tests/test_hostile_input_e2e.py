"""One hostile participant among honest ones, end to end (digits app, in-process).

The hostile node runs the honest digits ClientApp and then rewrites its reply: a
train reply that is garbage, non-finite, oversized or replayed from the previous
round, a ballot with out-of-range scores, an evaluation with NaN metrics. The round
must complete for the honest nodes, the hostile message must be in
``RoundRecord.dropped`` with a named reason, nothing of it may be anchored on chain or
published in the message store, and the global model must be old model + merge of
the elected (honest) updates only.
"""

import io
from collections.abc import Callable

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from numpy.lib import format as npy_format

from seccl_flwr.apps import digits
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.client import trusted_contract
from seccl_flwr.errors import VerificationError
from seccl_flwr.identity import load_account
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.protocol.encoding import metrics_to_arrays
from seccl_flwr.protocol.signed import SignedMessage, message_digest
from seccl_flwr.protocol.sparse import ModelLayout, SparseUpdate, merge_updates
from seccl_flwr.records import arrays_of, record_of
from seccl_flwr.store import DirectoryStore
from seccl_flwr.strategy import SecCL
from seccl_flwr.wire import CROSS_EVALUATE, SECCL_KEY, phase_of
from tests.strategy_helpers import pins_of

HOSTILE_PARTITION = 1
ZERO = bytes(32)

Tamper = Callable[[Message, Message, object], RecordDict]
"""``(server message, honest reply, context) -> content the hostile node sends instead``.

The honest reply is ``None`` when the node's honest client code refused the message
(e.g. it found its own ballot dropped): a hostile node replies all the same."""


class HostileApp:
    """The digits ClientApp, except that one partition rewrites some of its replies.

    Parameters
    ----------
    tampers : dict[str, Tamper]
        SecCL phase (``"train"``, ``CROSS_EVALUATE``, ``"evaluate"``) -> rewrite.
    """

    def __init__(self, tampers: dict[str, Tamper]) -> None:
        self.tampers = tampers
        self.sent: dict[tuple[str, int], RecordDict] = {}  # honest replies, for replays

    def __call__(self, msg: Message, context) -> Message:
        kind = phase_of(msg)
        if int(context.node_config["partition-id"]) != HOSTILE_PARTITION:
            return digits.app(msg, context)
        try:
            reply = digits.app(msg, context)
        except VerificationError:
            if kind not in self.tampers:
                raise
            reply = None  # its honest code refused (its own ballot dropped): it lies anyway
        if reply is not None:
            self.sent[(kind, _round(msg))] = reply.content
        if kind not in self.tampers:
            return reply
        return Message(self.tampers[kind](msg, reply, context), reply_to=msg)


def _round(msg: Message) -> int:
    return int(msg.content.config_records.get(SECCL_KEY, ConfigRecord()).get("round", 0))


def _signed_update(msg: Message, reply: Message, context, arrays: dict) -> RecordDict:
    """A train reply carrying ``arrays``, correctly signed by the hostile node itself."""
    account = load_account(context)
    binding = trusted_contract(context, msg.content[SECCL_KEY]).binding
    signed = SignedMessage.sign(account, binding, _round(msg), Kind.UPDATE, arrays)
    return RecordDict(
        {
            "update": record_of(arrays),
            "metrics": reply.content["metrics"],
            SECCL_KEY: ConfigRecord({"author": account.address, "signature": signed.signature}),
        }
    )


def garbage_update(msg, reply, context) -> RecordDict:
    content = RecordDict(dict(reply.content.items()))
    junk = Array(dtype="uint32", shape=(10,), stype="numpy.ndarray", data=b"not .npy bytes")
    content["update"] = ArrayRecord({"indices": junk, "values": junk})
    return content


def huge_header_update(msg, reply, context) -> RecordDict:
    """An ``.npy`` header claiming 2**45 entries (128 TiB) followed by 8 bytes."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": "<u4", "fortran_order": False, "shape": (2**45,)}
    )
    header = buffer.getvalue()
    content = RecordDict(dict(reply.content.items()))
    big = Array(dtype="uint32", shape=(2**45,), stype="numpy.ndarray", data=header + bytes(8))
    content["update"] = ArrayRecord({"indices": big, "values": big})
    return content


def nan_update(msg, reply, context) -> RecordDict:
    arrays = arrays_of(reply.content["update"])
    arrays["values"] = arrays["values"].copy()
    arrays["values"][0] = np.nan
    return _signed_update(msg, reply, context, arrays)


def oversized_update(msg, reply, context) -> RecordDict:
    size = ModelLayout.of(arrays_of(msg.content["arrays"])).size
    dense = {
        "indices": np.arange(size, dtype="<u4"),
        "values": np.full(size, 0.5, dtype="<f4"),
    }
    return _signed_update(msg, reply, context, dense)


def negative_scores(msg, reply, context) -> RecordDict:
    fields = dict(reply.content[SECCL_KEY].items())
    fields["scores"] = [-1] * len(fields["scores"])
    return RecordDict({SECCL_KEY: ConfigRecord(fields)})


def nan_metrics(msg, reply, context) -> RecordDict:
    metrics = {"accuracy": float("nan"), "num-examples": 10.0}
    account = load_account(context)
    binding = trusted_contract(context, msg.content[SECCL_KEY]).binding
    signed = SignedMessage.sign(
        account, binding, _round(msg), Kind.EVALUATION, metrics_to_arrays(metrics)
    )
    return RecordDict(
        {
            "metrics": MetricRecord(metrics),
            SECCL_KEY: ConfigRecord({"author": account.address, "signature": signed.signature}),
        }
    )


class RecordingSecCL(SecCL):
    """An honest SecCL that keeps the verified updates it aggregated from."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen: dict[int, dict] = {}

    def relay_candidates(self, server_round, candidates, updates):
        self.seen[server_round] = {a: SparseUpdate(**u.payload) for a, u in updates.items()}
        return candidates


def run_hostile(app: HostileApp, tmp_path, num_rounds: int = 1, num_nodes: int = 4):
    url = free_loopback_url()
    strategy = RecordingSecCL(candidate_fraction=0.5, chain_url=url, store=tmp_path / "store")
    config = {"seccl-key-seed": 11, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    grid = InProcessGrid(app, num_nodes, run_config={**config, **pins_of(strategy)})
    initial = ArrayRecord(digits.initial_model().state_dict())
    result = strategy.start(grid, initial, num_rounds=num_rounds)
    hostile = strategy.participants[HOSTILE_PARTITION + 1]  # node ids are partition + 1
    return result, strategy, hostile, arrays_of(initial)


def stored(strategy: SecCL, kind: Kind, author: str) -> list:
    store = strategy.store
    assert isinstance(store, DirectoryStore)
    messages = [store.get(d) for d in store.digests()]
    return [m for m in messages if m.kind == kind and m.author == author]


def assert_not_anchored(record, hostile: str) -> None:
    """The hostile node's evaluate: its client code reports its update not anchored."""
    reason = record.dropped[f"evaluate:{hostile}"]
    assert f"UpdateNotAnchoredError: round {record.round}, node {hostile}" in reason


def assert_global_is_merge_of_elected(result, strategy, initial) -> None:
    """Every anchored global model is the previous one plus the elected updates."""
    csc, owner = strategy.csc, strategy.csc.owner()
    layout, current = ModelLayout.of(initial), initial
    for record in result.rounds:
        updates = strategy.seen[record.round]
        merged = merge_updates(layout.size, [updates[a] for a in record.candidates])
        current = layout.unflatten(layout.flatten(current) + merged, current)
        digest = message_digest(csc.binding, record.round, Kind.GLOBAL_MODEL, owner, current)
        assert digest == csc.anchor_of(record.round, Kind.GLOBAL_MODEL, owner)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (garbage_update, "malformed .npy header"),
        (huge_header_update, "needs 140737488355328 data bytes"),
        (nan_update, "NaN or infinite"),
        (oversized_update, "more than the allowed"),
    ],
    ids=["garbage", "huge-header", "nan", "oversized"],
)
def test_hostile_update_is_dropped_before_anchoring_and_the_round_goes_on(tamper, reason, tmp_path):
    result, strategy, hostile, initial = run_hostile(HostileApp({"train": tamper}), tmp_path)
    (record,) = result.rounds
    csc = strategy.csc
    assert record.dropped.keys() == {f"train:{hostile}", f"evaluate:{hostile}"}
    dropped = record.dropped[f"train:{hostile}"]
    assert dropped.startswith(f"MalformedMessageError: round 1, node {hostile}: ")
    # the hostile node's own client code finds its (honest) update not anchored
    assert_not_anchored(record, hostile)
    assert reason in dropped
    # nothing of the hostile node is anchored or published; the round went on without it
    assert hostile not in record.authors and hostile not in csc.update_authors(1)
    assert csc.anchor_of(1, Kind.UPDATE, hostile) == ZERO
    assert csc.anchor_of(1, Kind.BALLOT, hostile) == ZERO
    assert hostile not in csc.evaluators_of(1)
    assert stored(strategy, Kind.UPDATE, hostile) == []
    assert len(record.authors) == 3 and sorted(csc.evaluators_of(1)) == sorted(record.authors)
    assert hostile not in record.candidates and len(record.candidates) == 2
    assert_global_is_merge_of_elected(result, strategy, initial)
    assert csc.last_completed_round() == 1


def test_update_replayed_from_the_previous_round_is_dropped(tmp_path):
    app = HostileApp({})

    def replay(msg, reply, context):
        return app.sent[("train", _round(msg) - 1)]

    app.tampers["train"] = lambda msg, reply, context: (
        replay(msg, reply, context) if _round(msg) > 1 else reply.content
    )
    result, strategy, hostile, initial = run_hostile(app, tmp_path, num_rounds=2)
    first, second = result.rounds
    csc = strategy.csc
    assert hostile in first.authors and first.dropped == {}
    assert second.dropped.keys() == {f"train:{hostile}", f"evaluate:{hostile}"}
    assert_not_anchored(second, hostile)
    dropped = second.dropped[f"train:{hostile}"]
    assert dropped.startswith(f"UpdateSignatureError: round 2, node {hostile}: signature ")
    assert csc.anchor_of(2, Kind.UPDATE, hostile) == ZERO
    assert hostile not in csc.update_authors(2) and hostile not in second.candidates
    assert [m.round for m in stored(strategy, Kind.UPDATE, hostile)] == [1]
    assert_global_is_merge_of_elected(result, strategy, initial)


def test_malformed_ballot_and_nan_metrics_are_dropped_and_the_election_goes_on(tmp_path):
    app = HostileApp({CROSS_EVALUATE: negative_scores, "evaluate": nan_metrics})
    result, strategy, hostile, initial = run_hostile(app, tmp_path)
    (record,) = result.rounds
    csc = strategy.csc
    assert record.dropped.keys() == {f"ballot:{hostile}", f"evaluate:{hostile}"}
    ballot = record.dropped[f"ballot:{hostile}"]
    assert ballot.startswith(f"MalformedMessageError: round 1, node {hostile}: score out of")
    evaluation = record.dropped[f"evaluate:{hostile}"]
    assert evaluation.startswith(f"MalformedMessageError: round 1, node {hostile}: metric")
    # its (valid) update took part; its ballot and metrics reached neither chain nor store
    assert hostile in csc.update_authors(1)
    assert csc.anchor_of(1, Kind.BALLOT, hostile) == ZERO
    assert csc.anchor_of(1, Kind.EVALUATION, hostile) == ZERO
    assert len(csc.evaluators_of(1)) == 3 and hostile not in csc.evaluators_of(1)
    assert stored(strategy, Kind.BALLOT, hostile) == []
    assert stored(strategy, Kind.EVALUATION, hostile) == []
    assert all(np.isfinite(v) for v in record.evaluate_metrics.values())
    assert_global_is_merge_of_elected(result, strategy, initial)
