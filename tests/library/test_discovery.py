"""Where packages are found: shipped models/, the user data folder, settings.toml folders, --models-dir."""

from __future__ import annotations

import json

import pytest

from conftest import make_tiny_package
from studio.cli import main
from studio.errors import StudioError
from studio.library import default_roots, scan
from studio.paths import shipped_models_dir, user_models_dir
from studio.settings import load_settings, settings_path


def ids(capsys) -> list[str]:
    return [e["id"] for e in json.loads(capsys.readouterr().out)]


def test_user_data_folder_and_settings_folders_are_scanned(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "shipped"))
    make_tiny_package(tmp_path / "shipped" / "a", "a")
    make_tiny_package(user_models_dir() / "b", "b")
    make_tiny_package(tmp_path / "elsewhere" / "c", "c")
    make_tiny_package(tmp_path / "cmdline" / "d", "d")
    assert main(["models", "--json"]) == 0
    assert ids(capsys) == ["a", "b"]
    settings_path().write_text(f'model_folders = ["{tmp_path / "elsewhere"}"]\n')
    assert main(["models", "--json", "--models-dir", str(tmp_path / "cmdline")]) == 0
    assert ids(capsys) == ["a", "b", "c", "d"]


def test_a_package_folder_itself_can_be_a_root(tmp_path):
    make_tiny_package(tmp_path / "solo", "solo")
    assert [e.id for e in scan([tmp_path / "solo"])] == ["solo"]


def test_the_shipped_folder_wins_over_a_user_copy_with_the_same_id(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "shipped"))
    make_tiny_package(tmp_path / "shipped" / "x", "x", seed=1)
    make_tiny_package(user_models_dir() / "x", "x", seed=2)
    entries = scan(default_roots())
    assert [e.ok for e in entries] == [True, False]
    assert "duplicate model id 'x'" in str(entries[1].error)


def test_broken_settings_name_the_file_and_field(tmp_path):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("model_folders = 3\n")
    with pytest.raises(StudioError, match=r"settings\.toml \[model_folders\]"):
        load_settings()
    path.write_text("model_folders = [")
    with pytest.raises(StudioError, match="not valid TOML"):
        load_settings()


def test_shipped_models_folder_is_the_repos(repo_root, monkeypatch):
    monkeypatch.delenv("LATENT_STUDIO_SHIPPED_MODELS", raising=False)
    assert shipped_models_dir() == repo_root / "models"
