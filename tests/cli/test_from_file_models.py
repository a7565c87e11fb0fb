"""`render --from FILE`: a picture or a sound names its model by id and weights hash among the installed packages. A
model id that is a folder path is never loaded on its own: the command refuses in one line that names the folder
and the hash and says how to add it; with the folder installed (--models-dir) it renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_audio_package, make_tiny_package
from studio.cli import main
from studio.export import read_any_request, save_audio, save_image
from studio.io.weights import sha256_file
from studio.limits import quote
from studio.request import RenderRequest


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def downloads(tmp_path) -> Path:
    """A valid picture package and a valid sound package outside every model root (a Downloads folder)."""
    make_tiny_package(tmp_path / "Downloads" / "evil", "evil", seed=5)
    make_tiny_audio_package(tmp_path / "Downloads" / "evil-audio", "evil-audio", seed=6)
    return tmp_path / "Downloads"


@pytest.fixture
def touched(monkeypatch) -> list[Path]:
    """Every package folder the command looked into (discovery's checks), hashed weights in or loaded: set up after
    the packages are made, so only the command's own reads are seen."""
    import studio.engine.renderer as renderer
    import studio.io.weights as weights
    import studio.library as library

    seen: list[Path] = []
    check, load, sha = library._check, library.load_model, weights.sha256_file

    def spy_check(entry):
        seen.append(entry.folder.resolve())
        return check(entry)

    def spy_load(entry, *args, **kwargs):
        seen.append(entry.folder.resolve())
        return load(entry, *args, **kwargs)

    def spy_sha(path):
        seen.append(Path(path).resolve().parent)
        return sha(path)

    monkeypatch.setattr(library, "_check", spy_check)
    monkeypatch.setattr(renderer, "load_model", spy_load)
    monkeypatch.setattr(weights, "sha256_file", spy_sha)
    return seen


def picture_asking_for(path: Path, folder: Path, sha256: str = "") -> Path:
    request = RenderRequest(model_id=str(folder), model_hash=sha256, seed=3, params={"prompt": "Ab"})
    return save_image(path, np.zeros((16, 32), np.uint8), request)


def sound_asking_for(path: Path, folder: Path, sha256: str = "") -> Path:
    request = RenderRequest(model_id=str(folder), model_hash=sha256, seed=4, params={"label": "kick"})
    return save_audio(path, np.zeros(800, np.float32), 8000, request)


def refusal_checks(err: str, folder: Path, sha256: str, source: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"latent-studio: error: {source} [model_id]: ")
    assert f"model folder {quote(str(folder))}" in line and f"sha256 {sha256[:12]}" in line
    assert "not installed" in line and f"--models-dir {quote(str(folder))}" in line and "Open Model Folder" in line


def test_a_picture_naming_a_folder_is_refused_and_nothing_of_it_is_read(capsys, downloads, tmp_path, touched):
    evil = downloads / "evil"
    sha = sha256_file(evil / "weights.safetensors")
    touched.clear()
    picture = picture_asking_for(tmp_path / "photo.png", evil, sha)
    out = tmp_path / "again.png"
    code, stdout, err = run(capsys, "render", "--from", picture, "--out", out)
    assert code == 1 and stdout == ""
    refusal_checks(err, evil, sha, picture)
    assert not out.exists()
    assert evil.resolve() not in touched and not any(evil.resolve() in p.parents for p in touched)


def test_a_sound_naming_a_folder_is_refused(capsys, downloads, tmp_path, touched):
    evil = downloads / "evil-audio"
    sha = sha256_file(evil / "weights.safetensors")
    touched.clear()
    sound = sound_asking_for(tmp_path / "hit.wav", evil, sha)
    code, _, err = run(capsys, "render", "--from", sound, "--out", tmp_path / "again.wav")
    assert code == 1
    refusal_checks(err, evil, sha, sound)
    assert evil.resolve() not in touched and not (tmp_path / "again.wav").exists()


@pytest.mark.parametrize("kind", ["picture", "sound"])
def test_with_the_folder_installed_the_file_renders(capsys, downloads, tmp_path, kind):
    folder = downloads / ("evil" if kind == "picture" else "evil-audio")
    sha = sha256_file(folder / "weights.safetensors")
    source = (picture_asking_for(tmp_path / "photo.png", folder, sha) if kind == "picture"
              else sound_asking_for(tmp_path / "hit.wav", folder, sha))
    out = tmp_path / ("again.png" if kind == "picture" else "again.wav")
    code, stdout, err = run(capsys, "render", "--from", source, "--models-dir", folder, "--out", out)
    assert code == 0, err
    made = read_any_request(out)
    # the request names the installed package by its id now, with the weights it rendered with
    assert made.model_id == folder.name and made.model_hash == sha and made.seed == (3 if kind == "picture" else 4)


def test_an_installed_package_of_the_same_name_and_weights_is_used_instead(capsys, tmp_path, touched):
    installed = make_tiny_package(tmp_path / "models" / "tiny", "tiny", seed=0)
    sha = sha256_file(installed / "weights.safetensors")
    elsewhere = tmp_path / "Downloads" / "tiny"  # never made: only the name and the hash are used
    picture = picture_asking_for(tmp_path / "photo.png", elsewhere, sha)
    out = tmp_path / "again.png"
    code, _, err = run(capsys, "render", "--from", picture, "--models-dir", tmp_path / "models", "--out", out)
    assert code == 0, err
    assert read_any_request(out).model_id == "tiny"
    assert elsewhere.resolve() not in touched


def test_an_installed_package_with_the_same_weights_is_used_whatever_the_folder_is_called(capsys, tmp_path):
    installed = make_tiny_package(tmp_path / "models" / "tiny", "tiny", seed=0)
    sha = sha256_file(installed / "weights.safetensors")
    picture = picture_asking_for(tmp_path / "photo.png", tmp_path / "Downloads" / "renamed", sha)
    code, _, err = run(capsys, "render", "--from", picture, "--models-dir", tmp_path / "models", "--out",
                       tmp_path / "again.png")
    assert code == 0, err
    assert read_any_request(tmp_path / "again.png").model_id == "tiny"


def test_the_same_name_with_other_weights_is_the_changed_model_message(capsys, tmp_path):
    make_tiny_package(tmp_path / "models" / "tiny", "tiny", seed=0)
    picture = picture_asking_for(tmp_path / "photo.png", tmp_path / "Downloads" / "tiny", "ab" * 32)
    code, _, err = run(capsys, "render", "--from", picture, "--models-dir", tmp_path / "models", "--out",
                       tmp_path / "again.png")
    assert code == 1
    assert "differs from the requested abababababab" in err and "not the one that made this request" in err


def test_a_folder_name_in_the_current_directory_is_no_way_in(capsys, downloads, tmp_path, monkeypatch, touched):
    """A bare model id that names a folder here (not an installed id) is a path too."""
    monkeypatch.chdir(downloads)
    touched.clear()
    picture = picture_asking_for(tmp_path / "photo.png", Path("evil"))
    code, _, err = run(capsys, "render", "--from", picture, "--out", tmp_path / "again.png")
    assert code == 1 and "model folder 'evil' (no weights hash)" in err
    assert (downloads / "evil").resolve() not in touched


def test_the_user_may_still_name_a_folder_with_model(capsys, downloads, tmp_path):
    """--model PATH is the user's choice, not the file's: it renders the stored request with that package."""
    picture = picture_asking_for(tmp_path / "photo.png", downloads / "elsewhere")
    code, _, err = run(capsys, "render", "--from", picture, "--model", downloads / "evil", "--out",
                       tmp_path / "again.png")
    assert code == 0, err
    assert read_any_request(tmp_path / "again.png").model_id == "evil"


def test_the_refusal_is_one_line_and_exit_code_1_from_the_installed_command(downloads, tmp_path):
    evil = downloads / "evil"
    sha = sha256_file(evil / "weights.safetensors")
    picture = picture_asking_for(tmp_path / "photo.png", evil, sha)
    proc = subprocess.run([sys.executable, "-m", "studio", "render", "--from", str(picture), "--out",
                           str(tmp_path / "again.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    refusal_checks(proc.stderr, evil, sha, picture)
