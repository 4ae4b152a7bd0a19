"""The server<->client protocol of SecCL on Flower's messages, in one place.

Message types, the query names a ClientApp registers, the keys of the records a
message carries, the fields of its SecCL ConfigRecord, and the typed readers both
sides use, so that a field of the wrong type is rejected with the same named error
(:class:`~seccl_flwr.errors.MalformedMessageError`) on either side.

SecCL's own phases travel as Flower ``evaluate`` messages marked with a ``PHASE``
field in their SecCL record, because Flower refuses a message whose type has no
registered handler before any mod runs: an app with only ``@app.train`` and
``@app.evaluate`` still receives them, and :func:`seccl_flwr.mod.seccl_mod` answers
them itself. An unmarked ``evaluate`` is the global evaluation.

=====================  ========  ===========================  ==============================
phase                  type      server sends                 client replies
=====================  ========  ===========================  ==============================
``REGISTER``           evaluate  ``SECCL_KEY``: ``PHASE``,    ``SECCL_KEY``: ``ADDRESS``,
                                 ``RUN_ID``                   ``JOIN_SIGNATURE``
``TRAIN``              train     ``ARRAYS``, ``CONFIG``,      ``UPDATE``, ``METRICS``,
                                 ``SECCL_KEY``: server        ``SECCL_KEY``: ``AUTHOR``,
                                 fields                       ``SIGNATURE``
``CROSS_EVALUATE``     evaluate  ``ARRAYS``, one              ``SECCL_KEY``: ``EVALUATOR``,
                                 :func:`peer_update_key`      ``PEERS``, ``SCORES``,
                                 record per author, server    ``SIGNATURE``; or an error
                                 fields + ``PHASE``,          naming why the evaluator
                                 ``AUTHORS``, ``SIGNATURES``  does not vote
``EVALUATE``           evaluate  ``ARRAYS``, ``CONFIG``,      ``METRICS``,
                                 ``SECCL_KEY``: server        ``SECCL_KEY``: ``AUTHOR``,
                                 fields                       ``SIGNATURE``
=====================  ========  ===========================  ==============================

In a run with evaluator committees (committee size k >= 1) a ``CROSS_EVALUATE``
message carries only its evaluator's assigned peers (one message content per
evaluator), and ``EVALUATE`` messages carry the elected candidates' updates
(``AUTHORS``, ``SIGNATURES`` and one :func:`peer_update_key` record each), as do the
next round's ``TRAIN`` messages, so that every participant can recompute the merge
of updates it did not score.

The server fields (:func:`server_fields`) are ``ROUND`` and ``CONTRACT``. Run
parameters (share fraction, per-tensor, ...) are not among them: a client reads them
from the chain, checked against its own configuration.

Registration: the server names the run id (``0x``-hex, :func:`run_id_field`); the
client answers its address and its signature of ``Join(run id, address)`` on the
chain id of its own chain endpoint
(:func:`~seccl_flwr.protocol.eip712.sign_join`), which the contract's ``register``
checks again. Nothing in the server's message is taken on trust: a wrong run id
only makes a signature the contract refuses.
"""

from collections.abc import Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message

from .errors import MalformedMessageError
from .protocol.eip712 import bytes32_hex

# ------------------------------------------------------------------ message types
TRAIN = "train"
"""Message type and phase: train on the global model, reply with a signed sparse update."""
EVALUATE = "evaluate"
"""Message type and phase: evaluate the new global model, reply with signed metrics."""
REGISTER = "seccl-register"
"""Phase (an ``evaluate`` message): the server asks a node for its address and Join signature."""
CROSS_EVALUATE = "seccl-cross-evaluate"
"""Phase (an ``evaluate`` message): the server forwards the round's updates to be scored."""
PHASES = (REGISTER, TRAIN, CROSS_EVALUATE, EVALUATE)
MESSAGE_TYPE = {REGISTER: EVALUATE, TRAIN: TRAIN, CROSS_EVALUATE: EVALUATE, EVALUATE: EVALUATE}
"""The Flower message type each phase travels as."""

# -------------------------------------------------------------------- record keys
SECCL_KEY = "seccl"
"""Key of the ConfigRecord that carries SecCL fields in every message."""
ARRAYS = "arrays"
"""Key of the ArrayRecord with the global model."""
CONFIG = "config"
"""Key of the ConfigRecord with the application's train or evaluate config."""
UPDATE = "update"
"""Key of the ArrayRecord with a train reply's sparse update."""
METRICS = "metrics"
"""Key of the MetricRecord of a train or evaluate reply."""
SERVER_ROUND = "server-round"
"""Key of the server round in the ``CONFIG`` record (Flower's convention)."""
_PEER_UPDATE_PREFIX = "update."


def peer_update_key(author: str) -> str:
    """Return the key of ``author``'s update in a cross-evaluation message."""
    return _PEER_UPDATE_PREFIX + author


# --------------------------------------------------------- fields of SECCL records
PHASE = "phase"
"""Field that marks SecCL's own phases (``REGISTER``, ``CROSS_EVALUATE``)."""
RUN_ID = "run-id"
ADDRESS = "address"
JOIN_SIGNATURE = "join-signature"
ROUND = "round"
CONTRACT = "contract"
AUTHORS = "authors"
SIGNATURES = "signatures"
AUTHOR = "author"
SIGNATURE = "signature"
EVALUATOR = "evaluator"
PEERS = "peers"
SCORES = "scores"


def phase_of(message: Message) -> str:
    """Return the SecCL phase of a server message (one of :data:`PHASES`).

    A ``train`` message is ``TRAIN``; an ``evaluate`` message is the phase its SecCL
    record's ``PHASE`` field names, or ``EVALUATE`` when unmarked. Anything else
    (another message type, an unknown phase) is returned as it is, for the caller to
    refuse.
    """
    message_type = message.metadata.message_type
    if message_type != EVALUATE or not message.has_content():
        return message_type
    fields = message.content.config_records.get(SECCL_KEY)
    if fields is None or PHASE not in fields:
        return EVALUATE
    return str(fields[PHASE])


def register_fields(run_id: bytes) -> ConfigRecord:
    """Return the SecCL record of a ``REGISTER`` message naming ``run_id``."""
    return ConfigRecord({PHASE: REGISTER, RUN_ID: "0x" + run_id.hex()})


def server_fields(server_round: int, contract: str, **extra: Any) -> ConfigRecord:
    """Return the SecCL fields the server sends with every round message."""
    return ConfigRecord({ROUND: server_round, CONTRACT: contract, **extra})


def model_records(
    server_round: int, arrays: ArrayRecord, config: ConfigRecord, fields: ConfigRecord
) -> dict[str, ArrayRecord | ConfigRecord]:
    """Return a ``TRAIN`` or ``EVALUATE`` message's records: model, config, server fields.

    ``config`` gets the ``SERVER_ROUND``, as Flower's strategies set it.
    """
    config[SERVER_ROUND] = server_round
    return {ARRAYS: arrays, CONFIG: config, SECCL_KEY: fields}


def cross_evaluation_records(
    global_arrays: ArrayRecord, updates: Mapping[str, ArrayRecord], fields: ConfigRecord
) -> dict[str, ArrayRecord | ConfigRecord]:
    """Return a cross-evaluation message's records: the model and every author's update.

    ``fields`` get the ``PHASE`` marker.
    """
    records: dict[str, ArrayRecord | ConfigRecord] = {ARRAYS: global_arrays}
    records.update({peer_update_key(author): record for author, record in updates.items()})
    fields[PHASE] = CROSS_EVALUATE
    records[SECCL_KEY] = fields
    return records


# ------------------------------------------------------------------ typed readers
def _is_kind(value: Any, kind: type) -> bool:
    # a bool is an int to Python, never to SecCL
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def typed_field(server_round: int, sender: str, fields: ConfigRecord, key: str, kind: type) -> Any:
    """Return ``fields[key]`` if it is a ``kind``; raise ``MalformedMessageError`` otherwise.

    ``bool`` is never taken for ``int``, and ``bytes`` is never built from a number (a
    hostile ``bytes(10**12)`` would allocate a terabyte).
    """
    if key not in fields:
        raise MalformedMessageError(server_round, sender, f"field {key!r} is missing")
    value = fields[key]
    if not _is_kind(value, kind):
        raise MalformedMessageError(
            server_round, sender, f"field {key!r} must be {kind.__name__}, got {value!r:.80}"
        )
    return value


def typed_list_field(
    server_round: int, sender: str, fields: ConfigRecord, key: str, kind: type
) -> list:
    """Return ``fields[key]`` if it is a list of ``kind`` (missing: empty list)."""
    value = fields.get(key, [])
    if not isinstance(value, list) or not all(_is_kind(v, kind) for v in value):
        raise MalformedMessageError(
            server_round, sender, f"field {key!r} must be a list of {kind.__name__}"
        )
    return value


def run_id_field(server_round: int, sender: str, fields: ConfigRecord) -> bytes:
    """Return the 32-byte run id of ``fields[RUN_ID]`` (``0x`` + 64 hex digits).

    Raises
    ------
    MalformedMessageError
        If the field is missing or is not the hex of 32 bytes.
    """
    text = typed_field(server_round, sender, fields, RUN_ID, str)
    run_id = bytes32_hex(text)
    if run_id is None:
        raise MalformedMessageError(
            server_round, sender, f"field {RUN_ID!r} must be 0x + 64 hex digits, got {text!r:.80}"
        )
    return run_id
