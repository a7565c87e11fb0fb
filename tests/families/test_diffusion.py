"""The diffusion family and its samplers on a tiny seeded UNet: determinism, per-step previews, cancel, the noise as
the latent, image-to-image, sampler correctness on an exactly known denoiser, and clear errors for bad input
(studio.families.diffusion, studio.nets.samplers). The cross-check against diffusers is in
test_samplers_diffusers.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import finish, make_tiny_diffusion_package
from studio.engine.engine import Cancelled, Engine
from studio.errors import RequestError, StudioError
from studio.steps import Preview
from studio.families.diffusion.family import init_image_for
from studio.io.images import decode_init_image, encode_init_image
from studio.nets.unet import UNet
from studio.nets.samplers import SAMPLERS, Schedule, make_sampler, spaced_timesteps
from studio.latent.seeds import sample_prior
from studio.library import load_model, resolve
from studio.request import CORE_FIELDS, RenderRequest

MODEL = "tiny-diffusion"


@pytest.fixture(scope="module")
def diff_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion-models")
    make_tiny_diffusion_package(root / MODEL)
    return root


@pytest.fixture(scope="module")
def model(diff_dir):
    return load_model(resolve(str(diff_dir / MODEL)), "cpu", torch.float32)


def run(model, request):
    return finish(model.family.render(model, request))


def req(**kw) -> RenderRequest:
    """A request of the tiny model: core fields by name, everything else as params (6 steps unless told)."""
    kw.setdefault("steps", 6)
    core = {name: kw.pop(name) for name in CORE_FIELDS if name in kw}
    return RenderRequest(MODEL, params=kw, **core)


# --- samplers on a denoiser whose answer is known -------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_every_sampler_lands_on_the_data_when_the_denoiser_is_exact(name, schedule):
    """With one possible image c, the exact ε is (x − √ᾱ c)/√(1−ᾱ): every sampler must end at c."""
    sched = Schedule.make(schedule)
    c = torch.linspace(-0.8, 0.8, 16).reshape(1, 1, 4, 4)
    sampler = make_sampler(name, sched, 12, eta=1.0 if name == "ddim" else 0.0)
    x = sampler.initial(torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
    gen = torch.Generator().manual_seed(1)
    for i in range(len(sampler.timesteps)):
        inp = sampler.scale_input(x, i)
        # the denoiser sees the scaled input (variance-preserving x_t) at the sampler's timestep
        a = float(np.interp(sampler.model_timestep(i), np.arange(1000), sched.alphas_cumprod.numpy()))
        eps = (inp - a ** 0.5 * c) / (1 - a) ** 0.5
        x, x0 = sampler.step(eps, i, x, gen)
        assert torch.allclose(x0, c, atol=1e-2)  # float32 at ᾱ ≈ 1e-8 (t = 999, cosine) divides by 1e-4
    assert torch.allclose(x, c, atol=1e-3)


def test_timestep_spacings():
    assert spaced_timesteps(1000, 10, "leading").tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert spaced_timesteps(1000, 10, "trailing").tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert spaced_timesteps(1000, 4, "linspace").tolist() == [999, 666, 333, 0]


def test_the_cosine_schedule_is_the_improved_ddpm_one():
    ac = Schedule.make("cosine").alphas_cumprod
    f = lambda t: np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    assert ac[0].item() == pytest.approx(f(1 / 1000) / f(0), rel=1e-5)
    assert ac[499].item() == pytest.approx(f(500 / 1000) / f(0), rel=1e-4)
    assert bool((ac[1:] < ac[:-1]).all())


def test_img2img_start_step_follows_the_strength():
    sampler = make_sampler("ddim", Schedule.make("cosine"), 20)
    assert sampler.start_index(1.0) == 0
    assert sampler.start_index(0.5) == 10
    assert sampler.start_index(0.25) == 15
    with pytest.raises(RequestError, match="leaves no step"):
        sampler.start_index(0.01)
    with pytest.raises(RequestError, match="strength must be above 0"):
        sampler.start_index(0.0)


# --- the family ----------------------------------------------------------------------------------------------------


def test_render_is_deterministic_per_seed(model):
    a, _ = run(model, req(seed=3, prompt="Ab"))
    b, _ = run(model, req(seed=3, prompt="Ab"))
    assert a.data.shape == (8, 16, 1)
    assert np.array_equal(a.data, b.data)
    assert not np.array_equal(a.data, run(model, req(seed=4, prompt="Ab"))[0].data)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_renders_with_one_preview_per_step(model, name):
    out, seen = run(model, req(seed=1, sampler=name, steps=5, eta=0.5))
    previews = [s for s in seen if isinstance(s, Preview)]
    assert len(previews) == 4  # steps 1..4; the fifth is the finished image
    assert [p.step for p in previews] == [1, 2, 3, 4] and all(p.total == 5 for p in previews)
    assert all(p.output.data.shape == out.data.shape for p in previews)
    assert out.info["sampler"] == name and out.info["steps"] == 5


def test_samplers_differ_and_eta_matters_for_ddim(model):
    images = {name: run(model, req(seed=2, sampler=name, eta=0.0))[0].data for name in SAMPLERS}
    assert len({img.tobytes() for img in images.values()}) == len(SAMPLERS)
    eta = run(model, req(seed=2, sampler="ddim", eta=1.0))[0].data
    assert not np.array_equal(eta, images["ddim"])
    assert np.array_equal(eta, run(model, req(seed=2, sampler="ddim", eta=1.0))[0].data)  # its noise is seeded
    assert np.array_equal(eta, run(model, req(seed=2, sampler="ddim"))[0].data)  # η = 1 is the default


def test_guidance_changes_the_result(model):
    a = run(model, req(seed=2, guidance=1.0))[0].data
    assert not np.array_equal(a, run(model, req(seed=2, guidance=4.0))[0].data)


def test_the_latent_is_the_initial_noise(model):
    noise = model.family.latent(model, req(seed=7))
    assert torch.equal(noise, sample_prior(7, (1, 8, 8)))
    values = tuple(noise.reshape(-1).tolist())
    # deterministic sampling: the noise alone decides the picture
    assert np.array_equal(run(model, req(seed=0, latent=values, eta=0.0))[0].data,
                          run(model, req(seed=7, eta=0.0))[0].data)
    # ancestral sampling (the default) also draws fresh noise each step, from the request's seed
    assert np.array_equal(run(model, req(seed=7, latent=values))[0].data, run(model, req(seed=7))[0].data)


def test_variation_and_mixing_slerp_the_noise(model):
    from studio.latent.seeds import slerp

    base, other = sample_prior(7, (1, 8, 8)), sample_prior(9, (1, 8, 8))
    zero = model.family.latent(model, req(seed=7, variation_seed=9, variation_strength=0.0))
    assert torch.equal(zero, base)
    mixed = model.family.latent(model, req(seed=7, mix_seed=9, mix_strength=0.3))
    assert torch.allclose(mixed, slerp(base, other, 0.3), atol=1e-6)
    assert abs(mixed.std().item() - base.std().item()) < 0.25  # still noise-like, unlike a straight blend


def test_img2img_keeps_the_picture_at_low_strength(model):
    init = np.zeros((8, 16), np.uint8) + 255
    init[2:6, 2:6] = 0
    init[1:7, 10:13] = 0
    text = encode_init_image(init)
    assert np.array_equal(decode_init_image(text), init)
    far = run(model, req(seed=1, steps=10))[0].data[:, :, 0].astype(float)
    low, _ = run(model, req(seed=1, steps=10, init_image=text, strength=0.2))
    high, _ = run(model, req(seed=1, steps=10, init_image=text, strength=1.0))
    assert low.info["start_step"] == 8 and high.info["start_step"] == 0
    d_low = np.abs(low.data[:, :, 0].astype(float) - init).mean()
    assert d_low < np.abs(far - init).mean()
    assert d_low < np.abs(high.data[:, :, 0].astype(float) - init).mean()


def test_init_image_helper_fits_any_picture_to_the_prompt_sheet():
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    assert init_image_for(8, "Ab\nc", img).shape == (16, 16)
    assert init_image_for(32, "Latent", img).shape == (32, 192)


def test_cancel_stops_within_one_step(diff_dir):
    previews_after_cancel = []
    state = {"cancelled_at": None}
    with Engine(device="cpu", roots=[diff_dir], threads=1) as engine:
        box = {}

        def on_event(event):
            if event.kind == "preview":
                if state["cancelled_at"] is None and event.step == 2:
                    state["cancelled_at"] = event.step
                    box["job"].cancel()
                elif state["cancelled_at"] is not None:
                    previews_after_cancel.append(event.step)

        box["job"] = engine.submit(req(seed=1, steps=50), "export", on_event)
        with pytest.raises(Cancelled):
            box["job"].wait(60)
    assert state["cancelled_at"] == 2
    assert len(previews_after_cancel) <= 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(init_image=encode_init_image(np.zeros((8, 24), np.uint8))), r"init image is 24×8 pixels.*16×8"),
    (dict(init_image="not a png"), "init_image is not a base64 PNG"),
    (dict(strength=0.5), "strength needs an init image"),
    (dict(sampler="plms"), "params.sampler: must be one of ddpm, ddim, euler, dpmpp, got 'plms'"),
    (dict(guidance=25.0), "params.guidance: must be between 0 and 20, got 25"),
    (dict(steps=1001), "params.steps: must be between 1 and 1000, got 1001"),
    (dict(label="A"), r"params.label: this model takes no parameter 'label' \(it takes: prompt, sampler"),
])
def test_bad_requests_are_clear_errors(model, kwargs, message):
    with pytest.raises(RequestError, match=message) as info:
        run(model, req(seed=0, prompt="Ab", **kwargs))
    assert info.value.field == f"params.{next(iter(kwargs))}"


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "params.steps: must be between 1 and 1000, got 0"),
    (dict(steps=2.5), "params.steps: must be a whole number"),
    (dict(strength=0.0), "params.strength: must be between 0.01 and 1, got 0"),
    (dict(strength=1.5), "params.strength: must be between 0.01 and 1"),
    (dict(eta=2.0), "params.eta: must be between 0 and 1"),
    (dict(sampler=""), "params.sampler: must be one of ddpm, ddim, euler, dpmpp, got ''"),
])
def test_requests_refuse_impossible_settings(model, kwargs, message):
    request = RenderRequest(MODEL, params=kwargs)  # a request may hold any value; the model's specs refuse it
    with pytest.raises(RequestError, match=message) as info:
        model.checked(request)
    assert info.value.field == f"params.{next(iter(kwargs))}"
    with pytest.raises(RequestError, match=message):
        run(model, request)


def test_new_request_fields_round_trip_through_json():
    r = req(seed=3, sampler="euler", init_image=encode_init_image(np.zeros((8, 8), np.uint8)), strength=0.4)
    assert RenderRequest.from_json(r.to_json()) == r


def test_weights_that_do_not_fit_the_declared_architecture_name_the_file(diff_dir, tmp_path):
    import shutil

    import tomli_w

    from studio.manifest import read_toml

    folder = tmp_path / "bad"
    shutil.copytree(diff_dir / MODEL, folder)
    data = read_toml(folder / "model.toml")
    data["architecture"]["base"] = 16
    (folder / "model.toml").write_text(tomli_w.dumps(data))
    with pytest.raises(StudioError) as err:
        load_model(resolve(str(folder)), "cpu", torch.float32)
    assert "weights.safetensors" in str(err.value)


@pytest.mark.parametrize("field, value, message", [
    ("schedule", "sigmoid", "architecture.schedule"),
    ("mults", [1, 2, 2, 2, 2], "architecture.mults"),
    ("base", 12, "architecture.base"),
])
def test_bad_architecture_fields_are_named(diff_dir, tmp_path, field, value, message):
    import shutil

    import tomli_w

    from studio.manifest import read_toml

    folder = tmp_path / "bad-arch"
    shutil.copytree(diff_dir / MODEL, folder)
    data = read_toml(folder / "model.toml")
    data["architecture"][field] = value
    (folder / "model.toml").write_text(tomli_w.dumps(data))
    with pytest.raises(StudioError, match=message):
        load_model(resolve(str(folder)), "cpu", torch.float32)


def test_unet_shapes_and_class_conditioning():
    torch.manual_seed(0)
    net = UNet(16, 1, 8, (1, 2, 2), 5, 16, True)
    for p in net.parameters():
        torch.nn.init.normal_(p, 0, 0.1)
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0.0, 500.0, 999.0])
    a = net(x, t, torch.tensor([0, 1, 5]))
    assert a.shape == x.shape
    assert not torch.allclose(a, net(x, t, torch.tensor([2, 1, 5])))
    assert torch.allclose(net(x, t, None), net(x, t, torch.tensor([5, 5, 5])))  # None = the "no class" index


# --- the command line ----------------------------------------------------------------------------------------------


def test_cli_contact_sheet_and_image_to_image(diff_dir, tmp_path, capsys):
    from PIL import Image

    from studio.cli import main
    from studio.export.image import read_request

    sheet = tmp_path / "sheet.png"
    assert main(["sheet", "--models-dir", str(diff_dir), "--model", MODEL, "--rows", "3", "--prompt", "Ab",
                 "--set", "steps=3", "--set", "sampler=ddim", "--out", str(sheet)]) == 0
    with Image.open(sheet) as img:
        assert img.size == (16, 3 * 8 + 2 * 1)
    out = tmp_path / "i2i.png"
    assert main(["render", "--models-dir", str(diff_dir), "--model", MODEL, "--prompt", "Ab", "--init", str(sheet),
                 "--set", "strength=0.5", "--set", "steps=4", "--out", str(out)]) == 0
    request = read_request(out)
    assert request.param("strength") == 0.5 and decode_init_image(request.param("init_image")).shape == (8, 16)
    again = tmp_path / "again.png"
    assert main(["render", "--models-dir", str(diff_dir), "--from", str(out), "--out", str(again)]) == 0
    with Image.open(out) as a, Image.open(again) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # the init image travels in the request
    capsys.readouterr()
    assert main(["render", "--models-dir", str(diff_dir), "--model", MODEL, "--set", "steps=0",
                 "--out", str(tmp_path / "x.png")]) != 0
    assert "--set steps: must be between 1 and 1000, got 0" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("name", SAMPLERS)
def test_gpu_sampling_matches_the_cpu(diff_dir, name):
    request = req(seed=5, prompt="Ab", sampler=name, steps=8, eta=0.0)
    with Engine(device="cpu", roots=[diff_dir]) as cpu:
        expected = cpu.render(request)
    with Engine(device="auto", roots=[diff_dir]) as gpu:
        job = gpu.submit(request, "export")
        got = job.wait(60)
        assert job.info["device"].startswith(gpu.device.type) and "fallback" not in job.info
        half = gpu.submit(request.with_(dtype="float16"), "export").wait(60)
    assert np.abs(got.data.astype(int) - expected.data.astype(int)).mean() <= 2
    assert half.data.shape == expected.data.shape and np.abs(half.data.astype(int) - expected.data.astype(int)).mean() <= 8


@pytest.mark.parametrize("name, eta", [("ddim", 1.0), ("ddpm", 0.0), ("ddim", 0.0), ("dpmpp", 0.0)])
def test_every_cell_of_a_prompt_shares_the_noise_so_the_characters_share_a_style(model, name, eta):
    out, _ = run(model, req(seed=4, prompt="AA", sampler=name, eta=eta))
    assert np.array_equal(out.data[:, :8], out.data[:, 8:])


# --- the parameters the family declares ------------------------------------------------------------------------------


def test_the_shipped_diffusion_model_declares_its_parameters():
    from pathlib import Path

    from studio.params import CONDITIONS, INIT, RAW, SAMPLER, SHAPING, Capability, Kind

    entry = resolve(str(Path(__file__).resolve().parents[2] / "models" / "glyph-diffusion"))
    assert entry.manifest.family == "diffusion"
    assert entry.capabilities == Capability.SAMPLE | Capability.ITERATE | Capability.IMG2IMG
    table = entry.parameters
    assert [(s.name, s.kind, s.default, s.group, s.count) for s in table] == [
        ("prompt", Kind.TEXT, "Latent", CONDITIONS, 0),
        ("sampler", Kind.CHOICE, "ddim", SAMPLER, 0),
        ("steps", Kind.INT, 25, SAMPLER, 0),
        ("guidance", Kind.FLOAT, 2.0, SAMPLER, 0),
        ("eta", Kind.FLOAT, 1.0, SAMPLER, 0),
        ("init_image", Kind.IMAGE, None, INIT, 0),  # none: drawn from noise
        ("strength", Kind.FLOAT, 1.0, INIT, 0),
        ("truncation", Kind.FLOAT, 1.0, SHAPING, 0),
        ("mix_seed", Kind.SEED, None, SHAPING, 0),
        ("mix_strength", Kind.FLOAT, 0.5, SHAPING, 0),
        ("variation_seed", Kind.SEED, None, SHAPING, 0),
        ("variation_strength", Kind.FLOAT, 0.0, SHAPING, 0),
        ("z", Kind.FLOAT, 0.0, RAW, 32 * 32),  # the initial noise, one value per pixel; no directions shipped
    ]
    assert table.get("sampler").choice_values() == SAMPLERS
    assert table.get("steps").range == (1, 1000) and table.get("guidance").range == (0.0, 20.0)
    assert table.get("eta").range == (0.0, 1.0) and table.get("eta").when == ("sampler", ("ddim",))
    assert table.get("strength").range == (0.01, 1.0) and table.get("strength").when == ("init_image", ())
    assert [s.name for s in table if s.render_only] == ["prompt", "sampler", "steps", "guidance", "eta", "init_image",
                                                        "strength"]
    assert table.find("d0") is None  # no principal directions in this package
    assert table.check(entry.default_request(2)) == RenderRequest("glyph-diffusion", seed=2, params={"prompt": "Latent"})
