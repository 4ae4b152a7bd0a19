"""The embedded chain's py-evm backend, with calls and estimates free as on a node.

A node runs an ``eth_call`` that names no fee (no ``gasPrice``, ``maxFeePerGas`` or
``maxPriorityFeePerGas``) at gas price 0: no base fee, and the sender's balance is
not checked. eth-tester charges such a call 1 gwei per gas of the block's gas limit,
so a call from an account without 0.03 ETH fails with "cannot afford txn gas", and
that is every ``cast call`` (foundry sends ``from`` 0x0) and every view read by a
client without funds; ``eth_estimateGas`` likewise. Calls that name a fee are
eth-tester's own, as before.

Imported on first use: loading py-evm's backend takes 0.2 s that processes which
only talk to a URL do not need.
"""

from typing import Any

from eth.exceptions import Revert
from eth.vm.spoof import SpoofTransaction
from eth_tester.backends.pyevm.main import PyEVMBackend, _get_block_by_number
from eth_tester.exceptions import TransactionFailed

FEE_KEYS = frozenset({"gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"})
"""A call object's fee fields, as eth-tester names them."""


class FreeCallBackend(PyEVMBackend):
    """py-evm backend whose calls and estimates that name no fee run at gas price 0."""

    def estimate_gas(self, transaction: dict[str, Any], block_number: Any = "latest") -> int:
        """Return the gas a transaction needs; without fee fields at gas price 0.

        eth-tester estimates on a state with base fee 0 already, but at its default
        1 gwei price, which the sender must afford.
        """
        if not FEE_KEYS & transaction.keys():
            transaction = {**transaction, "max_fee_per_gas": 0, "max_priority_fee_per_gas": 0}
        return super().estimate_gas(transaction, block_number)

    def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
        """Return a call's output; a revert raises ``TransactionFailed`` with its data.

        Without fee fields the call runs on the block's state with base fee 0 and
        gas price 0 (what geth does); with them, as eth-tester runs it.
        """
        if FEE_KEYS & transaction.keys():
            return super().call(transaction, block_number)
        free = {
            **transaction,
            "gas": transaction.get("gas", self._max_available_gas()),
            "max_fee_per_gas": 0,
            "max_priority_fee_per_gas": 0,
        }
        unsigned = self._get_normalized_and_unsigned_evm_transaction(free, block_number)
        header = _get_block_by_number(self.chain, block_number).header
        state = self.chain.get_vm(at_header=header.copy(base_fee_per_gas=0)).state
        snapshot = state.snapshot()
        computation = state.apply_transaction(SpoofTransaction(unsigned, from_=transaction["from"]))
        state.revert(snapshot)
        if computation.is_error:
            error = computation.error
            if isinstance(error, Revert) and error.args and isinstance(error.args[0], bytes):
                raise TransactionFailed(error.args[0])  # the revert data, as a node sends it
            raise TransactionFailed(str(error))
        return computation.output
