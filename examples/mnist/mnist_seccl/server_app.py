"""The MNIST ServerApp: SecCL on the embedded chain, one log line per round.

Run config keys (defaults in ``pyproject.toml``): ``num-server-rounds``,
``candidate-fraction`` (λ), ``share-fraction``, ``min-nodes``, ``seccl-quorum``
(least ballots per election, fixed on chain; 0: a majority of the nodes),
``seccl-election-rule`` (``borda``, ``median`` or ``rank-median``, fixed on chain; the
ClientApps pin the same key), ``seccl-committee-size`` (evaluators per update k, fixed on chain and
pinned by the ClientApps; 0: every node scores every other), ``seed``,
``seccl-chain-url`` (the loopback URL the embedded chain is served on; the
ClientApps read it from the same key) or ``seccl-chain`` (a JSON-RPC URL of a real
node instead of the embedded chain), ``seccl-contract`` (attach to this deployed
contract instead of deploying one, e.g. a run ``seccl-flwr open`` opened),
``seccl-server-key-file`` (the server's key for a real chain, the run's owner; empty:
a dev key funded by the embedded chain or anvil), ``seccl-store`` (a directory where
the server publishes every anchored message, for ``seccl-flwr audit``; empty: none),
and the data keys of :func:`mnist_seccl.task.data_from_config`.
"""

import time
from logging import INFO
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from seccl_flwr.chain.connection import EMBEDDED
from seccl_flwr.strategy import RoundRecord, SecCL, SecCLResult

from .task import data_from_config, initial_model, server_evaluate_fn

app = ServerApp()


def round_logger(num_rounds: int, accuracy: dict[int, float], note: str):
    """Return an ``on_round`` callback that logs one line per round.

    ``accuracy`` maps a round to the test accuracy ``evaluate_fn`` recorded.
    """
    started = time.monotonic()

    def on_round(record: RoundRecord) -> None:
        log(
            INFO,
            "[%6.1fs] round %d/%d: %d updates, %d candidates, test accuracy %.4f (%s)",
            time.monotonic() - started,
            record.round,
            num_rounds,
            len(record.authors),
            len(record.candidates),
            accuracy.get(record.round, float("nan")),
            note,
        )

    return on_round


def _read_key(path: str) -> str | None:
    return Path(path).expanduser().read_text().strip() if path else None


@app.main()
def main(grid: Grid, context: Context) -> SecCLResult:
    """Run SecCL for ``num-server-rounds`` rounds on the connected SuperNodes."""
    cfg = context.run_config
    seed = int(cfg.get("seed", 0))
    chain = str(cfg.get("seccl-chain", "") or EMBEDDED)
    num_rounds = int(cfg["num-server-rounds"])
    data = data_from_config(cfg)
    log(INFO, "Data: %s", data.note)
    strategy = SecCL(
        candidate_fraction=float(cfg.get("candidate-fraction", 0.2)),
        share_fraction=float(cfg.get("share-fraction", 0.1)),
        min_available_nodes=int(cfg.get("min-nodes", 2)),
        quorum=int(cfg.get("seccl-quorum", 0)) or None,
        election_rule=str(cfg.get("seccl-election-rule", "borda")),
        committee_size=int(cfg.get("seccl-committee-size", 0)),
        chain=chain,
        chain_url=str(cfg["seccl-chain-url"]) if chain == EMBEDDED else None,
        contract=str(cfg.get("seccl-contract", "")) or None,
        server_key=_read_key(str(cfg.get("seccl-server-key-file", ""))),
        run_label=f"mnist-{seed}-{context.run_id}",
        store=str(cfg.get("seccl-store", "")) or None,
    )
    evaluate = server_evaluate_fn(data)
    scores: dict[int, float] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord):
        metrics = evaluate(server_round, arrays)
        scores[server_round] = float(metrics["accuracy"])
        return metrics

    result = strategy.start(
        grid,
        ArrayRecord(initial_model(seed).state_dict()),
        num_rounds=num_rounds,
        evaluate_fn=evaluate_fn,
        on_round=round_logger(num_rounds, scores, data.note),
    )
    log(INFO, "SecCL finished: final test accuracy %.4f", scores[num_rounds])
    return result
