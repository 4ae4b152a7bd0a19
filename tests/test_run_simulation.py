"""Issue 13.6: an app whose ServerApp reads its run config, launched from Python.

Flower 1.42's ``flwr.simulation.run_simulation`` (deprecated; ``flwr run`` with a
simulation federation is the supported way) gives both apps an empty run config;
``seccl_flwr.run_simulation`` hands them the one given.
"""

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.task_identity import TaskIdentity

from seccl_flwr import SecCL, run_simulation
from seccl_flwr.apps import digits
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.inprocess import new_run_id
from seccl_flwr.simulation import ClientAppWithRunConfig, server_app_with_run_config

TaskIdentity.run_id = TaskIdentity._run_id or 1  # messages built outside a Flower run
TaskIdentity.task_id = TaskIdentity._task_id or 1
TaskIdentity.node_id = TaskIdentity._node_id or 0


def _context(run_config: dict) -> Context:
    return Context(
        run_id=new_run_id(), node_id=1, node_config={}, state=RecordDict(), run_config=run_config
    )


def test_both_apps_see_the_run_config_and_their_own_keys_win():
    seen: dict = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        seen["server"] = dict(context.run_config)

    server_app_with_run_config(server, {"num-server-rounds": 3, "lr": 0.1})(
        None, _context({"lr": 0.5})
    )
    assert seen["server"] == {"num-server-rounds": 3, "lr": 0.5}

    client = ClientApp()

    @client.query()
    def query(msg: Message, context: Context) -> Message:
        seen["client"] = dict(context.run_config)
        context.state["kept"] = ConfigRecord({"n": 1})
        return Message(RecordDict(), reply_to=msg)

    context = _context({})
    msg = Message(RecordDict(), dst_node_id=1, message_type="query")
    msg.metadata.__dict__["_message_id"] = "q1"
    ClientAppWithRunConfig(client, {"seccl-chain-url": "http://127.0.0.1:1"})(msg, context)
    assert seen["client"] == {"seccl-chain-url": "http://127.0.0.1:1"}
    assert "kept" in context.state  # the node's state is the one the handler wrote to


@pytest.mark.slow
def test_run_simulation_runs_an_app_whose_server_app_reads_its_run_config():
    """The README's server (``SecCL.from_run_config``, rounds from the run config)
    with the digits ClientApp in Flower's simulation engine (Ray actors)."""
    run_config = {
        "num-server-rounds": 1,
        "seccl-chain-url": free_loopback_url(),
        "seccl-key-seed": 2,
        "candidate-fraction": 0.5,
        "seed": 0,
        "lr": 0.1,
    }
    results = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = SecCL.from_run_config(context.run_config)
        initial = ArrayRecord(digits.initial_model().state_dict())
        rounds = context.run_config["num-server-rounds"]
        results.append(strategy.start(grid, initial, num_rounds=rounds))

    run_simulation(
        server,
        digits.app,
        num_supernodes=2,
        run_config=run_config,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    (result,) = results
    (record,) = result.rounds
    assert len(record.authors) == 2 and len(record.candidates) == 1
    assert record.dropped == {}
