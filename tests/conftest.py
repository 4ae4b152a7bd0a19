"""Shared fixtures: ``anvil_url`` starts the npm-installed anvil node once per session."""

import os

import pytest

from seccl_flwr.chain.anvil import AnvilNode, anvil_command


def in_ci() -> bool:
    """Whether we run in CI, where missing tools fail instead of skipping."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail in CI (a missing tool must not hide tests there)."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def anvil_url():
    """Start anvil on a free loopback port; yield its JSON-RPC URL; stop it after."""
    if anvil_command() is None:
        skip_or_fail("anvil not found; run `npm ci --prefix contracts`")
    with AnvilNode() as node:
        yield node.url
