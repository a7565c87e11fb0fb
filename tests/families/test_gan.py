"""The style-based GAN family on a tiny seeded generator: determinism, truncation, style mixing, layer-ranged
directions, noise, latents, projection, and clear errors for bad input (studio.families.gan)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import finish, make_tiny_gan_package
from studio.engine.engine import Cancelled, Engine
from studio.errors import RequestError, StudioError
from studio.steps import Progress
from studio.families.gan.family import num_style_layers
from studio.nets.stylegan import StyleGenerator
from studio.library import load_model, resolve
from studio.params import Capability
from studio.request import CORE_FIELDS, RenderRequest

MODEL = "tiny-gan"


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan-models")
    make_tiny_gan_package(root / MODEL)
    return root


@pytest.fixture(scope="module")
def model(gan_dir):
    return load_model(resolve(str(gan_dir / MODEL)), "cpu", torch.float32)


def render(model, request: RenderRequest) -> np.ndarray:
    return finish(model.family.render(model, request))[0].data


def req(**kw) -> RenderRequest:
    """A request of the tiny GAN: core fields by name, everything else as params."""
    core = {name: kw.pop(name) for name in CORE_FIELDS if name in kw}
    return RenderRequest(MODEL, params=kw, **core)


def test_manifest_gives_the_layer_count_the_network_has(model):
    net: StyleGenerator = model.network
    assert num_style_layers(model.manifest) == net.num_ws == 4
    assert Capability.SAMPLE | Capability.ENCODE | Capability.PROJECT in model.family.capabilities
    # style mixing, per-layer directions and noise are params the family declares, sized to its layers
    assert {"mix_layer", "layer_start", "layer_end", "noise"} <= {s.name for s in model.table}
    assert model.table.get("mix_layer").range == model.table.get("layer_end").range == (0, 4)
    assert model.table.default("layer_end") == 4 and model.table.default("mix_layer") == 2


def test_render_is_deterministic_per_seed(model):
    a, b = render(model, req(seed=5, prompt="AbC")), render(model, req(seed=5, prompt="AbC"))
    assert a.shape == (8, 24, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render(model, req(seed=6, prompt="AbC")))


def test_the_same_w_draws_every_character_the_characters_differ(model):
    img = render(model, req(seed=1, prompt="AB"))[:, :, 0]
    assert not np.array_equal(img[:, :8], img[:, 8:])


def test_truncation_zero_gives_the_mean_style(model):
    net: StyleGenerator = model.network
    for seed in (0, 1, 2):
        ws = model.family.latent_ws(model, req(seed=seed, truncation=0.0))
        assert torch.allclose(ws, net.w_avg.expand_as(ws), atol=1e-6)
    off = {"truncation": 0.0, "noise": 0.0}
    a = render(model, req(seed=0, **off))
    assert np.array_equal(a, render(model, req(seed=99, **off)))
    mean = tuple(net.w_avg.tolist())
    assert np.array_equal(a, render(model, req(seed=0, latent=mean, noise=0.0)))
    assert not np.array_equal(a, render(model, req(seed=0, noise=0.0)))


def test_truncation_moves_w_toward_the_mean_linearly(model):
    net = model.network
    w1 = model.family.latent_ws(model, req(seed=3))
    w_half = model.family.latent_ws(model, req(seed=3, truncation=0.5))
    assert torch.allclose(w_half, net.w_avg + 0.5 * (w1 - net.w_avg), atol=1e-6)


def test_mixing_from_layer_zero_equals_the_second_latent(model):
    off = {"noise": 0.0}
    mixed = req(seed=1, mix_seed=7, mix_layer=0, **off)
    assert torch.equal(model.family.latent_ws(model, mixed), model.family.latent_ws(model, req(seed=7)))
    assert np.array_equal(render(model, mixed), render(model, req(seed=7, **off)))


def test_mixing_takes_the_second_style_from_the_chosen_layer_on(model):
    a, b = model.family.latent_ws(model, req(seed=1)), model.family.latent_ws(model, req(seed=7))
    ws = model.family.latent_ws(model, req(seed=1, mix_seed=7, mix_layer=2))
    assert torch.equal(ws[:2], a[:2]) and torch.equal(ws[2:], b[2:])
    none = model.family.latent_ws(model, req(seed=1, mix_seed=7, mix_layer=4))
    assert torch.equal(none, a)
    half = model.family.latent_ws(model, req(seed=1, mix_seed=7, mix_layer=2, mix_strength=0.5))
    assert torch.allclose(half[2:], (a[2:] + b[2:]) / 2, atol=1e-6)


def test_directions_apply_to_the_layer_range_only(model):
    base = model.family.latent_ws(model, req(seed=2))
    moved = model.family.latent_ws(model, req(seed=2, d0=2.0, layer_start=1, layer_end=3))
    step = model.directions.offset(0, 2.0)
    assert torch.equal(moved[0], base[0]) and torch.equal(moved[3], base[3])
    assert torch.allclose(moved[1:3], base[1:3] + step, atol=1e-6)
    everywhere = model.family.latent_ws(model, req(seed=2, d0=2.0))
    assert torch.allclose(everywhere, base + step, atol=1e-6)


def test_noise_off_and_on(model):
    on = render(model, req(seed=4))
    off = render(model, req(seed=4, noise=0.0))
    assert not np.array_equal(on, off)
    assert np.array_equal(on, render(model, req(seed=4, noise=1.0)))


def test_latent_reproduces_the_render_as_an_explicit_latent(model):
    plain = req(seed=3, truncation=0.7)
    w = model.family.latent(model, plain)
    assert w.shape == (8,)
    assert np.array_equal(render(model, plain), render(model, req(seed=3, latent=tuple(w.tolist()))))
    layered = req(seed=3, mix_seed=9, mix_layer=1, d1=-1.5, layer_start=2)
    wplus = model.family.latent(model, layered)
    assert wplus.shape == (4, 8)
    assert np.array_equal(render(model, layered),
                          render(model, req(seed=3, latent=tuple(wplus.reshape(-1).tolist()))))


@pytest.mark.parametrize("params, field, text", [
    ({"truncation": 2.5}, "truncation", "must be between -1 and 2, got 2.5"),
    ({"truncation": -1.5}, "truncation", "must be between -1 and 2"),
    ({"mix_seed": 3, "mix_layer": 9}, "mix_layer", "must be between 0 and 4, got 9"),  # 4 layers
    ({"mix_seed": 3, "mix_layer": 1.5}, "mix_layer", "must be a whole number"),
    ({"mix_seed": 3, "mix_strength": 1.5}, "mix_strength", "must be between 0 and 1"),
    ({"layer_start": 3, "layer_end": 1}, "layer_start", r"must be at most layer_end \(1\), got 3"),
    ({"noise": -1.0}, "noise", "must be between 0 and 4"),
    ({"noise": 9.0}, "noise", "must be between 0 and 4"),
    ({"d17": 1.0}, "d17", r"this model takes no parameter 'd17' \(it takes: .*d0…d3"),  # 4 directions
    ({"z8": 1.0}, "z8", r"this model takes no parameter 'z8' \(it takes: .*z0…z7"),  # w has 8 dimensions
    ({"variation_seed": 3, "variation_strength": 2.0}, "variation_strength", "must be between 0 and 1"),
    ({"mix_seed": 3.5}, "mix_seed", "must be a whole number"),
])
def test_out_of_range_edits_are_clear_errors(model, params, field, text):
    with pytest.raises(RequestError, match=f"params.{field}: {text}") as info:
        render(model, req(seed=0, **params))
    assert info.value.field == f"params.{field}"


def test_an_explicit_latent_of_the_wrong_length_is_a_clear_error(model):
    with pytest.raises(RequestError, match=r"takes a w of 8 values or one w per layer \(4 × 8 = 32\)"):
        render(model, req(latent=(0.5,) * 10))


def test_weights_that_do_not_fit_the_declared_architecture_name_the_file(gan_dir, tmp_path):
    import shutil

    import tomli_w

    from studio.manifest import read_toml

    folder = tmp_path / "bad-gan"
    shutil.copytree(gan_dir / MODEL, folder)
    data = read_toml(folder / "model.toml")
    data["architecture"]["widths"] = [16, 16]
    (folder / "model.toml").write_text(tomli_w.dumps(data))
    with pytest.raises(StudioError) as err:
        load_model(resolve(str(folder)), "cpu", torch.float32)
    assert "weights.safetensors" in str(err.value)


def test_a_manifest_with_the_wrong_number_of_widths_names_the_field(gan_dir, tmp_path):
    import shutil

    import tomli_w

    from studio.manifest import read_toml

    folder = tmp_path / "bad-widths"
    shutil.copytree(gan_dir / MODEL, folder)
    data = read_toml(folder / "model.toml")
    data["architecture"]["widths"] = [8, 8, 8]
    (folder / "model.toml").write_text(tomli_w.dumps(data))
    with pytest.raises(StudioError, match="architecture.widths"):
        load_model(resolve(str(folder)), "cpu", torch.float32)


# --- projection ---------------------------------------------------------------------------------------------------


def test_projection_finds_a_style_that_redraws_the_glyphs(model):
    target_req = req(seed=11, prompt="Ab", noise=0.0)
    target = render(model, target_req)[:, :, 0]
    cells = np.stack([target[:, :8], target[:, 8:]])
    with torch.inference_mode():  # as on the engine's worker: projection must turn gradients back on itself
        w, progress = finish(model.family.encode(model, cells, ["A", "b"], steps=150))
    assert w.shape == (4, 8)
    assert len(progress) == 150 and all(isinstance(p, Progress) for p in progress)
    assert progress[-1].step == progress[-1].total == 150
    redrawn = render(model, req(seed=0, prompt="Ab", latent=tuple(w.reshape(-1).tolist()),
                                noise=0.0))[:, :, 0]
    mean = render(model, req(seed=0, prompt="Ab", truncation=0.0, noise=0.0))[:, :, 0]
    err = np.abs(redrawn.astype(float) - target).mean()
    assert err < 0.5 * np.abs(mean.astype(float) - target).mean()
    assert all(p.grad is None for p in model.network.parameters())  # the loaded network is left alone


def test_projection_of_an_image_of_the_wrong_size_is_a_clear_error(model):
    with pytest.raises(RequestError, match="needs 8×8 images; got 12×12"):
        finish(model.family.encode(model, np.zeros((1, 12, 12), np.uint8), ["A"]))
    with pytest.raises(RequestError, match="needs the character"):
        finish(model.family.encode(model, np.zeros((1, 8, 8), np.uint8), None))


def test_projection_on_the_engine_reports_progress_and_cancel_stops_within_one_step(gan_dir):
    events = []
    with Engine(device="cpu", roots=[gan_dir], threads=1) as engine:
        job_box = {}

        def on_event(event):
            events.append(event.kind)
            if event.kind == "progress" and event.step == 3:
                job_box["job"].cancel()

        job_box["job"] = engine.encode(req(), np.zeros((1, 8, 8), np.uint8), ["A"], on_event=on_event)
        with pytest.raises(Cancelled):
            job_box["job"].wait(60)
    progress_after_cancel = events[events.index("progress", 0):].count("progress")
    assert events[-1] == "cancelled"
    assert progress_after_cancel <= 4 + 1  # steps 0..3, then at most one more before the cancel point


def test_projection_result_through_the_engine_is_a_w_plus(gan_dir):
    with Engine(device="cpu", roots=[gan_dir], threads=1) as engine:
        out = engine.encode(req(), np.zeros((2, 8, 8), np.uint8) + 255, ["A", "b"]).wait(120)
    assert out.kind == "latent" and out.data.shape == (32,) and out.info["shape"] == [4, 8]


def test_cli_projects_an_image_strip_and_refuses_image_to_image(gan_dir, tmp_path, capsys):
    import json

    from PIL import Image

    from studio.cli import main

    strip = tmp_path / "strip.png"
    Image.fromarray(np.hstack([np.full((20, 20), 255, np.uint8), np.zeros((20, 20), np.uint8) + 40])).save(strip)
    out = tmp_path / "w.json"
    assert main(["encode", "--models-dir", str(gan_dir), "--model", MODEL, "--image", str(strip), "--chars", "Ab",
                 "--out", str(out)]) == 0
    assert "projecting" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["latent"]) == 32
    assert main(["render", "--models-dir", str(gan_dir), "--model", MODEL, "--latent", str(out),
                 "--out", str(tmp_path / "p.png")]) == 0
    assert main(["render", "--models-dir", str(gan_dir), "--model", MODEL, "--init", str(strip),
                 "--out", str(tmp_path / "x.png")]) != 0
    assert "cannot start from an image" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_render_and_projection_match_the_cpu(gan_dir):
    request = req(seed=5, prompt="Ab", mix_seed=2, mix_layer=1, d0=1.0)
    with Engine(device="cpu", roots=[gan_dir]) as cpu:
        expected = cpu.render(request)
    with Engine(device="auto", roots=[gan_dir]) as gpu:
        job = gpu.submit(request, "export")
        got = job.wait(60)
        assert job.info["device"].startswith(gpu.device.type) and "fallback" not in job.info
        half = gpu.submit(request.with_(dtype="float16"), "export").wait(60)
        w = gpu.encode(req(), np.zeros((1, 8, 8), np.uint8) + 255, ["A"]).wait(120)
    assert np.abs(got.data.astype(int) - expected.data.astype(int)).max() <= 2
    assert np.abs(half.data.astype(int) - expected.data.astype(int)).max() <= 6
    assert w.data.shape == (32,) and np.isfinite(w.data).all()


# --- the parameters the family declares ------------------------------------------------------------------------------


def test_the_shipped_gan_declares_its_parameters():
    from pathlib import Path

    from studio.params import CONDITIONS, DIRECTIONS, RAW, SHAPING, Kind

    entry = resolve(str(Path(__file__).resolve().parents[2] / "models" / "glyph-gan"))
    assert entry.manifest.family == "gan"
    assert entry.capabilities == Capability.SAMPLE | Capability.ENCODE | Capability.PROJECT  # encoding is long
    table = entry.parameters
    assert [(s.name, s.kind, s.default, s.group, s.count) for s in table] == [
        ("prompt", Kind.TEXT, "Latent", CONDITIONS, 0),
        ("truncation", Kind.FLOAT, 1.0, SHAPING, 0),
        ("mix_seed", Kind.SEED, None, SHAPING, 0),
        ("mix_strength", Kind.FLOAT, 1.0, SHAPING, 0),  # a mix seed takes over its layers fully
        ("mix_layer", Kind.INT, 4, SHAPING, 0),  # from the middle of the 8 style layers (32 × 32)
        ("variation_seed", Kind.SEED, None, SHAPING, 0),
        ("variation_strength", Kind.FLOAT, 0.0, SHAPING, 0),
        ("d", Kind.FLOAT, 0.0, DIRECTIONS, 16),
        ("z", Kind.FLOAT, 0.0, RAW, 128),
        ("layer_start", Kind.INT, 0, DIRECTIONS, 0),
        ("layer_end", Kind.INT, 8, DIRECTIONS, 0),
        ("noise", Kind.FLOAT, 1.0, SHAPING, 0),
    ]
    assert table.get("truncation").range == (-1.0, 2.0)
    assert table.get("mix_strength").range == table.get("variation_strength").range == (0.0, 1.0)
    assert table.get("mix_layer").range == table.get("layer_start").range == table.get("layer_end").range == (0, 8)
    assert table.get("mix_layer").when == table.get("mix_strength").when == ("mix_seed", ())
    assert table.get("noise").range == (0.0, 4.0)
    assert [s.name for s in table if s.render_only] == ["prompt", "noise"]  # noise acts while drawing, not on w
    assert table.get("prompt").charset == "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    assert table.check(entry.default_request(3)) == RenderRequest("glyph-gan", seed=3, params={"prompt": "Latent"})
