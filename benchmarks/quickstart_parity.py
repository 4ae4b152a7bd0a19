"""FedAvg against SecCL on the quickstart-style app of ``tests/quickstart_app``, in-process.

The README's table of settings for its "Use SecCL in your Flower app" diff:

    python benchmarks/quickstart_parity.py --candidate-fraction 0.5 --share-fraction 0.5 \
        --election-rule median --seed 0

Both runs use the app's own handlers and run config (3 nodes, 3 rounds, 2 local
epochs, lr 0.05; the MNIST test set from ``../shared/data/mnist``: 2,000 digits held
out for the centralized test, 3,000 split IID among the nodes), SecCL with
``seccl_mod`` around the very same handlers, on the embedded chain. Prints the final
centralized accuracy of each.
"""

import argparse
import sys
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from seccl_flwr import SecCL, seccl_mod
from seccl_flwr.chain.rpc_server import free_loopback_url
from seccl_flwr.inprocess import InProcessGrid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "quickstart_app"))

from pytorchexample import client_app, server_app  # noqa: E402
from pytorchexample.task import Net  # noqa: E402


def final_accuracy(strategy, app: ClientApp, nodes: int, run_config: dict) -> float:
    """Run 3 rounds; return the final centralized accuracy."""
    torch.manual_seed(run_config["seed"])
    grid = InProcessGrid(app, nodes, run_config=run_config)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(Net().state_dict()),
        train_config=ConfigRecord({"lr": run_config["lr"]}),
        num_rounds=run_config["num-server-rounds"],
        evaluate_fn=server_app.global_evaluate_fn(run_config),
    )
    return result.evaluate_metrics_serverapp[run_config["num-server-rounds"]]["accuracy"]


def main() -> None:
    """Run FedAvg, then SecCL, with the settings given; print both accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--candidate-fraction", type=float, default=0.5)
    parser.add_argument("--share-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--election-rule", default="borda", choices=["borda", "median"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    run_config = {
        "num-server-rounds": 3,
        "fraction-train": 1.0,
        "local-epochs": args.local_epochs,
        "lr": 0.05,
        "batch-size": 32,
        "seed": args.seed,
        "data-dir": args.data_dir,
        "pool-size": 3000,
        "test-size": 2000,
    }
    fedavg = final_accuracy(FedAvg(fraction_train=1.0), client_app.app, args.nodes, run_config)
    seccl_app = ClientApp(mods=[seccl_mod])
    seccl_app.train()(client_app.train)
    seccl_app.evaluate()(client_app.evaluate)
    url = free_loopback_url()
    seccl_config = {
        **run_config,
        "seccl-chain-url": url,
        "seccl-key-seed": 0,
        "candidate-fraction": args.candidate_fraction,
        "share-fraction": args.share_fraction,
        "seccl-election-rule": args.election_rule,
    }
    strategy = SecCL.from_run_config(seccl_config, fraction_train=1.0)
    seccl = final_accuracy(strategy, seccl_app, args.nodes, seccl_config)
    print(
        f"nodes={args.nodes} λ={args.candidate_fraction} share={args.share_fraction} "
        f"rule={args.election_rule} "
        f"seed={args.seed}: FedAvg {fedavg:.4f}, SecCL {seccl:.4f} "
        f"({100 * (seccl - fedavg):+.2f} points)"
    )


if __name__ == "__main__":
    main()
