"""A project's `models[].folder` (and a model id that is a path) never chooses a folder to load: each is matched
against the installed packages; `animate` refuses a folder that is not installed, and renders once it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_tiny_package
from studio.cli import main
from studio.errors import StudioError
from studio.io.weights import sha256_file
from studio.library import UninstalledModelFolder, document_models, project_models, scan
from studio.limits import quote
from studio.project import Document, HistoryEntry, ModelRef, SavedLatent, load_document, save_document
from studio.project.timeline import Keyframe, Timeline
from studio.request import RenderRequest


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


@pytest.fixture
def evil(tmp_path) -> Path:
    return make_tiny_package(tmp_path / "Downloads" / "evil", "evil", seed=5)


def project(tmp_path: Path, model_id: str, folder: str = "", sha256: str = "") -> Path:
    keys = tuple(Keyframe(RenderRequest(model_id, sha256, params={"prompt": "Ab"},
                                        latent=tuple(float((i + j) % 3 - 1) for j in range(8))), duration=0.25)
                 for i in range(2))
    doc = Document(request=keys[0].request, timeline=Timeline(keys, fps=8),
                   models=[ModelRef(Path(model_id).name, sha256, "Evil", folder)],
                   latents=[SavedLatent("kept", model_id, sha256, (0.0,) * 8)],
                   history=[HistoryEntry(keys[1].request, 0.1)])
    return save_document(doc, tmp_path / "walk.lstudio")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the document ---------------------------------------------------------------------------------------------------


def test_the_document_lists_every_model_it_names(tmp_path, evil):
    doc = load_document(project(tmp_path, str(evil), str(evil), "cd" * 32))
    assert doc.model_claims() == [
        ("evil", "cd" * 32, str(evil), "models[0].folder"),
        (str(evil), "cd" * 32, "", "request.model_id"),
        (str(evil), "cd" * 32, "", "timeline.keyframes[0].request.model_id"),
        (str(evil), "cd" * 32, "", "timeline.keyframes[1].request.model_id"),
    ]


def test_model_ids_are_renamed_everywhere_and_survive_saving(tmp_path, evil):
    doc = load_document(project(tmp_path, str(evil), str(evil)))
    renamed = doc.with_model_ids({str(evil): "evil"})
    assert renamed.request.model_id == "evil" and renamed.history[0].request.model_id == "evil"
    assert [k.request.model_id for k in renamed.timeline.keyframes] == ["evil", "evil"]
    assert renamed.latents[0].model_id == "evil" and renamed.models[0].id == "evil"
    assert doc.request.model_id == str(evil)  # the original is left as it was
    again = load_document(save_document(renamed, tmp_path / "renamed.lstudio"))
    assert again.model_claims()[1:] == [("evil", "", "", "request.model_id"),
                                        ("evil", "", "", "timeline.keyframes[0].request.model_id"),
                                        ("evil", "", "", "timeline.keyframes[1].request.model_id")]


# --- matching against the installed packages --------------------------------------------------------------------------


def test_a_folder_that_is_not_installed_is_refused_with_its_field(tmp_path, evil):
    doc = load_document(project(tmp_path, "evil", str(evil), "cd" * 32))
    found, refused = document_models(doc, scan([tmp_path / "nothing"]), tmp_path / "walk.lstudio")
    assert found == {} and len(refused) == 1
    error = refused[0]
    assert isinstance(error, UninstalledModelFolder) and (error.folder, error.sha256) == (str(evil), "cd" * 32)
    assert error.field == "models[0].folder" and quote(str(evil)) in str(error) and "sha256 cdcdcdcdcdcd" in str(error)


def test_an_installed_folder_or_a_missing_one_is_no_refusal(tmp_path, evil):
    doc = load_document(project(tmp_path, str(evil), str(evil)))
    found, refused = document_models(doc, scan([evil]))
    assert refused == [] and found[str(evil)].id == "evil"
    gone = load_document(project(tmp_path, "evil", str(tmp_path / "gone")))
    assert document_models(gone, scan([tmp_path / "nothing"])) == ({}, [])  # nothing could load from it


def test_project_models_renames_paths_and_lists_the_keyframes_packages(tmp_path, evil):
    doc = load_document(project(tmp_path, str(evil), str(evil)))
    with pytest.raises(UninstalledModelFolder):
        project_models(doc, [tmp_path / "nothing"])
    resolved, entries = project_models(doc, [evil.parent])
    assert [e.id for e in entries] == ["evil"] and resolved.timeline.keyframes[0].request.model_id == "evil"
    plain = load_document(project(tmp_path, "missing"))
    with pytest.raises(StudioError, match="no model with id 'missing' is installed"):
        project_models(plain, [evil.parent])


# --- animate --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["folder", "keyframes"])
def test_animate_refuses_a_folder_that_is_not_installed(capsys, tmp_path, evil, where, monkeypatch):
    import studio.library as library

    loaded: list[Path] = []
    real_check = library._check
    monkeypatch.setattr(library, "_check", lambda entry: (loaded.append(entry.folder.resolve()), real_check(entry)))
    sha = sha256_file(evil / "weights.safetensors")
    path = project(tmp_path, "evil", str(evil), sha) if where == "folder" else project(tmp_path, str(evil), "", sha)
    out = tmp_path / "frames"
    code, stdout, err = run(capsys, "animate", path, "--out", out)
    assert code == 1 and stdout == ""
    lines = err.strip().splitlines()
    field = "models[0].folder" if where == "folder" else "request.model_id"
    assert len(lines) == 1 and lines[0].startswith(f"latent-studio: error: {path} [")
    assert field in lines[0] and quote(str(evil)) in lines[0] and f"sha256 {sha[:12]}" in lines[0]
    assert "--models-dir" in lines[0] and not out.exists() and evil.resolve() not in loaded


@pytest.mark.parametrize("where", ["folder", "keyframes"])
def test_animate_renders_once_the_folder_is_installed(capsys, tmp_path, evil, where):
    path = project(tmp_path, "evil", str(evil)) if where == "folder" else project(tmp_path, str(evil))
    out = tmp_path / "frames"
    code, stdout, err = run(capsys, "animate", path, "--models-dir", evil, "--out", out)
    assert code == 0, err
    assert "2 frames at 8 fps" in stdout and len(list(out.glob("*.png"))) == 2
