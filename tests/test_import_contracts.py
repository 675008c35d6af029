"""The README's layout table holds: import-linter checks every "may import" row (contracts in pyproject.toml)."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE = ("protocol", "envs", "policy", "actor")


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_torch_free_parts_are_under_contract() -> None:
    """Each part that must run without torch has a contract forbidding it (directly or through other modules)."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    forbidding_torch = {
        source
        for c in contracts
        if c["type"] == "forbidden" and "torch" in c["forbidden_modules"] and not c.get("allow_indirect_imports")
        for source in c["source_modules"]
    }
    assert set(TORCH_FREE) <= forbidding_torch
