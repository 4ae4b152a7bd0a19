"""Error feedback at the client's call site: the residual kept in the node's state."""

from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from seccl_flwr.client import sparse_update
from seccl_flwr.errors import ConfigurationError
from seccl_flwr.protocol.sparse import ModelLayout

LAYOUT = ModelLayout.of({"w": np.zeros(4, np.float32)})
CHANGE = np.array([1.0, 0.375, 0.0, 0.0], np.float32)


def node(**run_config) -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=run_config)


def verified(round_: int, contract: str = "0xC0") -> SimpleNamespace:
    """The fields of a VerifiedRound that building an update reads."""
    params = SimpleNamespace(share_fraction=0.25, per_tensor=False)
    return SimpleNamespace(
        csc=SimpleNamespace(address=contract), params=params, round=round_, layout=LAYOUT
    )


def sent(context: Context, rounds, contract: str = "0xC0") -> list[list[int]]:
    return [sparse_update(context, verified(r, contract), CHANGE).indices.tolist() for r in rounds]


def test_feedback_is_on_by_default_and_carries_the_residual_between_rounds():
    # top 1 of 4: position 1 (0.375 a round) overtakes position 0 (1.0) in round 3
    assert sent(node(), [1, 2, 3]) == [[0], [0], [1]]


def test_feedback_off_sends_the_plain_top_k_every_round():
    assert sent(node(**{"seccl-error-feedback": False}), [1, 2, 3]) == [[0], [0], [0]]


def test_a_node_config_setting_wins_and_bad_values_name_the_key():
    context = node(**{"seccl-error-feedback": "true"})
    context.node_config["seccl-error-feedback"] = "0"
    assert sent(context, [1, 2, 3]) == [[0], [0], [0]]
    with pytest.raises(ConfigurationError, match="'seccl-error-feedback' must be true or false"):
        sent(node(**{"seccl-error-feedback": "maybe"}), [1])


def test_training_a_round_again_starts_from_the_residual_it_had_before():
    context = node()
    assert sent(context, [1, 2, 2, 2, 3]) == [[0], [0], [0], [0], [1]]


def test_a_new_run_starts_without_a_residual():
    context = node()
    assert sent(context, [1, 2]) == [[0], [0]]
    assert sent(context, [1, 2, 3], contract="0xC1") == [[0], [0], [1]]
