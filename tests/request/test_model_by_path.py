"""A request's model id is matched among the installed packages (studio.library): a path never loads its folder.
The rules: the installed package that is that folder; else the same name and weights hash; else the same hash; else
the same name (a changed model); else UninstalledModelFolder, which names the path and the hash. The renderer, handed
a request whose package it was not given, resolves by id only."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_tiny_package
from studio.engine import EXPORT, Engine
from studio.errors import ManifestError, StudioError
from studio.io.weights import sha256_file
from studio.library import (UninstalledModelFolder, find_installed, names_a_path, resolve_installed, resolve_stored,
                            scan)
from studio.limits import QUOTE_CHARS, quote
from studio.request import RenderRequest


@pytest.fixture
def installed(tmp_path) -> Path:
    root = tmp_path / "models"
    make_tiny_package(root / "tiny", "tiny", seed=0)
    make_tiny_package(root / "other", "other", seed=1)
    return root


@pytest.fixture
def evil(tmp_path) -> Path:
    return make_tiny_package(tmp_path / "Downloads" / "evil", "evil", seed=5)


def test_what_counts_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here").mkdir()
    for path in ("a/b", "a\\b", "/abs", "./x", "..", "~/models/x", "here"):
        assert names_a_path(path), path
    for model_id in ("glyphs", "tiny-plain", "not-here", "x" * 5000):
        assert not names_a_path(model_id), model_id
    assert not names_a_path("nul\x00byte")  # the file system refuses it: no folder


def test_an_id_resolves_as_before(installed):
    assert resolve_stored("tiny", roots=[installed]).id == "tiny"
    with pytest.raises(StudioError, match=r"no model with id 'gone' is installed \(installed: other, tiny\)"):
        resolve_stored("gone", roots=[installed])


def test_a_path_is_matched_among_the_installed_packages(installed, tmp_path):
    entries = scan([installed])
    tiny_sha = sha256_file(installed / "tiny" / "weights.safetensors")
    other_sha = sha256_file(installed / "other" / "weights.safetensors")
    # the installed folder itself, by any spelling of its path
    assert find_installed(str(installed / "tiny"), "", str(installed / "tiny"), entries).id == "tiny"
    assert find_installed(str(installed / "x" / ".." / "tiny"), "", str(installed / "x" / ".." / "tiny"),
                          entries).id == "tiny"
    # elsewhere: the name and the hash, then the hash alone, then the name alone
    elsewhere = str(tmp_path / "Downloads" / "tiny")
    assert find_installed(elsewhere, tiny_sha, elsewhere, entries).id == "tiny"
    assert find_installed(elsewhere, other_sha, elsewhere, entries).id == "other"
    assert find_installed(elsewhere, "ab" * 32, elsewhere, entries).id == "tiny"
    assert find_installed(elsewhere + "/", "", elsewhere + "/", entries).id == "tiny"
    assert find_installed(str(tmp_path / "Downloads" / "nameless"), "ab" * 32, "", entries) is None


def test_a_folder_that_is_not_installed_is_refused_by_path_and_hash(installed, evil, monkeypatch):
    import studio.library as library

    looked: list[Path] = []
    check = library._check
    monkeypatch.setattr(library, "_check", lambda entry: (looked.append(entry.folder.resolve()), check(entry))[1])
    sha = sha256_file(evil / "weights.safetensors")
    with pytest.raises(UninstalledModelFolder) as caught:
        resolve_stored(str(evil), sha, [installed], "photo.png")
    error = caught.value
    assert isinstance(error, ManifestError) and (error.folder, error.sha256) == (str(evil), sha)
    assert str(error) == (f"photo.png [model_id]: the file asks for the model folder {quote(str(evil))} (weights "
                          f"sha256 {sha[:12]}…), which is not installed; if you trust it, add it with --models-dir "
                          f"{quote(str(evil))} or File → Open Model Folder")
    assert evil.resolve() not in looked


def test_a_huge_or_odd_path_is_quoted_on_one_line(installed, tmp_path):
    folder = tmp_path / ("d" * 3000) / "x\ny"
    with pytest.raises(UninstalledModelFolder) as caught:
        resolve_stored(str(folder), "", [installed], "p.png")
    text = str(caught.value)
    assert "\n" not in text and len(text) < 4 * QUOTE_CHARS + 400 and "no weights hash" in text


def test_the_renderer_never_loads_a_path_it_was_not_handed(installed, evil, monkeypatch):
    import studio.engine.renderer as renderer

    loaded: list[Path] = []
    load = renderer.load_model
    monkeypatch.setattr(renderer, "load_model", lambda entry, *a, **k: (loaded.append(entry.folder), load(entry, *a,
                                                                                                          **k))[1])
    with pytest.raises(UninstalledModelFolder):
        resolve_installed(str(evil), [installed])
    with Engine(device="cpu", roots=[installed], threads=1) as engine:
        with pytest.raises(UninstalledModelFolder):
            engine.submit(RenderRequest(str(evil), params={"prompt": "Ab"}), EXPORT).wait(60)
        assert engine.submit(RenderRequest("tiny", params={"prompt": "Ab"}), EXPORT).wait(60).kind == "image"
    assert loaded == [installed / "tiny"]


def test_a_path_to_a_broken_installed_package_reports_the_package_error(installed):
    (installed / "tiny" / "model.toml").write_text("format = 1\nid = 'tiny'\n")  # no family, no output …
    with pytest.raises(ManifestError) as caught:
        resolve_stored(str(installed / "tiny"), "", [installed], "photo.png")
    assert not isinstance(caught.value, UninstalledModelFolder) and "model.toml" in str(caught.value)
