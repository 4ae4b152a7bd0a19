"""Per-peer cost of cross-evaluation, before and after issue 16 (item 4), side by side.

One evaluator of the MNIST example (the paper's CNN, macro F1 on its validation
split) scores ``n - 1`` peers' sparse updates (top 10 % of a random change, as a
trained update has) on the same global model. Every method runs in the same process,
interleaved repetition by repetition (A B C ... A B C ...), so the machine's load
hits them alike; the report gives each method's median per-peer time (CPU time of
the process by default, which other jobs' load hardly moves; ``--clock wall``) and
its ratio to the path of main before this change.

Methods (all score the same candidates; the scores are checked equal):

* ``before``: the per-peer path of main aae9a66, replayed step by step with its own
  code: candidate model, Flower ``ArrayRecord`` encoding, a new evaluate
  ``Message``, the handler's strict decoding, ``load_state_dict``, inference, loss,
  accuracy and scikit-learn's macro F1;
* ``handler``: today's default path, the real one: :func:`seccl_flwr.client.score_updates`
  with the mod's per-peer scorer through the MNIST app's evaluate handler (macro F1
  without scikit-learn's input checks);
* ``batched``: the opt-in batched scorer
  (:func:`seccl_flwr.torch_task.torch_batch_score_fn`, 16 peers per call), peer
  after peer by ``functional_call`` on validation data laid out once; ``-cl``:
  channels-last layout; ``vmap``: all peers of a call vectorised.

The signature and digest check of each peer's update (the protocol's own work, the
same in every method) is timed once, as ``verify``, for scale.

Usage::

    python benchmarks/cross_eval_cost.py                       # 3000 and 400 digits per client
    python benchmarks/cross_eval_cost.py --per-client 3000 --repeats 7 --out results.csv
"""

import argparse
import copy
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from eth_account import Account
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from sklearn.metrics import f1_score
from torch import nn

from seccl_flwr import wire
from seccl_flwr.client import VerifiedRound, score_updates, verify_peer_update
from seccl_flwr.mod import _scorer
from seccl_flwr.protocol.eip712 import Kind, RunBinding
from seccl_flwr.protocol.params import RunParams
from seccl_flwr.protocol.signed import SignedMessage
from seccl_flwr.protocol.sparse import ModelLayout, apply_update, sparsify
from seccl_flwr.records import arrays_of, record_of
from seccl_flwr.report import write_csv
from seccl_flwr.torch_task import load_arrays, predict, torch_batch_score_fn

MNIST_APP = Path(__file__).resolve().parents[1] / "examples" / "mnist"
SHARE_FRACTION = 0.1
BATCH = 16
CLOCK = [time.process_time]
"""The clock every step is timed by: CPU time of this process (``--clock cpu``, the
default: on a shared machine other jobs' load hardly moves it) or wall time."""


def mnist():
    """Import the MNIST example's ``client_app`` and ``task`` modules."""
    if str(MNIST_APP) not in sys.path:
        sys.path.insert(0, str(MNIST_APP))
    from mnist_seccl import client_app, task

    return client_app, task


def setting(n: int, per_client: int, seed: int = 0):
    """Return the evaluator's context, its global model and ``n - 1`` peer updates."""
    client_app, task = mnist()
    run_config = {"seed": seed, "data-source": "idx", "digits-per-participant": per_client}
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": n},
        state=RecordDict(),
        run_config=run_config,
    )
    model = task.initial_model(seed)
    arrays = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    layout = ModelLayout.of(arrays)
    rng = np.random.default_rng(seed)
    updates = {
        f"peer{i}": sparsify(rng.normal(0, 0.02, layout.size).astype(np.float32), SHARE_FRACTION)
        for i in range(n - 1)
    }
    return context, arrays, layout, updates


def validation(context: Context):
    """Return the evaluator's partition (its validation split is what it scores on)."""
    client_app, _ = mnist()
    settings = sorted((k, v) for k, v in context.run_config.items() if k in client_app.DATA_KEYS)
    return client_app._partition(
        tuple(settings),
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


# ------------------------------------------------------------------ the old path
def before_path(context, arrays, layout, updates, parts: dict[str, float]) -> list[float]:
    """Replay main aae9a66's per-peer scoring step by step, timing each step."""
    client_app, task = mnist()
    part = validation(context)
    model, x, y = task.MnistNet(), part.val_x, part.val_y
    labels = y.numpy()
    base = layout.flatten(arrays)
    msg = Message(
        RecordDict({wire.SECCL_KEY: ConfigRecord({wire.ROUND: 1})}),
        dst_node_id=1,
        message_type="evaluate",
    )
    scores = []

    def timed(step, fn):
        start = CLOCK[0]()
        out = fn()
        parts[step] += CLOCK[0]() - start
        return out

    for update in updates.values():
        candidate = timed(
            "candidate", lambda u=update: layout.unflatten(apply_update(base, u), arrays)
        )
        content = timed(
            "message+records",
            lambda c=candidate: (
                Message(
                    RecordDict(
                        {
                            wire.ARRAYS: record_of(c),
                            wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1}),
                        }
                    ),
                    metadata=copy.copy(msg.metadata),
                ).content
            ),
        )
        decoded = timed(
            "message+records", lambda c=content: arrays_of(c.array_records[wire.ARRAYS])
        )
        timed("load_state_dict", lambda d=decoded: load_arrays(model, d, "cpu"))
        logits = timed("inference", lambda: predict(model, x, "cpu"))
        pred = timed("inference", lambda lg=logits: lg.argmax(1).numpy())
        timed("loss+accuracy", lambda lg=logits: float(nn.functional.cross_entropy(lg, y)))
        timed("loss+accuracy", lambda p=pred: float((p == labels).mean()))
        scores.append(
            timed(
                "macro F1",
                lambda p=pred: float(f1_score(labels, p, average="macro", zero_division=0)),
            )
        )
    return scores


# ------------------------------------------------------------------ the new paths
def methods(context, arrays, layout, updates):
    """Return ``name -> callable() -> scores`` of the paths measured."""
    client_app, task = mnist()
    msg = Message(
        RecordDict({wire.SECCL_KEY: ConfigRecord({wire.ROUND: 1})}),
        dst_node_id=1,
        message_type="evaluate",
    )
    handler = _scorer(msg, context, client_app.flower_app, "macro-f1")
    part = validation(context)

    def batched(**kwargs):
        scorer = torch_batch_score_fn(task.MnistNet(), part.val_x, part.val_y, "cpu", **kwargs)
        return lambda: score_updates(layout, arrays, updates, scorer, BATCH)

    return {
        "handler": lambda: score_updates(layout, arrays, updates, handler),
        "batched": batched(),
        "batched-cl": batched(channels_last=True),
        "vmap-cl": batched(channels_last=True, vectorize=True),
    }


def verify_seconds(layout, updates) -> float:
    """Seconds per peer to check an update's digest and signature (protocol work)."""
    account = Account.from_key(b"\x01" * 32)
    binding = RunBinding(chain_id=31337, contract="0x" + "11" * 20, run_id=b"\x22" * 32)

    class Csc:
        pass

    csc = Csc()
    csc.binding = binding
    ctx = VerifiedRound(
        csc, RunParams(1, 1, int(SHARE_FRACTION * 1e6), False), account, 1, {}, layout, b""
    )
    signed = [
        SignedMessage.sign(account, binding, 1, Kind.UPDATE, u.to_arrays())
        for u in updates.values()
    ]
    start = CLOCK[0]()
    for message in signed:
        verify_peer_update(
            ctx, account.address, record_of(message.payload), message.signature, message.digest()
        )
    return (CLOCK[0]() - start) / len(signed)


def measure(n: int, per_client: int, repeats: int) -> list[dict]:
    """Measure every method ``repeats`` times, interleaved; return one row per method."""
    context, arrays, layout, updates = setting(n, per_client)
    peers = len(updates)
    paths = methods(context, arrays, layout, updates)
    parts: dict[str, float] = defaultdict(float)
    reference = [int(round(s * 1e6)) for s in before_path(context, arrays, layout, updates, parts)]
    for name, fn in paths.items():  # warm up, and check every path scores alike
        scores = fn()
        if scores != reference:
            diff = sum(a != b for a, b in zip(scores, reference, strict=True))
            print(f"  note: {name} differs from before on {diff} of {peers} peers")
    times: dict[str, list[float]] = defaultdict(list)
    parts.clear()
    for _ in range(repeats):
        start = CLOCK[0]()
        before_path(context, arrays, layout, updates, parts)
        times["before"].append(CLOCK[0]() - start)
        for name, fn in paths.items():
            start = CLOCK[0]()
            fn()
            times[name].append(CLOCK[0]() - start)
    verify = verify_seconds(layout, updates)
    base = statistics.median(times["before"]) / peers
    rows = []
    for name, values in times.items():
        per_peer = statistics.median(values) / peers
        rows.append(
            {
                "n": n,
                "per_client": per_client,
                "val_digits": len(validation(context).val_y),
                "method": name,
                "ms_per_peer": 1e3 * per_peer,
                "ms_per_peer_min": 1e3 * min(values) / peers,
                "ratio_to_before": per_peer / base,
                "verify_ms_per_peer": 1e3 * verify,
                **(
                    {f"before_{k}_ms": 1e3 * v / (peers * repeats) for k, v in parts.items()}
                    if name == "before"
                    else {}
                ),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the measurement and print the table; return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, nargs="+", default=[3000, 0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--out", help="write the rows to this CSV file")
    args = parser.parse_args(argv)
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    TaskIdentity.run_id = TaskIdentity._run_id or 1  # messages built outside a Flower run
    TaskIdentity.task_id = TaskIdentity._task_id or 1
    TaskIdentity.node_id = TaskIdentity._node_id or 0
    load = os.getloadavg()
    rows = []
    for per_client in args.per_client:
        rows += measure(args.clients, per_client, args.repeats)
    load_after = os.getloadavg()
    print(
        f"\nCross-evaluation per peer, MNIST example CNN, evaluator 0 of {args.clients} "
        f"({args.clients - 1} peers), torch threads {args.threads}, {args.clock} time, median of "
        f"{args.repeats} interleaved repetitions; load average {load[0]:.2f} before, "
        f"{load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    print(f"{'digits/client':>13} {'val':>4} {'method':>11} {'ms/peer':>8} {'min':>7} {'ratio':>6}")
    for r in rows:
        share = r["per_client"] or "equal"
        print(
            f"{share!s:>13} {r['val_digits']:>4} {r['method']:>11} {r['ms_per_peer']:>8.2f} "
            f"{r['ms_per_peer_min']:>7.2f} {r['ratio_to_before']:>6.2f}"
        )
    print("\nBefore, per peer by step (ms):")
    for r in rows:
        if r["method"] == "before":
            steps = {k[7:-3]: v for k, v in r.items() if k.startswith("before_")}
            print(
                f"  {r['per_client'] or 'equal'} digits/client: "
                + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
                + f"; verify (digest + signature, every method) {r['verify_ms_per_peer']:.2f}"
            )
    if args.out:
        write_csv(rows, args.out)
        print(f"\nrows written to {args.out}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
