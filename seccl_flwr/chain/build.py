"""Compile ``contracts/CandidateSelection.sol`` and write the committed artifact.

The compiler is solc-js (npm package ``solc``, pinned in ``contracts/package.json``)
driven by py-solc-x through ``contracts/solc-wrapper.js``, a small executable that
speaks the ``solc --version`` / ``solc --standard-json`` protocol. Install it with::

    npm ci --prefix contracts

then rebuild (or check) the artifact with::

    python -m seccl_flwr.chain.build            # writes the artifact
    python -m seccl_flwr.chain.build --check    # exit 1 if it is out of date

Set ``SECCL_SOLC`` to use another solc-compatible executable (e.g. a native
``solc`` 0.8.28). The metadata hash is not appended to the bytecode, so the output is
deterministic and the runtime code is the same for every deployment.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from seccl_flwr.chain.artifact import (
    ARTIFACT_PATH,
    CONTRACT_NAME,
    SOURCE_RELPATH,
    repo_root,
    source_hash,
    source_path,
)
from seccl_flwr.chain.errors import CompilerNotFoundError

SOLC_ENV = "SECCL_SOLC"
"""Environment variable naming a solc-compatible executable."""

INSTALL_HINT = "npm ci --prefix contracts"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "none", "appendCBOR": False},
}
"""Compiler settings of the committed artifact."""


def wrapper_path() -> Path:
    """Return the compiler executable to use, checking that it can run.

    Raises
    ------
    CompilerNotFoundError
        If ``SECCL_SOLC`` names a missing file, or the default wrapper lacks
        ``node`` or the ``solc`` npm package.
    """
    env = os.environ.get(SOLC_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise CompilerNotFoundError(f"{SOLC_ENV}={env} does not name a file")
        return path
    path = repo_root() / "contracts" / "solc-wrapper.js"
    if not path.is_file():
        raise CompilerNotFoundError(
            f"{path} not found; the compiler wrapper exists in a source checkout only"
        )
    if shutil.which("node") is None:
        raise CompilerNotFoundError(
            f"`node` is not on PATH; install Node.js, then run `{INSTALL_HINT}`"
        )
    if not (path.parent / "node_modules" / "solc" / "package.json").is_file():
        raise CompilerNotFoundError(
            f"solc-js is not installed in {path.parent / 'node_modules'}; run `{INSTALL_HINT}`"
        )
    return path


def compile_contract(solc: Path | str | None = None) -> dict[str, Any]:
    """Compile the contract and return the artifact dict (not written to disk).

    Parameters
    ----------
    solc : Path | str | None
        The solc-compatible executable; defaults to :func:`wrapper_path`.

    Returns
    -------
    dict[str, Any]
        ``contractName``, ``abi``, ``bytecode``, ``deployedBytecode`` (0x hex),
        ``compiler``, ``settings``, ``sourceHash`` and ``sourcePath``.

    Raises
    ------
    CompilerNotFoundError
        If no compiler is available.
    solcx.exceptions.SolcError
        If the source does not compile.
    """
    import solcx
    from solcx.wrapper import get_solc_version

    binary = Path(solc) if solc is not None else wrapper_path()
    src = source_path()
    source = src.read_text(encoding="utf-8")
    input_json = {
        "language": "Solidity",
        "sources": {SOURCE_RELPATH: {"content": source}},
        "settings": {
            **SETTINGS,
            "outputSelection": {
                SOURCE_RELPATH: {
                    CONTRACT_NAME: [
                        "abi",
                        "evm.bytecode.object",
                        "evm.deployedBytecode.object",
                    ]
                }
            },
        },
    }
    output = solcx.compile_standard(input_json, solc_binary=binary)
    for message in output.get("errors", []):
        print(message["formattedMessage"], file=sys.stderr)
    contract = output["contracts"][SOURCE_RELPATH][CONTRACT_NAME]
    version = get_solc_version(binary, with_commit_hash=True)
    return {
        "contractName": CONTRACT_NAME,
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
        "compiler": f"solc-js {version}",
        "settings": SETTINGS,
        "sourceHash": source_hash(src),
        "sourcePath": SOURCE_RELPATH,
    }


def render(artifact: dict[str, Any]) -> str:
    """Return the artifact as the exact text committed to the repository."""
    return json.dumps(artifact, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rebuild the committed artifact (``python -m seccl_flwr.chain.build``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed artifact is out of date",
    )
    args = parser.parse_args(argv)
    try:
        text = render(compile_contract())
    except CompilerNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = ARTIFACT_PATH.read_text() if ARTIFACT_PATH.is_file() else ""
        if current != text:
            print(f"{ARTIFACT_PATH} is out of date; rebuild it", file=sys.stderr)
            return 1
        print(f"{ARTIFACT_PATH} is up to date")
        return 0
    ARTIFACT_PATH.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT_PATH.write_text(text)
    print(f"wrote {ARTIFACT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
