"""The architecture's rules, checked: import-linter's contracts in pyproject.toml (as napari does) and a check that
each one bites, no import cycle anywhere in studio/, no family module imported outside families/ and train/, and the
type checker (mypy) clean on studio/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import figures

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """import-linter on the checkout at `cwd` (its studio/ first on the path)."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
                           "from importlinter.cli import lint_imports_command; lint_imports_command()" % str(cwd),
                           "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 8 kept, 0 broken." in result.stdout


# One forbidden import per contract, each planted in a copy of the package: every contract must report its own.
LEAKS = {
    "studio/engine/leak_qt.py": ("import PySide6.QtCore\n", "core never imports Qt"),
    "studio/latent/leak_layer.py": ("import studio.families\n", "layers point down"),
    "studio/families/gan/leak_family.py": ("import studio.families.vae\n", "families are independent"),
    "studio/app/leak_registry.py": ("import studio.families.diffusion\n", "only families/ (and the trainers)"),
    "studio/project/leak_torch.py": ("import torch\n", "requests, params, projects and exports never import torch"),
    "studio/ui/panels/leak_torch.py": ("import torch\n", "the panels never import torch"),
    "studio/engine/scheduler.py": ("import torch\n", "the engine's scheduler and its API never import torch"),
}


def test_each_contract_bites(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "studio", copy / "studio", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for name, (code, _) in LEAKS.items():
        path = copy / name
        path.write_text(code + (path.read_text(encoding="utf-8") if path.exists() else ""), encoding="utf-8")
    result = lint_imports(copy)
    assert result.returncode != 0
    text = " ".join(result.stdout.split())  # contract names may wrap
    for _, contract in LEAKS.values():
        start = text.find(contract)
        assert start >= 0 and "BROKEN" in text[start:start + 200], f"{contract!r} did not report its leak"


def test_no_import_cycles_and_no_family_known_by_module_outside_families():
    graph = figures.graph()
    assert figures.cycles(graph) == []
    assert figures.family_imports(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert figures.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_mypy_is_clean_on_studio(tmp_path):
    exe = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("mypy is not installed (it is in the dev extra)")
    result = subprocess.run([exe, "--cache-dir", str(tmp_path / "mypy-cache")], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert result.stdout.startswith("Success")
