"""The server<->client protocol of SecCL on Flower's messages, in one place.

Message types, the query names a ClientApp registers, the keys of the records a
message carries, the fields of its SecCL ConfigRecord, and the typed readers both
sides use, so that a field of the wrong type is rejected with the same named error
(:class:`~seccl_flwr.errors.MalformedMessageError`) on either side.

=====================  ===========================  ===================================
message type           server sends                 client replies
=====================  ===========================  ===================================
``REGISTER``           ``SECCL_KEY``: ``RUN_ID``        ``SECCL_KEY``: ``ADDRESS``,
                                                    ``JOIN_SIGNATURE``
``TRAIN``              ``ARRAYS``, ``CONFIG``,      ``UPDATE``, ``METRICS``,
                       ``SECCL_KEY``: server fields     ``SECCL_KEY``: ``AUTHOR``, ``SIGNATURE``
``CROSS_EVALUATE``     ``ARRAYS``, one              ``SECCL_KEY``: ``EVALUATOR``, ``PEERS``,
                       :func:`peer_update_key`      ``SCORES``, ``SIGNATURE``; or an
                       record per author, server    error naming why the evaluator
                       fields + ``AUTHORS``,        does not vote
                       ``SIGNATURES``
``EVALUATE``           ``ARRAYS``, ``CONFIG``,      ``METRICS``,
                       ``SECCL_KEY``: server fields     ``SECCL_KEY``: ``AUTHOR``, ``SIGNATURE``
=====================  ===========================  ===================================

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

from flwr.app import ArrayRecord, ConfigRecord

from .errors import MalformedMessageError
from .protocol.eip712 import bytes32_hex

# ------------------------------------------------------------------ message types
REGISTER_QUERY = "seccl_register"
"""Query name of the registration handler (``@app.query(REGISTER_QUERY)``)."""
CROSS_EVALUATE_QUERY = "seccl_evaluate"
"""Query name of the cross-evaluation handler (``@app.query(CROSS_EVALUATE_QUERY)``)."""
REGISTER = f"query.{REGISTER_QUERY}"
"""Message type: the server asks a node for its address and Join signature."""
CROSS_EVALUATE = f"query.{CROSS_EVALUATE_QUERY}"
"""Message type: the server forwards the round's updates to be scored."""
TRAIN = "train"
"""Message type: train on the global model, reply with a signed sparse update."""
EVALUATE = "evaluate"
"""Message type: evaluate the new global model, reply with signed metrics."""

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
    """Return a cross-evaluation message's records: the model and every author's update."""
    records: dict[str, ArrayRecord | ConfigRecord] = {ARRAYS: global_arrays}
    records.update({peer_update_key(author): record for author, record in updates.items()})
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
