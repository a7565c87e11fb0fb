"""`encode`, and rendering encoded latents and walks between them (the artist's edit/interpolate loop, headless)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.export import read_request

DEJAVU_SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
DEJAVU_SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
needs_dejavu = pytest.mark.skipif(not (__import__("os").path.exists(DEJAVU_SERIF)
                                       and __import__("os").path.exists(DEJAVU_SANS)), reason="needs fonts-dejavu")


def run(models_dir, *argv) -> int:
    return main(["--models-dir", str(models_dir), *argv])


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


@needs_dejavu
def test_encode_a_font_then_render_and_walk(models_dir, tmp_path, capsys):
    a, b = tmp_path / "serif.json", tmp_path / "sans.json"
    assert run(models_dir, "encode", "--model", "tiny", "--font", DEJAVU_SERIF, "--out", str(a)) == 0
    assert run(models_dir, "encode", "--model", "tiny", "--font", DEJAVU_SANS, "--chars", "Hamburg", "--out", str(b)) == 0
    rec_a, rec_b = json.loads(a.read_text()), json.loads(b.read_text())
    assert len(rec_a["latent"]) == 8 and rec_a["chars"] == "AaBbGgRr" and len(rec_a["model_hash"]) == 64
    assert rec_a["latent"] != rec_b["latent"]

    outs = {}
    for t in ("0", "0.5", "1"):
        outs[t] = tmp_path / f"walk{t}.png"
        assert run(models_dir, "render", "--model", "tiny", "--latent", str(a), "--toward", str(b), "--t", t,
                   "--prompt", "Ab", "--out", str(outs[t])) == 0
    plain_a, plain_b = tmp_path / "a.png", tmp_path / "b.png"
    assert run(models_dir, "render", "--model", "tiny", "--latent", str(a), "--prompt", "Ab", "--out", str(plain_a)) == 0
    assert run(models_dir, "render", "--model", "tiny", "--latent", str(b), "--prompt", "Ab", "--out", str(plain_b)) == 0
    assert np.array_equal(pixels(outs["0"]), pixels(plain_a))
    assert np.array_equal(pixels(outs["1"]), pixels(plain_b))
    assert not np.array_equal(pixels(outs["0.5"]), pixels(plain_a))
    # The walk's point is stored in the file as an explicit latent: re-rendering it needs no latent files.
    request = read_request(outs["0.5"])
    assert request.latent is not None and len(request.latent) == 8
    again = tmp_path / "again.png"
    a.unlink(), b.unlink()
    assert run(models_dir, "render", "--from", str(outs["0.5"]), "--out", str(again)) == 0
    assert np.array_equal(pixels(again), pixels(outs["0.5"]))


def test_encode_an_image_strip_and_edit_it(models_dir, tmp_path):
    strip = tmp_path / "strip.png"
    assert run(models_dir, "render", "--model", "tiny", "--prompt", "Hi yo", "--seed", "3", "--out", str(strip)) == 0
    z = tmp_path / "z.json"
    assert run(models_dir, "encode", "--model", "tiny", "--image", str(strip), "--chars", "Hi yo", "--out", str(z)) == 0
    assert json.loads(z.read_text())["chars"] == "Hiyo"
    plain, edited = tmp_path / "plain.png", tmp_path / "edited.png"
    assert run(models_dir, "render", "--model", "tiny", "--latent", str(z), "--out", str(plain)) == 0
    assert run(models_dir, "render", "--model", "tiny", "--latent", str(z), "--set", "d0=2", "--out", str(edited)) == 0
    assert not np.array_equal(pixels(plain), pixels(edited))
    assert dict(read_request(edited).params) == {"d0": 2.0}


def test_light_ink_on_black_encodes_like_dark_ink_on_paper(models_dir, tmp_path):
    strip = tmp_path / "strip.png"
    assert run(models_dir, "render", "--model", "tiny", "--prompt", "Ab", "--out", str(strip)) == 0
    negative = tmp_path / "negative.png"
    Image.fromarray(255 - pixels(strip)).save(negative)
    za, zb = tmp_path / "a.json", tmp_path / "b.json"
    assert run(models_dir, "encode", "--model", "tiny", "--image", str(strip), "--chars", "Ab", "--out", str(za)) == 0
    assert run(models_dir, "encode", "--model", "tiny", "--image", str(negative), "--chars", "Ab", "--out", str(zb)) == 0
    np.testing.assert_allclose(json.loads(za.read_text())["latent"], json.loads(zb.read_text())["latent"], atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["encode", "--model", "tiny"], "--font FILE, or --image FILE with --chars"),
    (["encode", "--model", "tiny", "--image", "missing.png", "--chars", "A"], "missing.png"),
    (["encode", "--model", "tiny", "--font", "/etc/hostname"], "/etc/hostname"),
    (["encode", "--model", "tiny", "--font", DEJAVU_SERIF, "--chars", "é"], "--chars"),
    (["render", "--model", "tiny", "--toward", "x.json", "--out", "o.png"], "--toward needs --latent"),
])
def test_encode_and_latent_errors_are_one_clear_line(models_dir, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert run(models_dir, *argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_latent_file_of_the_wrong_size_or_shape_is_refused(models_dir, tmp_path, capsys):
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"latent": [0.0, 1.0]}))
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    out = tmp_path / "o.png"
    assert run(models_dir, "render", "--model", "tiny", "--latent", str(short), "--out", str(out)) == 1
    assert "2 values but tiny needs 8" in capsys.readouterr().err
    assert run(models_dir, "render", "--model", "tiny", "--latent", str(junk), "--out", str(out)) == 1
    assert str(junk) in capsys.readouterr().err
    assert not out.exists()


def test_from_with_a_latent_still_takes_the_other_overrides(models_dir, tmp_path):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    assert run(models_dir, "render", "--model", "tiny", "--seed", "1", "--out", str(first)) == 0
    z = tmp_path / "z.json"
    z.write_text(json.dumps({"latent": [0.5] * 8}))
    assert run(models_dir, "render", "--from", str(first), "--seed", "9", "--latent", str(z), "--out", str(second)) == 0
    request = read_request(second)
    assert request.seed == 9 and request.latent == (0.5,) * 8


def test_a_gan_walks_from_a_w_to_a_w_plus(tmp_path):
    from conftest import make_tiny_gan_package

    root = tmp_path / "models"
    make_tiny_gan_package(root / "tiny-gan")  # w: 8 values, w+: 4 layers × 8
    w, w_plus = tmp_path / "w.json", tmp_path / "w_plus.json"
    w.write_text(json.dumps({"latent": np.linspace(-1, 1, 8).tolist()}))
    w_plus.write_text(json.dumps({"latent": np.linspace(1, -1, 32).tolist()}))
    start, plain = tmp_path / "start.png", tmp_path / "plain.png"
    assert run(root, "render", "--model", "tiny-gan", "--latent", str(w), "--toward", str(w_plus), "--t", "0",
               "--out", str(start)) == 0
    assert run(root, "render", "--model", "tiny-gan", "--latent", str(w), "--out", str(plain)) == 0
    assert np.array_equal(pixels(start), pixels(plain))  # the w repeated on every layer is the same picture
    assert len(read_request(start).latent) == 32
