"""The committed contract artifact is what the Solidity source compiles to."""

import json

import pytest

from seccl_flwr.chain import artifact as art
from seccl_flwr.chain import build
from tests.conftest import skip_or_fail


@pytest.fixture(scope="module")
def compiled():
    try:
        build.wrapper_path()
    except build.CompilerNotFoundError as exc:
        skip_or_fail(f"Solidity compiler unavailable: {exc}")
    return build.compile_contract()


def test_recompiled_artifact_equals_committed(compiled):
    committed = art.load_artifact()
    assert compiled["abi"] == committed["abi"]
    assert compiled["deployedBytecode"] == committed["deployedBytecode"]
    assert compiled["bytecode"] == committed["bytecode"]
    assert compiled["compiler"] == committed["compiler"]
    assert compiled["settings"] == committed["settings"]
    assert compiled["sourceHash"] == committed["sourceHash"]
    # byte-for-byte what `python -m seccl_flwr.chain.build` would write
    assert build.render(compiled) == art.ARTIFACT_PATH.read_text()


def test_artifact_is_complete_and_deterministic():
    a = art.load_artifact()
    assert a["contractName"] == "CandidateSelection"
    assert a["sourcePath"] == "contracts/CandidateSelection.sol"
    assert a["compiler"].startswith("solc-js 0.8.28+commit.")
    assert a["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    assert a["settings"]["metadata"] == {"bytecodeHash": "none", "appendCBOR": False}
    for key in ("bytecode", "deployedBytecode"):
        assert a[key].startswith("0x") and len(a[key]) > 2
        bytes.fromhex(a[key][2:])
    # no CBOR metadata: the runtime code ends in the contract's own code, not a
    # length-prefixed metadata blob (0xa2/0xa1 ... 0x00 0xNN)
    assert not a["deployedBytecode"].endswith("0033")
    names = {e.get("name") for e in a["abi"]}
    assert {"anchor", "submitBallots", "elect", "hashBallot", "InvalidSignature"} <= names
    # the cache hands out fresh dicts: a caller mutating one cannot corrupt others
    a["abi"].clear()
    assert art.load_artifact()["abi"]


def test_source_hash_matches_and_mismatch_is_detected(tmp_path):
    art.check_artifact_matches_source()
    assert art.source_hash() == art.load_artifact()["sourceHash"]
    changed = tmp_path / "CandidateSelection.sol"
    changed.write_bytes(art.source_path().read_bytes() + b"\n// edited\n")
    with pytest.raises(art.ArtifactMismatchError, match="rebuild"):
        art.check_artifact_matches_source(changed)


def test_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(build.SOLC_ENV, str(tmp_path / "no-such-solc"))
    with pytest.raises(build.CompilerNotFoundError, match="SECCL_SOLC"):
        build.compile_contract()
    assert build.main([]) == 2


def test_missing_tools_fail_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        skip_or_fail("compiler missing")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("compiler missing")


def test_build_check_mode(compiled, capsys):
    assert build.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    json.loads(art.ARTIFACT_PATH.read_text())
