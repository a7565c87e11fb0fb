"""The installed models of the app core (studio.app.models) and the one store of added model folders, settings.toml,
which the CLI reads too; no Qt."""

from __future__ import annotations

import json

import pytest

from studio.app.listeners import Listeners
from studio.app.models import ModelLibrary
from studio.settings import load_settings, remember_model_folders, settings_path

from conftest import make_tiny_package


@pytest.fixture
def heard():
    return []


@pytest.fixture
def library(models_dir, heard) -> ModelLibrary:
    message = Listeners()
    message.connect(lambda *args: heard.append(args))
    lib = ModelLibrary([models_dir], message)
    lib.refresh()
    return lib


def test_the_roots_are_scanned_and_entries_found_by_id(library):
    assert sorted(e.id for e in library.entries) == ["tiny", "tiny-plain"]
    assert library.entry_for("tiny").ok and library.entry_for("nope") is None
    assert [e.id for e in library.usable] == [e.id for e in library.entries]


def test_a_folder_added_is_scanned_remembered_in_settings_toml_and_seen_by_the_cli(library, tmp_path, heard, capsys):
    extra = tmp_path / "more"
    make_tiny_package(extra / "extra-model", "extra-model", seed=3)
    changes = []
    library.changed.connect(lambda: changes.append(len(library.entries)))
    added = library.add_model_folder(extra)
    assert [e.id for e in added] == ["extra-model"] and changes == [3]
    assert heard[-1][0] == "info" and "extra-model" in heard[-1][1]
    assert library.opened_folder(library.entry_for("extra-model")) == str(extra / "extra-model")
    assert library.opened_folder(library.entry_for("tiny")) == ""
    assert load_settings().model_folders == [extra.absolute()]
    library.add_model_folder(extra)  # again: listed once
    assert load_settings().model_folders == [extra.absolute()]
    from studio.cli import main

    assert main(["models", "--json"]) == 0  # the CLI finds what the window opened
    assert "extra-model" in {d["id"] for d in json.loads(capsys.readouterr().out)}
    fresh = ModelLibrary()  # the next start of the app (default roots): the folder is there
    fresh.refresh()
    assert fresh.entry_for("extra-model") is not None


def test_a_single_package_folder_can_be_added(library, tmp_path):
    package = make_tiny_package(tmp_path / "solo", "solo", seed=4)
    assert [e.id for e in library.add_model_folder(package)] == ["solo"]
    assert load_settings().model_folders == [package.absolute()]


def test_a_folder_without_models_says_so_and_is_not_kept(library, tmp_path, heard):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert library.add_model_folder(empty) == [] and library.add_model_folder(tmp_path / "gone") == []
    assert heard[-1][0] == "error" and "No model in" in heard[-1][1] and "model.toml" in heard[-1][2]
    assert library.extra_folders == [] and not settings_path().exists()


def test_a_broken_package_is_named(library, tmp_path, heard):
    broken = tmp_path / "broken-models" / "bad"
    broken.mkdir(parents=True)
    (broken / "model.toml").write_text("format = 1\nid = [unclosed\n", encoding="utf-8")
    added = library.add_model_folder(broken.parent)
    assert len(added) == 1 and not added[0].ok
    assert heard[-1][0] == "error" and "cannot be used" in heard[-1][1] and "model.toml" in heard[-1][2]
    assert not settings_path().exists()  # nothing usable there: not remembered


def test_a_settings_file_that_cannot_be_read_keeps_the_folder_for_this_session(library, tmp_path, heard):
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("model_folders = [unclosed", encoding="utf-8")
    extra = tmp_path / "more"
    make_tiny_package(extra / "x", "x", seed=5)
    assert [e.id for e in library.add_model_folder(extra)] == ["x"]
    assert heard[-1][0] == "warning" and "next start" in heard[-1][1] and "settings.toml" in heard[-1][2]
    assert settings_path().read_text(encoding="utf-8") == "model_folders = [unclosed"  # left for the user


def test_remembering_keeps_the_other_settings(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('device = "cpu"\nmodel_folders = ["/a"]\n', encoding="utf-8")
    assert remember_model_folders([tmp_path / "b", "/a"], path) == [tmp_path.joinpath("/a"), tmp_path / "b"]
    settings = load_settings(path)
    assert settings.device == "cpu" and settings.model_folders == [tmp_path.joinpath("/a"), tmp_path / "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["settings.toml"]  # written atomically: no temporary left


def test_project_folders_are_scanned_but_not_remembered(library, tmp_path):
    extra = tmp_path / "project-models"
    make_tiny_package(extra / "p", "p", seed=6)
    library.add_folders([extra, tmp_path / "missing"])
    library.refresh()
    assert library.entry_for("p") is not None and library.extra_folders == [extra]
    assert not settings_path().exists()


def test_remember_false_keeps_added_folders_out_of_the_settings(models_dir, tmp_path):
    library = ModelLibrary([models_dir], remember=False)
    make_tiny_package(tmp_path / "m" / "q", "q", seed=7)
    assert library.add_model_folder(tmp_path / "m")
    assert not settings_path().exists()
