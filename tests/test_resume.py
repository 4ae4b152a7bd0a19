"""Resuming a run from the last round the chain records, with the message store."""

import pytest
from flwr.app import ArrayRecord

from seccl_flwr.apps import digits
from seccl_flwr.audit import audit_run
from seccl_flwr.chain.anvil import AnvilNode, anvil_command
from seccl_flwr.errors import UntrustedContractError
from seccl_flwr.inprocess import InProcessGrid
from seccl_flwr.protocol.eip712 import Kind
from seccl_flwr.resume import ResumeError
from seccl_flwr.strategy import SecCL

from .conftest import skip_or_fail

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

LABEL = "resume-run"


class Crash(RuntimeError):
    """The server process dies."""


class CrashingSecCL(SecCL):
    """A server that dies at a chosen point of a chosen round."""

    def __init__(self, crash_round: int, crash_at: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.crash_round, self.crash_at = crash_round, crash_at

    def _maybe_crash(self, server_round: int, point: str) -> None:
        if server_round == self.crash_round and self.crash_at == point:
            raise Crash(f"server died at {point} of round {server_round}")

    def relay_updates(self, server_round, updates):
        self._maybe_crash(server_round, "after-anchor")  # updates anchored, no ballot
        return super().relay_updates(server_round, updates)

    def relay_candidates(self, server_round, candidates, updates):
        self._maybe_crash(server_round, "after-elect")  # vote closed, no new model
        return super().relay_candidates(server_round, candidates, updates)

    def relay_global(self, server_round, arrays):
        self._maybe_crash(server_round, "round-start")  # last round complete
        return super().relay_global(server_round, arrays)


@pytest.fixture
def anvil():
    if anvil_command() is None:
        skip_or_fail("anvil not found; run `npm ci --prefix contracts`")
    with AnvilNode() as node:
        yield node.url


def start(strategy: SecCL, url: str, num_rounds: int):
    config = {"seccl-key-seed": 21, "seccl-chain-url": url, "seed": 0, "lr": 0.1}
    grid = InProcessGrid(digits.app, 4, run_config=config)
    return strategy.start(
        grid, ArrayRecord(digits.initial_model().state_dict()), num_rounds=num_rounds
    )


@pytest.mark.parametrize("crash_at", ["round-start", "after-anchor", "after-elect"])
def test_a_crashed_run_resumes_where_the_chain_says_and_audits_clean(anvil, tmp_path, crash_at):
    store = tmp_path / "messages"
    first = CrashingSecCL(2, crash_at, chain=anvil, store=store, run_label=LABEL)
    with pytest.raises(Crash):
        start(first, anvil, num_rounds=3)
    csc = first.csc
    assert csc.last_completed_round() == 1
    anchored_before = csc.update_authors(2)
    assert bool(anchored_before) is (crash_at != "round-start")
    assert csc.is_elected(2) is (crash_at == "after-elect")

    second = SecCL(chain=anvil, contract=csc.address, store=store, run_label=LABEL)
    result = start(second, anvil, num_rounds=3)
    assert [r.round for r in result.rounds] == [2, 3]
    assert csc.last_completed_round() == 3
    if anchored_before:  # round 2 went on from the anchored updates, none twice
        assert csc.update_authors(2) == anchored_before
        assert result.rounds[0].authors == anchored_before
        assert "anchor" not in result.rounds[0].transactions
    for record in result.rounds:
        assert record.candidates == csc.candidates_of(record.round)
    report = audit_run(csc, second.store)
    assert report.ok, [str(f) for f in report.findings]


def test_resuming_needs_the_store_and_the_owner(anvil, tmp_path):
    first = CrashingSecCL(2, "round-start", chain=anvil, store=tmp_path / "m", run_label=LABEL)
    with pytest.raises(Crash):
        start(first, anvil, num_rounds=2)
    address = first.csc.address
    with pytest.raises(ResumeError, match="needs the message store"):
        start(SecCL(chain=anvil, contract=address, run_label=LABEL), anvil, num_rounds=2)
    with pytest.raises(ResumeError, match="not in the store"):
        start(
            SecCL(chain=anvil, contract=address, store=tmp_path / "empty", run_label=LABEL),
            anvil,
            num_rounds=2,
        )
    with pytest.raises(UntrustedContractError, match="owned by"):
        start(SecCL(chain=anvil, contract=address, run_label="someone-else"), anvil, 2)
    # nothing was anchored by the failed attempts
    assert first.csc.last_completed_round() == 1
    assert first.csc.anchors_of(2, Kind.UPDATE) == {}
