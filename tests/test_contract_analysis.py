"""The contract's analysis setup: every suppressed slither/solhint finding has a reason.

The analysis itself (slither, solhint) runs in ``scripts/analyze-contract.sh``, called by
``scripts/test.sh`` before pytest; these checks need no tool.
"""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTRACT = REPO / "contracts" / "CandidateSelection.sol"
SOLHINT_CONFIG = REPO / "contracts" / ".solhint.json"

DIRECTIVE = re.compile(
    r"^\s*//\s*(slither-disable-(next-line|start)|solhint-disable(-next-line|-line)?)\s"
)
"""A comment that turns a check off (``-end``/``solhint-enable`` only close a range)."""


def test_every_suppression_is_explained():
    lines = CONTRACT.read_text(encoding="utf-8").splitlines()
    directives = [i for i, line in enumerate(lines) if DIRECTIVE.match(line)]
    assert directives, "expected the documented suppressions (immutable-states, assembly)"
    for i in directives:
        above = lines[i - 1].strip() if i > 0 else ""
        assert above.startswith("//") and not DIRECTIVE.match(above) and len(above) > 20, (
            f"{CONTRACT.name}:{i + 1}: `{lines[i].strip()}` needs a `//` comment giving the "
            "reason on the line above"
        )


def test_ranges_are_closed():
    text = CONTRACT.read_text(encoding="utf-8")
    for tool, start, end in [
        ("slither", r"slither-disable-start", r"slither-disable-end"),
        ("solhint", r"solhint-disable\s", r"solhint-enable\s"),
    ]:
        opened = re.findall(rf"//\s*{start}\s*([\w,-]+)", text)
        closed = re.findall(rf"//\s*{end}\s*([\w,-]+)", text)
        assert sorted(opened) == sorted(closed), f"unbalanced {tool} disable/enable ranges"


def test_solhint_config_extends_recommended():
    config = json.loads(SOLHINT_CONFIG.read_text(encoding="utf-8"))
    assert config["extends"] == "solhint:recommended"
