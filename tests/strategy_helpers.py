"""Shared helpers for running SecCL end to end in-process on the digits app."""

from flwr.app import ArrayRecord

from seccl_flwr.apps import digits
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.client_checks import pinned_run_config
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.strategy import SecCL, SecCLResult


def pins_of(strategy: SecCL) -> dict:
    """The run config with which the clients pin the strategy's run parameters."""
    return pinned_run_config(
        strategy.candidate_fraction,
        strategy.share_fraction,
        strategy.per_tensor,
        strategy.quorum,
        strategy.election_rule,
        strategy.committee_size,
    )


def run_digits(
    strategy_cls=SecCL,
    num_nodes: int = 5,
    num_rounds: int = 2,
    unavailable=None,
    run_config: dict | None = None,
    **kwargs,
) -> tuple[SecCLResult, SecCL, InProcessGrid]:
    url = kwargs.pop("chain_url", None) or free_loopback_url()
    kwargs.setdefault("candidate_fraction", 0.4)
    strategy = strategy_cls(chain_url=url, **kwargs)
    config = {
        "seccl-key-seed": 11,
        "seccl-chain-url": url,
        "seed": 0,
        "lr": 0.1,
        **pins_of(strategy),
        **(run_config or {}),
    }
    grid = InProcessGrid(digits.app, num_nodes, run_config=config, unavailable=unavailable)
    result = strategy.start(
        grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=num_rounds
    )
    return result, strategy, grid
