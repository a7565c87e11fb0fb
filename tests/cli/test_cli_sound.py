"""The command line with a sound model (a tiny seeded audio VAE): headless render to every audio format with the
request in the file's tags, `render --from` round trips, `encode --sound` at another sample rate, and clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import make_tiny_audio_package, make_tiny_package
from studio.cli import main
from studio.export import read_any_request
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.train.sounds import synthesize

MODEL = "tiny-audio"


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_audio_package(root / MODEL)
    make_tiny_package(root / "tiny")
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name, subtype, expected", [
    ("a.wav", None, "PCM_16"), ("b.wav", "PCM_24", "PCM_24"), ("c.wav", "FLOAT", "FLOAT"),
    ("d.flac", None, "PCM_16"), ("e.ogg", None, "VORBIS"), ("f.mp3", None, "MPEG_LAYER_III"),
])
def test_render_writes_a_sound_that_carries_its_request(capsys, models, tmp_path, name, subtype, expected):
    out = tmp_path / name
    extra = ["--sample-format", subtype] if subtype else []
    code, stdout, err = run(capsys, "render", "--models-dir", models, "--model", MODEL, "--seed", 7, "--label", "pad",
                            "--set", "d1=1.5", "--out", out, *extra)
    assert code == 0, err
    assert "wrote" in stdout and "s at 8000 Hz" in stdout
    info = sf.info(str(out))
    assert info.samplerate == 8000 and info.channels == 1 and info.subtype == expected
    if expected in ("PCM_16", "PCM_24", "FLOAT"):
        assert info.frames == 1024
    request = read_any_request(out)
    assert (request.model_id, request.seed, dict(request.params)) == (MODEL, 7, {"label": "pad", "d1": 1.5})
    assert len(request.model_hash) == 64


def test_render_from_a_sound_file_is_exact(capsys, models, tmp_path):
    first, again = tmp_path / "first.wav", tmp_path / "again.wav"
    assert run(capsys, "render", "--models-dir", models, "--model", MODEL, "--seed", 3, "--label", "kick",
               "--sample-format", "FLOAT", "--out", first)[0] == 0
    code, _, err = run(capsys, "render", "--models-dir", models, "--from", first, "--sample-format", "FLOAT",
                       "--out", again)
    assert code == 0, err
    a, rate = sf.read(str(first), dtype="float32")
    b, _ = sf.read(str(again), dtype="float32")
    assert rate == 8000 and np.array_equal(a, b)
    model = load_model(resolve(str(models / MODEL)))
    from conftest import finish

    from studio.engine.device import headless_threads

    # on the engine's thread count, as `render` draws it: CPU sums may round differently on another count
    # (on a 2-core machine a worker on 1 thread and this thread on 2 differ in the spectrogram inversion's last
    # bit, with or without params)
    threads = torch.get_num_threads()
    torch.set_num_threads(headless_threads())
    try:
        direct = finish(model.family.render(model, RenderRequest(MODEL, seed=3, params={"label": "kick"})))[0]
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(a, direct.data[:, 0])  # what the model renders, unchanged by the file


def test_a_sound_model_refuses_image_names_and_the_other_way_round(capsys, models, tmp_path):
    code, _, err = run(capsys, "render", "--models-dir", models, "--model", MODEL, "--out", tmp_path / "x.png")
    assert code == 1 and "makes audio" in err and ".wav" in err
    code, _, err = run(capsys, "render", "--models-dir", models, "--model", "tiny", "--out", tmp_path / "x.wav")
    assert code == 1 and "makes image" in err
    code, _, err = run(capsys, "render", "--models-dir", models, "--model", "tiny", "--sample-format", "PCM_24",
                       "--out", tmp_path / "x.png")
    assert code == 1 and "--sample-format is for sounds" in err
    assert not list(tmp_path.iterdir())


def test_render_names_an_unknown_class(capsys, models, tmp_path):
    code, _, err = run(capsys, "render", "--models-dir", models, "--model", MODEL, "--label", "cowbell",
                       "--out", tmp_path / "x.wav")
    assert code == 1 and "cowbell" in err and "kick, snare, pad" in err
    assert not list(tmp_path.iterdir())


def test_render_into_an_unwritable_folder_fails_before_work(capsys, models, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        code, _, err = run(capsys, "render", "--models-dir", models, "--model", MODEL, "--out", locked / "x.wav")
        assert code == 1 and "not writable" in err and str(locked) in err
    finally:
        locked.chmod(0o700)


def test_the_default_name_of_a_sound_is_a_wav(capsys, models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(capsys, "render", "--models-dir", models, "--model", MODEL, "--seed", 4)
    assert code == 0, err
    assert (tmp_path / f"{MODEL}-4.wav").exists()


def test_encode_a_sound_file_at_another_rate(capsys, models, tmp_path):
    wave = synthesize("snare", 1, 16000, 2048)
    sf.write(str(tmp_path / "snare.flac"), wave, 16000)
    code, stdout, err = run(capsys, "encode", "--models-dir", models, "--model", MODEL, "--sound",
                            tmp_path / "snare.flac", "--label", "snare", "--out", tmp_path / "z.json")
    assert code == 0, err
    record = json.loads((tmp_path / "z.json").read_text())
    assert record["label"] == "snare" and len(record["latent"]) == 4
    assert "resampled from 16000 Hz" in record["source"]
    model = load_model(resolve(str(models / MODEL)))
    from studio.export import read_sound

    at_rate, _ = read_sound(tmp_path / "snare.flac", 8000)
    with torch.inference_mode():
        want = model.family.encode(model, at_rate, ["snare"])
    assert np.allclose(record["latent"], want.numpy(), atol=1e-6)
    code, _, err = run(capsys, "render", "--models-dir", models, "--model", MODEL, "--latent", tmp_path / "z.json",
                       "--label", "snare", "--out", tmp_path / "back.wav")
    assert code == 0, err


def test_encode_names_a_file_that_is_not_a_sound(capsys, models, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not a sound at all")
    code, _, err = run(capsys, "encode", "--models-dir", models, "--model", MODEL, "--sound", bad)
    assert code == 1 and "notes.wav" in err
    code, _, err = run(capsys, "encode", "--models-dir", models, "--model", MODEL, "--sound", bad,
                       "--label", "cowbell")
    assert code == 1
    code, _, err = run(capsys, "encode", "--models-dir", models, "--model", MODEL)
    assert code == 1 and "--sound" in err
    code, _, err = run(capsys, "encode", "--models-dir", models, "--model", "tiny", "--sound", bad)
    assert code == 1 and "makes images" in err
