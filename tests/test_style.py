"""The tree stays uniform: ruff's linter and formatter (configured in pyproject.toml) find nothing to change."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff():
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.fail("ruff is not installed: it is part of the test extra (pip install -e '.[test]')")
    return exe


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(args):
    out = subprocess.run([_ruff(), *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, (
        f"ruff {' '.join(args)} found problems (run `ruff {args[0]} .` to fix):\n{out.stdout}{out.stderr}"
    )
