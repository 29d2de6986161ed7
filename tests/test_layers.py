"""The package's layers (pyproject.toml, [tool.importlinter]): each layer imports only those below it."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_the_import_layers_hold():
    beside = Path(sys.executable).parent / "lint-imports"  # the test environment's own, PATH or not
    linter = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if linter is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([linter], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stdout[-3000:]
