"""Where direction sets live and the names a model shows (studio.app.direction_sets): saving into the user folder,
the model's default beside the package (or in the user folder when the package is read-only), the last-used set
loaded when a model is opened, shared files checked against the model, and renames as undo steps."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from conftest import make_tiny_package
from studio.app.direction_sets import (DEFAULT_KEY, NONE_KEY, PACKAGE_FILE, USER_DEFAULT_FILE, DirectionNames,
                                       model_vectors, stored_sets, user_sets_dir)
from studio.app.undo import UndoStack
from studio.errors import DirectionsError
from studio.latent.direction_sets import DirectionSet, read_set
from studio.library import scan


@pytest.fixture
def entries(tmp_path):
    root = tmp_path / "models"
    make_tiny_package(root / "tiny", "tiny", seed=0)
    make_tiny_package(root / "tiny-plain", "tiny-plain", seed=1, conditional=False)
    return {e.id: e for e in scan([root])}


def _names(undo=None):
    said = []
    return DirectionNames(undo, lambda *m: said.append(m)), said


def test_model_vectors_are_read_without_loading_the_model(entries):
    vectors = model_vectors(entries["tiny"])
    assert vectors is not None and vectors.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_save_then_a_new_session_loads_the_last_used_set(entries):
    names, said = _names()
    names.use_model(entries["tiny"])
    names.rename(1, "Round")
    names.rename(3, "Tall")
    assert names.modified and names.label("d1") == "Round" and names.param_for("tall") == "d3"
    path = names.save("Shapes")
    assert path == user_sets_dir("tiny") / "Shapes.lsdirs" and not names.modified
    stored = read_set(path)
    assert stored.model_id == "tiny" and stored.sha256 == entries["tiny"].sha256 and stored.dimension == 8
    assert all(e.vector is not None for e in stored.entries)  # what each name meant, to check it later

    again, said_again = _names()
    again.use_model(entries["tiny"])
    assert again.names()[1].name == "Round" and again.current_key == "Shapes.lsdirs"
    assert not said and not said_again


def test_loading_follows_model_changes(entries):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    names.save("A")
    names.use_model(entries["tiny-plain"])
    assert names.names() == {} and names.current_key == NONE_KEY
    names.rename(0, "Plain one")
    names.use_model(entries["tiny"])
    assert names.name(0) == "Bold"
    names.use_model(entries["tiny-plain"])
    assert names.name(0) == "Plain one"  # unsaved names of each model are kept for the session
    names.use_model(None)
    assert names.names() == {}


def test_a_rename_is_one_undo_step(entries):
    undo = UndoStack()
    names, _ = _names(undo)
    names.use_model(entries["tiny"])
    names.rename(2, "Slant")
    names.rename(2, "Italic")
    assert undo.undo_text == "Rename d2 'Slant' to 'Italic'"
    undo.undo()
    assert names.name(2) == "Slant"
    undo.undo()
    assert names.name(2) == ""
    undo.redo()
    assert names.name(2) == "Slant"
    with pytest.raises(DirectionsError, match="already called"):
        names.rename(0, "slant")
    with pytest.raises(DirectionsError, match="no direction d9"):
        names.rename(9, "Nine")


def test_a_set_whose_vectors_no_longer_match_warns_and_hides_those_names(entries):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    names.rename(1, "Round")
    path = names.save("Mine")
    doc = json.loads(path.read_text("utf-8"))
    doc["directions"][1]["vector"] = list(np.eye(8)[7] + 0.1)  # Round now means some other axis
    path.write_text(json.dumps(doc), "utf-8")

    fresh, said = _names()
    fresh.use_model(entries["tiny"])
    assert fresh.name(0) == "Bold" and fresh.name(1) == ""
    warnings = [m for m in said if m[0] == "warning"]
    assert len(warnings) == 1 and "no longer fits tiny" in warnings[0][1]
    assert "'Round' (d1) no longer matches" in warnings[0][2] and str(path) in warnings[0][2]
    assert fresh.hidden() and "Round" in fresh.hidden()[0]


def test_share_and_import_checks_the_model(entries, tmp_path):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    shared = names.export(tmp_path / "share.lsdirs")
    other, _ = _names()
    other.use_model(entries["tiny-plain"])
    with pytest.raises(DirectionsError, match="made for model 'tiny', not 'tiny-plain'") as info:
        other.import_file(shared)
    assert info.value.path == str(shared) and info.value.field == "model.id"
    same, _ = _names()
    same.use_model(entries["tiny"])
    stored = same.import_file(shared)
    assert stored.parent == user_sets_dir("tiny") and same.name(0) == "Bold" and not same.modified


def test_model_default_goes_beside_the_package_when_it_can(entries):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    path, note = names.save_default()
    assert path == entries["tiny"].folder / PACKAGE_FILE and "beside the package" in note
    assert [s.key for s in stored_sets(entries["tiny"])] == [DEFAULT_KEY]
    fresh, _ = _names()
    fresh.use_model(entries["tiny"])
    assert fresh.name(0) == "Bold" and fresh.current_key == DEFAULT_KEY


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_model_default_goes_to_the_user_folder_when_the_package_is_read_only(entries):
    folder = entries["tiny"].folder
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        names, _ = _names()
        names.use_model(entries["tiny"])
        names.rename(0, "Bold")
        path, note = names.save_default()
    finally:
        folder.chmod(stat.S_IRWXU)
    assert path == user_sets_dir("tiny") / USER_DEFAULT_FILE and "cannot be written" in note
    assert not (folder / PACKAGE_FILE).exists()


def test_read_only_package_fallback_is_taken_without_root(entries, monkeypatch):
    """The same fallback, forced (the suite may run as root, which writes anywhere)."""
    import studio.app.direction_sets as module

    monkeypatch.setattr(module, "folder_writable", lambda folder: False)
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    path, note = names.save_default()
    assert path == user_sets_dir("tiny") / USER_DEFAULT_FILE and str(entries["tiny"].folder) in note
    fresh, _ = _names()
    fresh.use_model(entries["tiny"])
    assert fresh.name(0) == "Bold" and fresh.current_key == DEFAULT_KEY


def test_choosing_none_and_a_damaged_set(entries):
    names, said = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    path = names.save("Mine")
    assert names.choose(NONE_KEY) and names.names() == {}
    path.write_text('{"format": "latent-studio-directions"', "utf-8")
    assert not names.choose("Mine.lsdirs")
    assert said[-1][0] == "error" and "Cannot load direction set 'Mine'" in said[-1][1] and str(path) in said[-1][2]
    fresh, said_fresh = _names()
    fresh.use_model(entries["tiny"])  # last used: none
    assert fresh.names() == {} and not said_fresh


def test_set_names_are_safe_file_names(entries):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    assert names.save("../../etc/x").parent == user_sets_dir("tiny")
    assert names.save("default").name == "default-set.lsdirs"  # never the model default's file
    assert isinstance(read_set(names.save("Ünïcode set")), DirectionSet)


def test_unsaved_names_come_back_in_the_next_session_until_saved(entries):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(0, "Bold")
    names.save("Mine")
    names.rename(1, "Round")  # not saved
    fresh, said = _names()
    fresh.use_model(entries["tiny"])
    assert fresh.name(0) == "Bold" and fresh.name(1) == "Round" and fresh.modified
    assert fresh.current_key == "Mine.lsdirs" and not said
    fresh.save("Mine")
    third, _ = _names()
    third.use_model(entries["tiny"])
    assert third.name(1) == "Round" and not third.modified
    third.rename(1, "")
    third.choose("Mine.lsdirs")  # back to the saved set: nothing unsaved is left over
    fourth, _ = _names()
    fourth.use_model(entries["tiny"])
    assert fourth.name(1) == "Round" and not fourth.modified


def test_unsaved_names_without_a_set_come_back_too(entries):
    names, _ = _names()
    names.use_model(entries["tiny"])
    names.rename(2, "Slant")
    fresh, _ = _names()
    fresh.use_model(entries["tiny"])
    assert fresh.name(2) == "Slant" and fresh.modified and fresh.current_key == NONE_KEY
