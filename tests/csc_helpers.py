"""Opening a run through the typed client (:func:`seccl_flwr.chain.csc.open_run`) in tests.

A run's roster needs each participant's ``Join`` signature, so these helpers take
accounts (keys), not bare addresses.
"""

from collections.abc import Sequence
from typing import Any

from web3 import Web3

from seccl_flwr.chain.csc import CandidateSelection, TxInfo, open_run
from seccl_flwr.protocol.eip712 import sign_join
from seccl_flwr.protocol.params import RunParams


def roster_of(run_id: bytes, chain_id: int, accounts: Sequence[Any]) -> dict[str, bytes]:
    """Return address -> ``Join(run_id, address)`` signature of each account, in order."""
    return {a.address: sign_join(a.key, run_id, chain_id) for a in accounts}


def open_csc(  # noqa: PLR0913 - a run's parameters
    w3: Web3,
    owner: Any,
    run_id: bytes,
    accounts: Sequence[Any],
    num_candidates: int,
    *,
    quorum: int = 1,
    share_fraction_ppm: int = 100_000,
    per_tensor: bool = False,
    **client: Any,
) -> tuple[CandidateSelection, list[TxInfo]]:
    """Deploy, register ``accounts`` and open a run; ``client``: gas_limit, retry."""
    params = RunParams(num_candidates, quorum, share_fraction_ppm, per_tensor)
    roster = roster_of(run_id, w3.eth.chain_id, accounts)
    return open_run(w3, owner, run_id, params, roster, **client)
