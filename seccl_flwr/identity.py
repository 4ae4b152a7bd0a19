"""Where a node's Ethereum key, chain endpoint and contract come from.

A client never takes the server's word for a chain fact: its key, its chain endpoint
and (in deployment) the contract address come from its own node config, falling back
to the run config that the user who launched the run wrote.

Node config / run config keys:

``seccl-key-file``
    Path of a file holding the node's private key (hex). Deployment.
``seccl-key-seed`` (run config) with ``partition-id`` (node config)
    Simulation only: the key is ``keccak("seccl-sim-key:<seed>:<partition-id>")``.
    Anyone who knows the seed knows every key, so never use this outside simulation.
``seccl-chain-url``
    JSON-RPC URL of the chain the node checks anchors on.
``seccl-contract``
    Pinned contract address (deployment). Without it a client accepts the address
    the server names only if the code there is the SecCL artifact and the run lists
    the client's own address.

What a client pins of the run (:mod:`seccl_flwr.client_checks` compares the chain
with them when it first trusts the contract; the server's messages never set them):

``seccl-roster-digest``
    Hex of the contract's ``rosterDigest`` (deployment). In simulation, without it,
    every roster member must be one of the run's simulation keys (``seccl-key-seed``
    with partition ids ``0..num-partitions-1``).
``candidate-fraction``, ``share-fraction``, ``per-tensor``
    λ (the client computes ``M = ceil(λ·n)`` itself), the share fraction and whether
    it applies per tensor; defaults those of :mod:`seccl_flwr.protocol.params`.
``seccl-quorum``
    The least ballot quorum the client accepts (default, or 0: a majority of the roster).
``seccl-election-rule``
    The election rule the run must fix (``borda``, the default, or ``median``).
``seccl-committee-size``
    The evaluator committee size k the run must fix (default 0: every author scores
    every other author, the paper's protocol).

How a client builds its update (its own choice; no one else checks it):

``seccl-error-feedback``
    ``true`` (default) or ``false``: add what the node's last sparse update left out
    to its next change before sparsifying (see
    :func:`seccl_flwr.protocol.sparse.sparsify_with_feedback`).
"""

from collections.abc import Iterable
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from flwr.app import Context

from .errors import ConfigurationError

KEY_FILE = "seccl-key-file"
KEY_SEED = "seccl-key-seed"
CHAIN_URL = "seccl-chain-url"
CHAIN = "seccl-chain"
"""Server side (run config): a JSON-RPC URL to run on; unset or empty: the embedded chain."""
CONTRACT = "seccl-contract"
ROSTER_DIGEST = "seccl-roster-digest"
CANDIDATE_FRACTION = "candidate-fraction"
SHARE_FRACTION = "share-fraction"
PER_TENSOR = "per-tensor"
QUORUM = "seccl-quorum"
ERROR_FEEDBACK = "seccl-error-feedback"
ELECTION_RULE = "seccl-election-rule"
COMMITTEE_SIZE = "seccl-committee-size"
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"


def simulation_key(seed: int | str, partition_id: int) -> bytes:
    """Return the simulation private key of a partition (insecure by design)."""
    return keccak(text=f"seccl-sim-key:{seed}:{partition_id}")


def simulation_addresses(seed: int | str, partition_ids: Iterable[int]) -> frozenset[str]:
    """Return the addresses of the simulation keys of ``partition_ids``."""
    return frozenset(Account.from_key(simulation_key(seed, p)).address for p in partition_ids)


def setting(context: Context, key: str) -> str | None:
    """Return a node-config value, else the run-config value, else ``None``."""
    for source in (context.node_config, context.run_config):
        value = source.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def flag_setting(context: Context, key: str, default: bool) -> bool:
    """Return a boolean setting (see :func:`parse_flag`), else ``default``.

    Raises
    ------
    ConfigurationError
        If the value is not a boolean.
    """
    value = setting(context, key)
    return default if value is None else parse_flag(key, value)


def parse_flag(key: str, value: str) -> bool:
    """Return the boolean a setting's text names: ``true``/``false`` or ``1``/``0``.

    Raises
    ------
    ConfigurationError
        If the value is none of these (naming ``key``).
    """
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ConfigurationError(f"setting {key!r} must be true or false, got {value!r}")
    return text in ("true", "1")


def read_key_file(path: str | Path) -> LocalAccount:
    """Return the account of a key file (hex private key, ``0x`` optional).

    Raises
    ------
    ConfigurationError
        If the file cannot be read or holds no private key (the key is never echoed).
    """
    try:
        text = Path(path).expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigurationError(f"cannot read key file {path} ({reason})") from None
    try:
        return Account.from_key(text)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"key file {path} holds no private key (64 hex digits expected)"
        ) from None


def load_account(context: Context) -> LocalAccount:
    """Return the node's account: from its key file, else derived for simulation.

    Raises
    ------
    ValueError
        If neither a key file nor a simulation seed and partition id is configured.
    """
    key_file = setting(context, KEY_FILE)
    if key_file is not None:
        return read_key_file(key_file)
    seed = context.run_config.get(KEY_SEED)
    partition = context.node_config.get(PARTITION_ID)
    if seed is None or partition is None:
        raise ValueError(
            f"node {context.node_id} has no key: set node config '{KEY_FILE}', or (in "
            f"simulation) run config '{KEY_SEED}' with node config 'partition-id'"
        )
    return Account.from_key(simulation_key(seed, int(partition)))
