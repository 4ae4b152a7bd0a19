"""Misbehaviour to test SecCL against, for experiments and tests.

* :class:`ClientAttack` - poisoning clients: label flipping, scaled or random
  updates, and colluders who rank each other first and everyone else last.
* :class:`LyingServer` - a server that cheats in one of the ways the trust model
  names; each is caught by the honest clients or the contract.
"""

from .client import (
    ATTACK_KEYS,
    POISONS,
    ClientAttack,
    attack_from_config,
    attacker_addresses,
    attacker_partitions,
    node_attack,
    simulation_colluders,
)
from .server import SERVER_LIES, LyingServer

__all__ = [
    "ATTACK_KEYS",
    "POISONS",
    "SERVER_LIES",
    "ClientAttack",
    "LyingServer",
    "attack_from_config",
    "attacker_addresses",
    "node_attack",
    "attacker_partitions",
    "simulation_colluders",
]
