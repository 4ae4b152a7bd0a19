"""Poisoning clients: label flipping, scaled or random updates, colluding rankers.

A :class:`ClientAttack` describes what one attacking participant does from
``start_round`` on. It is plain data with pure methods, so the same attack drives
the train handler of a client of Flower's own strategies (FedAvg, Krum, ...) and of
a SecCL client (the same handler, with
:func:`seccl_flwr.mod.make_seccl_mod`'s ``attack`` for its ballots), which makes the
two comparable:

``label-flip``
    Train on labels ``c - 1 - y`` (:meth:`ClientAttack.labels`, applied per batch by
    :func:`seccl_flwr.torch_task.sgd_train`). With ``flip_fraction`` below 1 only that
    share of each batch is flipped: a stealthier poison, whose update honest
    evaluators score nearly as well as an honest one.
``scale``
    Send ``scale`` times the honest change (:meth:`ClientAttack.update`).
``random``
    Send Gaussian noise whose RMS is ``noise`` times the honest change's RMS.
``none``
    Train honestly (useful with collusion alone).

With ``colluders`` set, the attacker's ballot gives every other colluder the top
score and everyone else zero (:meth:`ClientAttack.ballot`): the fake ranking of the
SecCL paper's collusion experiment. The ballot is still signed by its author, so it
is a valid vote - what limits it is the election, not a signature check.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from flwr.app import Context

from ..identity import KEY_SEED, simulation_addresses
from ..protocol.eip712 import MAX_SCORE
from ..protocol.sparse import ModelLayout

POISONS = ("label-flip", "scale", "random", "none")

Labels = TypeVar("Labels")


@dataclass(frozen=True)
class ClientAttack:
    """What one attacking client does, from ``start_round`` on.

    Parameters
    ----------
    poison : str (default: "label-flip")
        One of :data:`POISONS`.
    colluders : frozenset[str] (default: empty)
        Addresses of all colluding attackers (this one may be among them). When not
        empty, the attacker ranks the other colluders first and everyone else last.
    start_round : int (default: 1)
        First server round in which the attacker misbehaves.
    num_classes : int (default: 10)
        Number of classes, for label flipping.
    scale : float (default: 10.0)
        Factor of the ``scale`` poison.
    noise : float (default: 1.0)
        RMS of the ``random`` poison, as a multiple of the honest change's RMS.
    seed : int (default: 0)
        Seed of the ``random`` poison (mixed with the round, so rounds differ).
    flip_fraction : float (default: 1.0)
        Share of each batch's labels the ``label-flip`` poison flips, in (0, 1]: the
        first ``round(flip_fraction · batch size)`` positions of the batch. A
        shuffling loader puts a fresh random sample there in every batch.
    """

    poison: str = "label-flip"
    colluders: frozenset[str] = field(default_factory=frozenset)
    start_round: int = 1
    num_classes: int = 10
    scale: float = 10.0
    noise: float = 1.0
    seed: int = 0
    flip_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.poison not in POISONS:
            raise ValueError(f"unknown poison {self.poison!r}; choose from {POISONS}")
        if self.start_round < 1:
            raise ValueError(f"start_round must be at least 1, got {self.start_round}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.noise < 0:
            raise ValueError(f"noise must be non-negative, got {self.noise}")
        if not 0.0 < self.flip_fraction <= 1.0:
            raise ValueError(f"flip_fraction must lie in (0, 1], got {self.flip_fraction}")
        object.__setattr__(self, "colluders", frozenset(self.colluders))

    def active(self, server_round: int) -> bool:
        """Whether the attacker misbehaves in ``server_round``."""
        return server_round >= self.start_round

    def labels(self, labels: Labels, server_round: int) -> Labels:
        """Return the labels to train on: flipped (``c - 1 - y``) when label flipping.

        Only the first ``round(flip_fraction · len(labels))`` are flipped; ``labels``
        (a torch tensor or a numpy array) is never changed in place.
        """
        if self.poison != "label-flip" or not self.active(server_round):
            return labels
        flipped = (self.num_classes - 1) - labels
        if self.flip_fraction >= 1.0:
            return flipped
        count = int(round(self.flip_fraction * len(labels)))
        mixed = labels.clone() if hasattr(labels, "clone") else labels.copy()
        mixed[:count] = flipped[:count]
        return mixed

    def update(self, delta: np.ndarray, server_round: int) -> np.ndarray:
        """Return the (flat) change to send in place of the honest ``delta``."""
        if not self.active(server_round) or self.poison in ("label-flip", "none"):
            return delta
        if self.poison == "scale":
            return (delta * self.scale).astype(delta.dtype)
        rms = float(np.sqrt(np.mean(np.square(delta, dtype=np.float64)))) if delta.size else 0.0
        rng = np.random.default_rng([self.seed, server_round])
        return rng.normal(0.0, self.noise * rms, size=delta.shape).astype(delta.dtype)

    def poison_arrays(
        self,
        global_arrays: dict[str, np.ndarray],
        trained: dict[str, np.ndarray],
        server_round: int,
    ) -> dict[str, np.ndarray]:
        """Return the model a dense (non-SecCL) client sends: global + poisoned change."""
        layout = ModelLayout.of(global_arrays)
        base = layout.flatten(global_arrays)
        delta = self.update(layout.flatten(trained) - base, server_round)
        return layout.unflatten(base + delta, global_arrays)

    def ballot(
        self, me: str, peers: Sequence[str], scores: Sequence[int], server_round: int
    ) -> list[int]:
        """Return the scores to sign: colluders on top, the others at zero."""
        if not self.colluders or not self.active(server_round):
            return list(scores)
        return [int(MAX_SCORE) if p in self.colluders and p != me else 0 for p in peers]


def attacker_partitions(num_partitions: int, fraction: float) -> list[int]:
    """Return the partition ids of the attackers: the first ``round(fraction·n)``.

    Raises
    ------
    ValueError
        If ``fraction`` is not in [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"attacker fraction must lie in [0, 1), got {fraction}")
    return list(range(int(round(fraction * num_partitions))))


def simulation_colluders(seed: int | str, partitions: Collection[int]) -> frozenset[str]:
    """Return the addresses of simulated partitions (keys from the run seed)."""
    return simulation_addresses(seed, partitions)


ATTACK_KEYS = {
    "attack-poison": "one of POISONS, or empty for no attack",
    "attack-fraction": "fraction ε of participants that attack (the first partitions)",
    "attack-start": "first server round of the attack",
    "attack-collude": "whether the attackers rank each other first, everyone else last",
    "attack-scale": "factor of the 'scale' poison",
    "attack-noise": "RMS multiple of the 'random' poison",
    "attack-flip-fraction": "share of each batch's labels the 'label-flip' poison flips",
}
"""Run-config keys read by :func:`attack_from_config` (simulations and experiments)."""


def _attacker_partitions_of(run_config: Mapping[str, Any], num_partitions: int) -> list[int]:
    """Return the attacking partitions the run config sets (none without an attack)."""
    if not run_config.get("attack-poison") and not run_config.get("attack-collude", False):
        return []
    return attacker_partitions(num_partitions, float(run_config.get("attack-fraction", 0)))


def attacker_addresses(run_config: Mapping[str, Any], num_partitions: int) -> frozenset[str]:
    """Return the addresses of a simulation's attackers (empty without an attack).

    Keys come from ``seccl-key-seed`` and the partition ids, as in every simulation.
    """
    partitions = _attacker_partitions_of(run_config, num_partitions)
    if not partitions:
        return frozenset()
    return simulation_colluders(run_config.get(KEY_SEED, 0), partitions)


def node_attack(context: Context) -> ClientAttack | None:
    """Return the attack a simulated node mounts, or ``None`` for an honest one.

    Reads the run config (:data:`ATTACK_KEYS`) and the node config's ``partition-id``
    and ``num-partitions``, as Flower's simulation sets them.
    """
    return attack_from_config(
        context.run_config,
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
    )


def attack_from_config(
    run_config: Mapping[str, Any], partition_id: int, num_partitions: int
) -> ClientAttack | None:
    """Return the attack of a simulated partition as the run config sets it, or ``None``.

    The attackers are the first ``round(ε·n)`` partitions (:func:`attacker_partitions`);
    colluders know each other's addresses, derived from ``seccl-key-seed`` as in
    every simulation (:func:`seccl_flwr.identity.simulation_key`).
    """
    attackers = _attacker_partitions_of(run_config, num_partitions)
    if partition_id not in attackers:
        return None
    collude = bool(run_config.get("attack-collude", False))
    return ClientAttack(
        poison=str(run_config.get("attack-poison", "") or "") or "none",
        colluders=attacker_addresses(run_config, num_partitions) if collude else frozenset(),
        start_round=int(run_config.get("attack-start", 1)),
        scale=float(run_config.get("attack-scale", 10.0)),
        noise=float(run_config.get("attack-noise", 1.0)),
        seed=int(partition_id),
        flip_fraction=float(run_config.get("attack-flip-fraction", 1.0)),
    )
