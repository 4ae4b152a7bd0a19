"""``seccl_mod`` around an app's own ``@app.train`` / ``@app.evaluate`` handlers.

The app here is written as Flower's quickstart-pytorch writes its handlers (read
``msg.content["arrays"]``, reply ``"arrays"`` + ``"metrics"``; evaluate replies
``eval_acc``), on scikit-learn's digits with the digits app's partitions and SGD
loop, on an explicit ``device="cpu"``. Runs are in-process on the embedded chain.
"""

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from seccl_flwr import seccl_mod, wire
from seccl_flwr.apps import digits
from seccl_flwr.attacks import LyingServer
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.errors import (
    GlobalModelMismatchError,
    MalformedMessageError,
    NotEnoughNodesError,
    ScoreMetricError,
)
from seccl_flwr.inprocess import InProcessGrid, new_run_id
from seccl_flwr.mod import SCORE_METRIC
from seccl_flwr.strategy import SecCL
from seccl_flwr.torch_task import load_arrays, model_arrays, predict, sgd_train, torch_evaluate_fn
from tests.strategy_helpers import pins_of

TaskIdentity.run_id = TaskIdentity._run_id or 1  # messages built outside a Flower run
TaskIdentity.task_id = TaskIdentity._task_id or 1
TaskIdentity.node_id = TaskIdentity._node_id or 0

DEVICE = "cpu"
NODES = 3


class QuickstartStyleApp:
    """A ClientApp with the SecCL mod around quickstart-style handlers; records their calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, tuple[str, ...]]] = []
        self.errors: list[Exception] = []
        self.app = ClientApp(mods=[seccl_mod])
        self.app.train()(self.train)
        self.app.evaluate()(self.evaluate)

    def __call__(self, msg: Message, context: Context) -> Message:
        try:
            return self.app(msg, context)
        except Exception as exc:
            self.errors.append(exc)
            raise

    def train(self, msg: Message, context: Context) -> Message:
        self.calls.append(("train", context.node_id, tuple(sorted(msg.content.keys()))))
        model = digits.DigitsNet()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        model.to(DEVICE)
        part = _partition(context)
        metrics = sgd_train(part.train, DEVICE, lr=float(msg.content["config"]["lr"]))(
            model, ConfigRecord()
        )
        content = RecordDict(
            {"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)}
        )
        return Message(content=content, reply_to=msg)

    def evaluate(self, msg: Message, context: Context) -> Message:
        self.calls.append(("evaluate", context.node_id, tuple(sorted(msg.content.keys()))))
        part = _partition(context)
        arrays = {k: v.numpy() for k, v in msg.content["arrays"].items()}
        metrics = torch_evaluate_fn(digits.DigitsNet(), part.val_x, part.val_y, DEVICE)(arrays)
        reply = {
            "eval_loss": metrics["loss"],
            "eval_acc": metrics["accuracy"],
            "num-examples": metrics["num-examples"],
        }
        return Message(content=RecordDict({"metrics": MetricRecord(reply)}), reply_to=msg)


def _partition(context: Context):
    from seccl_flwr.datasets import make_partition, partition_indices

    (x, y), _ = digits._pool(0)
    pid = int(context.node_config["partition-id"])
    indices = partition_indices(y, int(context.node_config["num-partitions"]), 0)[pid]
    return make_partition(x, y, indices, batch_size=32, seed=pid)


def run(app, strategy: SecCL, num_rounds: int = 1, **config):
    run_config = {
        "seccl-key-seed": 3,
        "seccl-chain-url": strategy.chain_url,
        **pins_of(strategy),
        **config,
    }
    grid = InProcessGrid(app, NODES, run_config=run_config)
    initial = ArrayRecord(digits.initial_model().state_dict())
    return strategy.start(
        grid, initial, num_rounds=num_rounds, train_config=ConfigRecord({"lr": 0.1})
    )


def seccl(**kwargs) -> SecCL:
    return SecCL(chain_url=free_loopback_url(), candidate_fraction=0.5, **kwargs)


def test_an_app_keeps_its_own_handlers_and_speaks_seccl():
    app = QuickstartStyleApp()
    result = run(app, seccl(), num_rounds=2)
    assert len(result.rounds) == 2 and app.errors == []
    for record in result.rounds:
        assert len(record.authors) == NODES and len(record.candidates) == 2
        assert record.dropped == {} and record.rejections == []
    calls = Counter((kind, node) for kind, node, _ in app.calls)
    for node in range(1, NODES + 1):
        assert calls["train", node] == 2  # once per round
        # per round: each of the 2 peers' candidates scored, then the global model
        assert calls["evaluate", node] == 2 * (NODES - 1 + 1)
    # the handlers see Flower's ordinary records (SecCL's own record reaches only a
    # train or a global evaluation, which the mod has checked); a candidate scored in
    # cross-evaluation comes as a plain evaluate message: model and config
    kinds = {(kind, keys) for kind, _, keys in app.calls}
    assert kinds == {
        ("train", ("arrays", "config", "seccl")),
        ("evaluate", ("arrays", "config", "seccl")),
        ("evaluate", ("arrays", "config")),
    }
    # the handlers' metrics reach the server
    assert "eval_acc" in result.evaluate_metrics_clientapp[2]
    assert "train-loss" in result.train_metrics_clientapp[2]


def test_the_global_model_is_checked_before_the_train_handler_runs():
    app = QuickstartStyleApp()
    strategy = LyingServer(
        lie="wrong-global", chain_url=free_loopback_url(), candidate_fraction=0.5
    )
    with pytest.raises(NotEnoughNodesError):
        run(app, strategy)
    assert [kind for kind, _, _ in app.calls] == []  # no handler ever ran
    assert len(app.errors) == NODES
    for error in app.errors:
        assert isinstance(error, GlobalModelMismatchError)
        assert str(error).startswith("GlobalModelMismatchError: round 0, node 0x")


def test_a_score_metric_the_evaluate_handler_does_not_return_is_named():
    app = QuickstartStyleApp()
    with pytest.raises(NotEnoughNodesError, match="ballot"):
        run(app, seccl(), **{SCORE_METRIC: "f1"})
    assert app.errors and all(isinstance(e, ScoreMetricError) for e in app.errors)
    assert str(app.errors[0]) == (
        "ScoreMetricError: the evaluate handler returned no metric 'f1' to score peers by "
        "(it returned ['eval_acc', 'eval_loss', 'num-examples']); name one in the run "
        "config's 'seccl-score-metric'"
    )


def _context() -> Context:
    return Context(
        run_id=new_run_id(),
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config={"seccl-key-seed": 3},
    )


def _message(message_type: str, records: dict) -> Message:
    msg = Message(RecordDict(records), dst_node_id=1, message_type=message_type)
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def test_the_apps_own_queries_pass_through_and_foreign_messages_are_refused():
    app = ClientApp(mods=[seccl_mod])

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"echo": ConfigRecord({"ok": True})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        raise AssertionError("the handler must not run")

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        raise AssertionError("the handler must not run")

    reply = app(_message("query", {}), _context())
    assert reply.content["echo"]["ok"] is True
    model = ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})
    with pytest.raises(MalformedMessageError, match="carries no 'seccl' record"):
        app(_message("train", {"arrays": model}), _context())
    marked = ConfigRecord({wire.PHASE: "seccl-bribe", wire.ROUND: 1})
    with pytest.raises(MalformedMessageError, match="unknown SecCL phase 'seccl-bribe'"):
        app(_message("evaluate", {"arrays": model, wire.SECCL_KEY: marked}), _context())


def test_the_mod_leaves_torch_and_devices_to_the_app():
    """The mod and everything it runs work on numpy arrays and Flower records only."""
    code = "import sys, seccl_flwr.mod; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_torch_helpers_run_on_the_device_they_are_given(device):
    x, y = digits.test_set()
    model = digits.initial_model()
    arrays = model_arrays(model)
    load_arrays(model, arrays, device)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    metrics = torch_evaluate_fn(digits.DigitsNet(), x, y, device)(arrays)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["num-examples"] == len(y)


def test_inputs_follow_the_model_to_its_device():
    """``predict`` moves each batch to the device it is given, wherever the data lives:
    on the ``meta`` device (shapes only) nothing can assume CPU tensors."""
    x, _ = digits.test_set()
    model = digits.initial_model().to("meta")
    logits = predict(model, x, "meta")
    assert logits.device.type == "meta" and logits.shape == (len(x), 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_the_digits_functions_train_and_evaluate_on_cuda():
    x, y = digits.test_set()
    model = digits.initial_model()
    load_arrays(model, model_arrays(model), "cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    metrics = torch_evaluate_fn(model, x, y, "cuda")(model_arrays(model))
    assert metrics["num-examples"] == len(y)
