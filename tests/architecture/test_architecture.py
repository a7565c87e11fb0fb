"""The layering rules of DESIGN.md, checked by import-linter (as napari does), plus a check that the check bites."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is not installed (it is in the dev extra)")
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: " in result.stdout and " broken" in result.stdout


def test_a_qt_import_in_the_core_breaks_the_contract(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "studio", copy / "studio", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / "studio" / "engine" / "leak.py").write_text("import PySide6.QtCore\n")
    env_path = str(copy)
    result = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
                             "from importlinter.cli import lint_imports_command; lint_imports_command()" % env_path,
                             "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "studio.engine.leak" in result.stdout
