"""The code base stays ruff-clean (configured in pyproject.toml)."""

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_clean():
  result = subprocess.run([sys.executable, '-m', 'ruff', 'check', REPO], capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stdout + result.stderr
