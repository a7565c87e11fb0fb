"""--model as the user types it: a relative folder or a bare file name in the current folder is that path (never
joined twice, never taken for an id); a name that is both an installed id and a folder here is the installed package,
and the command says so. And `encode --image` on a projecting model: progress on stderr, Ctrl+C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.library import resolve

from conftest import make_tiny_package

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_shipped(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A tiny diffusers pipeline folder and the same weights as one single .safetensors file."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from sd_tiny import make_parts, make_pipeline_folder, write_single_file

    folder = tmp_path_factory.mktemp("sd")
    parts = make_parts()
    make_pipeline_folder(folder / "tiny-sd", parts=parts)
    write_single_file(folder / "tiny.safetensors", parts)
    return folder


def test_a_relative_pipeline_folder_is_read_where_it_is_not_at_a_doubled_path(tiny_sd, no_shipped, monkeypatch):
    # was: "tiny-sd/tiny-sd: no such file or folder" (the folder made relative to itself)
    monkeypatch.chdir(tiny_sd)
    for typed in ("tiny-sd", "./tiny-sd", "tiny-sd/"):
        entry = resolve(typed)
        assert entry.ok and entry.manifest.family == "stable-diffusion", (typed, entry.error)
        assert entry.folder == tiny_sd / "tiny-sd"


def test_a_bare_safetensors_name_in_the_current_folder_is_that_file_not_an_id(tiny_sd, no_shipped, monkeypatch):
    monkeypatch.chdir(tiny_sd)
    entry = resolve("tiny.safetensors")  # was: "no model with id 'tiny.safetensors' is installed"
    assert entry.manifest.family == "stable-diffusion" and entry.folder == tiny_sd / "tiny.safetensors"


def test_a_name_that_is_neither_says_where_it_looked(tmp_path, no_shipped, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["render", "--model", "missing.safetensors", "--out", "x.png"]) == 1
    err = capsys.readouterr().err
    assert "no model with id 'missing.safetensors' is installed" in err
    assert f"no file or folder of that name in the current folder ({tmp_path.resolve()})" in err


def test_a_package_folder_here_by_bare_name_and_an_installed_id_wins_over_a_folder(tmp_path, no_shipped,
                                                                                   monkeypatch, capsys):
    installed = tmp_path / "installed"
    make_tiny_package(installed / "tiny", "tiny", seed=0)
    here = tmp_path / "here"
    make_tiny_package(here / "mine", "mine", seed=1)
    make_tiny_package(here / "tiny", "tiny-local", seed=2)  # a folder named like the installed id
    monkeypatch.chdir(here)

    assert main(["render", "--model", "mine", "--out", "a.png", "--device", "cpu"]) == 0
    assert "mine" in capsys.readouterr().out

    assert main(["render", "--models-dir", str(installed), "--model", "tiny", "--out", "b.png", "--device",
                 "cpu"]) == 0
    captured = capsys.readouterr()
    assert "tiny," in captured.out and "tiny-local" not in captured.out  # the installed package
    assert "'tiny' is an installed model and a file or folder in the current folder" in captured.err
    assert "write ./tiny for the folder" in captured.err

    assert main(["render", "--models-dir", str(installed), "--model", "./tiny", "--out", "c.png", "--device",
                 "cpu"]) == 0
    captured = capsys.readouterr()
    assert "tiny-local" in captured.out and "note:" not in captured.err


@pytest.mark.slow
def test_encode_projection_shows_progress_and_stops_cleanly_on_ctrl_c(tmp_path):
    """The shipped GAN's projection (300 steps): a progress line with step/total and time left on stderr, and
    SIGINT in the middle ends it with "interrupted", status 130, no traceback and no output file."""
    strip = tmp_path / "rag.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LATENT_STUDIO_DATA": str(tmp_path / "data")}
    env.pop("LATENT_STUDIO_SHIPPED_MODELS", None)
    subprocess.run([sys.executable, "-m", "studio", "render", "--model", "glyph-gan", "--prompt", "Rag",
                    "--out", str(strip), "--device", "cpu"], env=env, check=True, capture_output=True, timeout=300)
    out = tmp_path / "w.json"
    proc = subprocess.Popen([sys.executable, "-m", "studio", "encode", "--model", "glyph-gan", "--image", str(strip),
                             "--chars", "Rag", "--out", str(out), "--device", "cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:  # not a terminal: whole lines
            seen.append(line)
            if "/300" in line and "left" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest_out, rest_err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(seen) + rest_err
    assert "projecting image" in err and "Ctrl+C stops it" in err
    assert any("/300" in line and "left" in line for line in seen), err
    if proc.returncode == 0:  # the machine finished all 300 steps before the signal arrived: nothing to judge
        pytest.skip("the projection ended before SIGINT arrived")
    assert proc.returncode == 130, err
    assert "latent-studio: interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("w.json*"))


def test_the_window_adds_a_relative_pipeline_folder_too(tiny_sd, no_shipped, monkeypatch):
    """`latent-studio gui tiny-sd` and File → Open Model Folder go through ModelLibrary.add_model_folder."""
    from studio.app.listeners import Listeners
    from studio.app.models import ModelLibrary

    heard: list = []
    message = Listeners()
    message.connect(lambda *args: heard.append(args))
    monkeypatch.chdir(tiny_sd)
    library = ModelLibrary([], message)
    added = library.add_model_folder("tiny-sd")
    assert [e.ok for e in added] == [True], heard
    assert added[0].folder == tiny_sd / "tiny-sd"


def test_the_window_opens_on_a_relative_model_path_too(tiny_sd, no_shipped, monkeypatch, tmp_path):
    """`latent-studio --model tiny-sd` (the window): the folder becomes one more model folder and the window starts
    on the model in it; a bad path is said on the terminal before any window opens."""
    import studio.ui.app

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setenv("LATENT_STUDIO_DATA", str(tmp_path / "data"))
    seen: list[dict] = []
    monkeypatch.setattr(studio.ui.app, "run", lambda **kw: seen.append(kw) or 0)
    monkeypatch.chdir(tiny_sd)
    assert main(["--model", "tiny-sd"]) == 0
    assert seen[-1]["model"] == "tiny-sd" and seen[-1]["models_dirs"] == [str(tiny_sd / "tiny-sd")]
    installed = tmp_path / "installed"
    make_tiny_package(installed / "tiny", "tiny", seed=0)
    assert main(["gui", "--models-dir", str(installed), "--model", "tiny"]) == 0  # an installed id stays an id
    assert seen[-1]["model"] == "tiny" and seen[-1]["models_dirs"] == [str(installed)]
    assert main(["--model", "./nothing-here"]) == 1 and len(seen) == 2  # said here, no window
    assert main(["--model", "glyphs-nope"]) == 1 and len(seen) == 2  # was: the window silently took another
