"""Plain Flower FedAvg ClientApp on the same digits data and handlers as SecCL's.

The baseline for :mod:`benchmarks.seccl_vs_fedavg`: every node runs exactly the
handlers of :data:`seccl_flwr.apps.digits.app` (same partitions, validation splits,
model and SGD loop) without :data:`seccl_flwr.mod.seccl_mod` around them: full
model back, no sparsification, signatures, chain or cross-evaluation. Run it with
``flwr.serverapp.strategy.FedAvg``.
"""

from ..attacks.client import node_attack
from . import digits
from .handlers import flower_client_app

app = flower_client_app(
    train_fn=lambda ctx: digits.client_functions(ctx)[0],
    evaluate_fn=lambda ctx: digits.client_functions(ctx)[1],
    attack=node_attack,
)
"""FedAvg ClientApp on the digits partitions of :data:`seccl_flwr.apps.digits.app`."""
