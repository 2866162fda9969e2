"""Static checks as tests, so that the README's ``python -m pytest`` runs them: ruff and the import contracts.

Both read their configuration from pyproject.toml ([tool.ruff], [tool.importlinter]); a failure shows the
tool's own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent  # where the testing extra installed lint-imports


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    result = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "scripts"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept():
    result = _run([str(SCRIPTS / "lint-imports"), "--no-cache"])
    assert result.returncode == 0, result.stdout + result.stderr
