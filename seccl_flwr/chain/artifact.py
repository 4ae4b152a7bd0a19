"""The committed build artifact of the candidate selection contract (CSC).

Users need no Solidity compiler: ``artifacts/CandidateSelection.json`` holds the ABI,
the creation and runtime bytecode, the compiler version and settings and the
keccak-256 of the source it was built from. ``python -m seccl_flwr.chain.build``
regenerates it; ``tests/test_contract_build.py`` checks that it matches the source.
"""

import functools
import json
from pathlib import Path
from typing import Any

from eth_utils import keccak

from .errors import ArtifactMismatchError, ArtifactMissingError

ARTIFACT_PATH = Path(__file__).resolve().parent / "artifacts" / "CandidateSelection.json"
"""Path of the committed artifact inside the package."""

CONTRACT_NAME = "CandidateSelection"
SOURCE_RELPATH = "contracts/CandidateSelection.sol"
"""Path of the Solidity source relative to the repository root."""


def repo_root() -> Path:
    """Return the repository root (meaningful in a source checkout only)."""
    return Path(__file__).resolve().parents[2]


def source_path() -> Path:
    """Return the path of ``contracts/CandidateSelection.sol`` in the checkout.

    The file exists in a source checkout, not in an installed wheel.
    """
    return repo_root() / SOURCE_RELPATH


def source_hash(path: Path | str | None = None) -> str:
    """Return the keccak-256 of a source file's bytes as ``0x``-prefixed hex.

    Parameters
    ----------
    path : Path | str | None
        The file; defaults to :func:`source_path`.
    """
    data = Path(path if path is not None else source_path()).read_bytes()
    return "0x" + keccak(data).hex()


@functools.lru_cache(maxsize=1)
def _load_cached() -> str:
    return ARTIFACT_PATH.read_text(encoding="utf-8")


def load_artifact() -> dict[str, Any]:
    """Return the committed artifact (read once, a fresh dict on every call).

    Raises
    ------
    ArtifactMissingError
        If the artifact is missing (run ``python -m seccl_flwr.chain.build``); a
        ``FileNotFoundError`` too.
    """
    try:
        text = _load_cached()
    except FileNotFoundError as exc:
        raise ArtifactMissingError(
            f"contract artifact {ARTIFACT_PATH} is missing; "
            "run `npm ci --prefix contracts && python -m seccl_flwr.chain.build`"
        ) from exc
    return json.loads(text)


def check_artifact_matches_source(path: Path | str | None = None) -> None:
    """Check that the artifact's ``sourceHash`` is the hash of the Solidity source.

    Parameters
    ----------
    path : Path | str | None
        The Solidity source; defaults to :func:`source_path`.

    Raises
    ------
    ArtifactMismatchError
        If the source changed since the artifact was built.
    FileNotFoundError
        If the source file does not exist (e.g. in an installed wheel).
    """
    src = Path(path if path is not None else source_path())
    actual = source_hash(src)
    expected = load_artifact()["sourceHash"]
    if actual != expected:
        raise ArtifactMismatchError(
            f"{ARTIFACT_PATH.name} was built from a source with keccak {expected}, "
            f"but {src} has keccak {actual}; rebuild with "
            "`python -m seccl_flwr.chain.build`"
        )
