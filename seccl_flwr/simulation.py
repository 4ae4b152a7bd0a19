"""Flower's ``run_simulation`` with a run config, for apps that read theirs.

In Flower 1.42 ``flwr.simulation.run_simulation`` is deprecated and gives the
ServerApp and every ClientApp an *empty* run config, so a ServerApp that reads
``context.run_config["num-server-rounds"]`` (as every app made by ``flwr new`` does)
stops with a ``KeyError``. The supported way is ``flwr run`` with a simulation
federation, which reads the run config from ``pyproject.toml``'s
``[tool.flwr.app.config]`` (``--run-config`` overrides keys). For a run launched
from Python (a notebook, a test), :func:`run_simulation` here takes the run config
and hands it to both sides.
"""

from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp


def with_run_config(context: Context, run_config: Mapping[str, Any]) -> Context:
    """Return ``context`` with ``run_config`` under its run config (its own keys win).

    The copy shares the node's ``state``, so what handlers keep there persists
    (Flower forbids changing ``context.run_config`` itself).
    """
    return Context(
        run_id=context.run_id,
        node_id=context.node_id,
        node_config=context.node_config,
        state=context.state,
        run_config={**run_config, **context.run_config},
    )


class ClientAppWithRunConfig(ClientApp):
    """A ClientApp that runs ``app`` with ``run_config`` under each node's run config."""

    def __init__(self, app: ClientApp, run_config: Mapping[str, Any]) -> None:
        super().__init__()
        self.app = app
        self.run_config = dict(run_config)

    def __call__(self, message: Message, context: Context) -> Message:
        """Run the wrapped app with the run config filled in."""
        return self.app(message, with_run_config(context, self.run_config))


def server_app_with_run_config(app: ServerApp, run_config: Mapping[str, Any]) -> ServerApp:
    """Return a ServerApp that runs ``app`` with ``run_config`` under its run config."""
    wrapped = ServerApp()

    @wrapped.main()
    def main(grid: Grid, context: Context) -> None:
        app(grid, with_run_config(context, run_config))

    return wrapped


def run_simulation(
    server_app: ServerApp,
    client_app: ClientApp,
    num_supernodes: int,
    run_config: Mapping[str, Any],
    **kwargs: Any,
) -> None:
    """Run Flower's ``run_simulation`` with ``run_config`` as both apps' run config.

    Parameters
    ----------
    server_app, client_app, num_supernodes
        As in ``flwr.simulation.run_simulation``.
    run_config : Mapping[str, Any]
        What ``flwr run`` would read from ``[tool.flwr.app.config]``.
    **kwargs
        Passed on (``backend_name``, ``backend_config``, ``verbose_logging``).
    """
    from flwr.simulation import run_simulation as flower_run_simulation

    flower_run_simulation(
        server_app=server_app_with_run_config(server_app, run_config),
        client_app=ClientAppWithRunConfig(client_app, run_config),
        num_supernodes=num_supernodes,
        **kwargs,
    )
