"""The audio VAE family on a tiny seeded network: spectrogram pictures and Griffin-Lim, deterministic renders, classes,
latent edits, encoding a sound, the engine, and clear errors for bad manifests and requests
(studio.families.audio_vae); the procedural sounds it is trained on (studio.train.sounds)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import TINY_SOUNDS, finish, make_tiny_audio_package
from studio.engine.engine import Cancelled, Engine
from studio.errors import ManifestError, RequestError
from studio.families.audio_vae.family import spec_format
from studio.nets.spectrogram import SpecFormat, SpecVAE
from studio.steps import Progress
from studio.library import load_model, resolve
from studio.manifest import parse_manifest
from studio.request import RenderRequest
from studio.train import sounds

MODEL = "tiny-audio"


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio-models")
    make_tiny_audio_package(root / MODEL)
    return root


@pytest.fixture(scope="module")
def model(audio_dir):
    return load_model(resolve(str(audio_dir / MODEL)), "cpu", torch.float32)


def render(model, request: RenderRequest):
    return finish(model.family.render(model, request))[0]


def req(params: dict | None = None, **core) -> RenderRequest:
    return RenderRequest(MODEL, params=params or {}, **core)


# --- spectrograms ---------------------------------------------------------------------------------------------------


def sine(freq: float, rate: int = 8000, length: int = 1024, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * torch.pi * freq * torch.arange(length) / rate)


def test_picture_is_a_db_scale_between_floor_and_ceiling():
    fmt = SpecFormat(64, 16, 1024)
    pic = fmt.to_picture(torch.stack([sine(1000), torch.zeros(1024)]))
    assert pic.shape == (2, 1, 32, 65)
    assert float(pic[1].max()) == 0.0  # silence is the floor
    # a full-scale-ish sine peaks near its level: 0.5 amplitude → about −6 dB → (−6 + 80) / 90
    peak_row = int(pic[0, 0, :, 32].argmax())
    assert peak_row == round(1000 / (8000 / 64))
    assert float(pic[0, 0, peak_row, 32]) == pytest.approx((-6.02 + 80) / 90, abs=0.03)


def test_magnitudes_invert_the_picture_above_the_floor():
    fmt = SpecFormat(64, 16, 1024)
    wave = sine(700) + 0.1 * torch.randn(1024, generator=torch.Generator().manual_seed(0))
    mag = fmt.stft(wave[None]).abs()
    back = fmt.magnitudes(fmt.to_picture(wave[None]))
    assert back.shape == mag.shape
    loud = mag[:, :32] > 1e-2
    assert torch.allclose(back[:, :32][loud], mag[:, :32][loud], rtol=1e-3)
    assert float(back[:, 32].abs().max()) == 0.0  # the Nyquist bin is dropped


def test_griffin_lim_recovers_a_consistent_phase():
    fmt = SpecFormat(64, 16, 1024)
    wave = sine(440) + 0.5 * sine(1230)
    mag = fmt.magnitudes(fmt.to_picture(wave[None]))

    def convergence(iterations: int) -> float:
        rebuilt = fmt.stft(fmt.to_wave(fmt.to_picture(wave[None]), iterations)).abs()
        return float((rebuilt - mag).norm() / mag.norm())

    assert convergence(48) < 0.5 * convergence(1)
    again = fmt.to_wave(fmt.to_picture(wave[None]), 8)
    assert torch.equal(again, fmt.to_wave(fmt.to_picture(wave[None]), 8))  # a fixed start phase


def test_finished_waves_fade_out_and_never_clip():
    from studio.nets.spectrogram import finish_waves

    waves = torch.stack([torch.full((1000,), 0.5), torch.full((1000,), -2.0)])
    done = finish_waves(waves, 8000)  # a 10 ms fade: 80 samples
    assert torch.equal(done[0, :920], waves[0, :920]) and float(done[0, -1]) == 0.0
    assert float(done[0, -40]) == pytest.approx(0.5 * 39 / 79, rel=1e-5)
    assert float(done[1].abs().max()) == pytest.approx(0.99)


def test_odd_frequency_bins_are_refused():
    with pytest.raises(ValueError, match="n_fft"):
        SpecFormat(63, 16, 1024)
    with pytest.raises(ValueError, match="halve"):
        SpecVAE(bins=24, frames=65, levels=4)


# --- rendering ------------------------------------------------------------------------------------------------------


def test_render_is_a_deterministic_mono_sound_of_the_manifest_length(model):
    out = render(model, req(seed=3))
    assert out.kind == "audio" and out.data.dtype == np.float32 and out.data.shape == (1024, 1)
    assert out.info["sample_rate"] == 8000 and out.info["class"] == "snare"  # the manifest's default class
    assert np.isfinite(out.data).all() and np.abs(out.data).max() <= 0.99 + 1e-6
    assert out.data[-1, 0] == 0  # faded out: no click at the end
    assert np.array_equal(out.data, render(model, req(seed=3)).data)
    assert not np.array_equal(out.data, render(model, req(seed=4)).data)


def test_the_class_changes_the_sound_and_unknown_classes_are_named(model):
    kick = render(model, req({"label": "kick"}, seed=1)).data
    pad = render(model, req({"label": "pad"}, seed=1)).data
    assert not np.array_equal(kick, pad)
    with pytest.raises(RequestError, match="kick, snare, pad, got 'cowbell'") as info:
        render(model, req({"label": "cowbell"}))
    assert info.value.field == "params.label"
    with pytest.raises(RequestError, match="no parameter 'prompt' .*it takes: label") as info:  # a class, not a text
        render(model, req({"prompt": "Ab"}))
    assert info.value.field == "params.prompt"


def test_every_griffin_lim_iteration_is_a_cancel_point(model):
    _, seen = finish(model.family.render(model, req(seed=0)))
    assert all(isinstance(p, Progress) for p in seen)
    assert len(seen) == 1 + 8 and seen[-1].step == seen[-1].total == 9


def test_latent_edits_morph_the_timbre(model):
    base = render(model, req(seed=2)).data
    moved = render(model, req({"d0": 2.0}, seed=2)).data
    varied = render(model, req({"variation_seed": 9, "variation_strength": 0.3}, seed=2)).data
    assert not np.array_equal(base, moved) and not np.array_equal(base, varied)
    z = model.family.latent(model, req({"d0": 2.0}, seed=2))
    explicit = render(model, req(latent=tuple(float(v) for v in z))).data
    assert np.array_equal(explicit, moved)  # a saved latent renders the same sound


def test_encode_returns_the_posterior_mean_in_the_artists_space(model):
    wave = sounds.synthesize("kick", 0, 8000, 1024)
    wave = wave[int(np.argmax(np.abs(wave) > 0.01 * np.abs(wave).max())):]  # from its onset: nothing to skip
    z = model.family.encode(model, wave, ["kick"])
    assert z.shape == (4,) and z.dtype == torch.float32
    net = model.network
    padded = torch.nn.functional.pad(torch.from_numpy(wave), (0, 1024 - len(wave)))
    mu, _ = net.encode(spec_format(model.manifest).to_picture(padded[None]), torch.tensor([0]))
    assert torch.allclose(net.from_prior(z[None]), mu, atol=1e-5)
    shorter = model.family.encode(model, wave[:600], ["kick"])  # padded with silence to the model's length
    late = np.concatenate([np.zeros(300, np.float32), wave])  # a recording that starts with silence
    assert torch.allclose(model.family.encode(model, late, ["kick"]),
                          model.family.encode(model, np.concatenate([np.zeros(16, np.float32), wave]), ["kick"]),
                          atol=1e-5)  # read from 2 ms (16 samples at 8 kHz) before the onset
    assert shorter.shape == (4,)
    assert not torch.equal(model.family.encode(model, wave, ["pad"]), z)
    with pytest.raises(RequestError, match="empty"):
        model.family.encode(model, np.zeros(0, np.float32), ["kick"])
    with pytest.raises(RequestError, match="one class"):
        model.family.encode(model, wave, ["kick", "pad"])


def test_the_engine_renders_and_cancels_sounds(audio_dir):
    with Engine(device="cpu", roots=[audio_dir]) as engine:
        out = engine.render(RenderRequest(MODEL, seed=5, params={"label": "kick"}))
        assert out.kind == "audio" and out.data.shape == (1024, 1)
        job = engine.submit(RenderRequest(MODEL, seed=6))
        job.cancel()
        with pytest.raises(Cancelled):
            job.wait(10)


@pytest.mark.gpu
def test_renders_on_the_accelerator_match_the_cpu(audio_dir):
    device = "cuda" if torch.cuda.is_available() else "mps"
    cpu = load_model(resolve(str(audio_dir / MODEL)), "cpu")
    gpu = load_model(resolve(str(audio_dir / MODEL)), device)
    a, b = render(cpu, req(seed=1)).data, render(gpu, req(seed=1)).data
    assert np.abs(a - b).max() < 1e-2


# --- manifests --------------------------------------------------------------------------------------------------------


def manifest_dict(audio_dir) -> dict:
    from studio.manifest import read_toml

    return read_toml(audio_dir / MODEL / "model.toml")


@pytest.mark.parametrize("change, field", [
    (lambda m: m["conditions"].update(kind="none"), "conditions.kind"),
    (lambda m: m["output"].update(channels=2), "output.channels"),
    (lambda m: m["architecture"].update(n_fft=63), "architecture"),
    (lambda m: m["architecture"].update(levels=9), "architecture"),
    (lambda m: m["architecture"].update(griffin_lim_iterations=0), "architecture.griffin_lim_iterations"),
    (lambda m: m["output"].update(kind="image", width=8, height=8), "output.kind"),
])
def test_a_wrong_manifest_names_the_field(audio_dir, change, field):
    data = copy.deepcopy(manifest_dict(audio_dir))
    if "kind" in data["output"] and field == "output.kind":
        data["output"] = {"kind": "image", "width": 8, "height": 8, "channels": 1}
    else:
        change(data)
    manifest = parse_manifest(data, audio_dir / MODEL / "model.toml")
    from studio.families import get_family

    with pytest.raises(ManifestError) as info:
        get_family("audio-vae").validate(manifest)
    assert info.value.field == field


# --- the procedural sounds ----------------------------------------------------------------------------------------


def test_sounds_are_deterministic_distinct_and_in_range():
    a = sounds.synthesize("pluck", 7)
    assert a.dtype == np.float32 and a.shape == (sounds.LENGTH,)
    assert np.array_equal(a, sounds.synthesize("pluck", 7))
    assert not np.array_equal(a, sounds.synthesize("pluck", 8))
    waves, labels = sounds.sound_set(2, first_seed=100)
    assert waves.shape == (2 * len(sounds.KINDS), sounds.LENGTH)
    assert list(labels[:4]) == [0, 0, 1, 1]
    peaks = np.abs(waves).max(1)
    assert (peaks >= 0.3 - 1e-3).all() and (peaks <= 0.95 + 1e-3).all()
    assert np.abs(waves[:, -1]).max() == 0 and np.abs(waves[:, -5:]).max() < 0.02  # faded out: no click at the cut
    with pytest.raises(ValueError, match="unknown sound kind"):
        sounds.synthesize("cowbell", 0)


def test_drums_decay_and_pads_sustain():
    def tail_share(kind):
        x = np.stack([sounds.synthesize(kind, s) for s in range(5)]) ** 2
        return float(x[:, len(x[0]) // 2:].sum() / x.sum())

    assert tail_share("hat") < 0.01 and tail_share("kick") < 0.2
    assert tail_share("pad") > 0.3


def test_tonal_sounds_are_pitched_where_their_class_plays():
    rate = sounds.SAMPLE_RATE
    for kind, lo, hi in (("bass", 35, 400), ("bell", 300, 5000)):
        x = sounds.synthesize(kind, 3)
        spec = np.abs(np.fft.rfft(x))
        peak = np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()]
        assert lo < peak < hi, (kind, peak)


def test_tiny_classes_are_real_kinds():
    assert set(TINY_SOUNDS) <= set(sounds.KINDS)


def test_a_prior_fitted_per_class_samples_each_class_where_its_sounds_lie():
    net = SpecVAE(bins=32, frames=65, latent_dim=3, num_classes=2, width=4, levels=2, max_width=8, class_dim=4,
                  hidden=16, fitted_prior=True, class_prior=True)
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0, 0], [-5.0, 2, 0]])
    spreads = torch.tensor([[1.0, 0.5, 0.1], [0.2, 2.0, 0.3]])
    labels = torch.arange(2).repeat_interleave(400)
    z = centres[labels] + torch.randn(800, 3, generator=gen) * spreads[labels]
    net.fit_prior(z, labels)
    assert torch.allclose(net.from_prior(net.to_prior(z, labels), labels), z, atol=1e-4)
    w = torch.randn(4000, 3, generator=gen)
    for c in range(2):
        samples = net.from_prior(w, torch.full((4000,), c))
        assert torch.allclose(samples.mean(0), centres[c], atol=0.15)
        assert torch.allclose(samples.std(0), spreads[c], rtol=0.15, atol=0.03)
    with pytest.raises(ValueError, match="per class"):
        net.from_prior(w)
    with pytest.raises(ValueError, match="of class 1"):
        net.fit_prior(z[:402], labels[:402])


def test_fitted_prior_buffers_are_not_checkpointed(tmp_path):
    from studio.train.common import Checkpoint
    from studio.train.recipe import Recipe

    net = SpecVAE(bins=32, frames=65, latent_dim=3, num_classes=2, width=4, levels=2, max_width=8, class_dim=4,
                  hidden=16, fitted_prior=True, class_prior=True)
    recipe = Recipe(tmp_path / "r.toml", "sound-vae", {}, {}, {}, {}, {}, "[train]\nsteps = 1\n")
    ckpt = Checkpoint(tmp_path / "c.safetensors", recipe, {"net": net}, {}, torch.Generator())
    ckpt.save(1)
    from studio.io.weights import read_tensors

    assert not any("prior_" in k for k in read_tensors(ckpt.path))
    net.prior_mean.fill_(3.0)
    assert ckpt.load() == 1 and float(net.prior_mean.max()) == 3.0  # fitted values are left as they are


def test_a_bfloat16_render_is_close_to_the_float32_one(audio_dir):
    with Engine(device="cpu", roots=[audio_dir]) as engine:
        full = engine.render(RenderRequest(MODEL, seed=2, params={"label": "pad"}))
        half = engine.render(RenderRequest(MODEL, seed=2, dtype="bfloat16", params={"label": "pad"}))
    assert half.data.dtype == np.float32 and half.data.shape == full.data.shape and np.isfinite(half.data).all()
    spec = lambda x: np.abs(np.fft.rfft(x[:, 0]))  # noqa: E731  (the phase search may differ; the spectrum not much)
    assert np.corrcoef(spec(full.data), spec(half.data))[0, 1] > 0.9


# --- the parameters the family declares ------------------------------------------------------------------------------


def test_the_shipped_sound_model_declares_its_parameters():
    from pathlib import Path

    from studio.params import CONDITIONS, DIRECTIONS, RAW, SHAPING, Capability, Kind

    entry = resolve(str(Path(__file__).resolve().parents[2] / "models" / "one-shots"))
    assert entry.manifest.family == "audio-vae"
    assert entry.capabilities == Capability.SAMPLE | Capability.ENCODE | Capability.DECODE
    table = entry.parameters
    assert [(s.name, s.kind, s.default, s.group, s.count) for s in table] == [
        ("label", Kind.CHOICE, "kick", CONDITIONS, 0),  # a class, not a text prompt
        ("truncation", Kind.FLOAT, 1.0, SHAPING, 0),
        ("mix_seed", Kind.SEED, None, SHAPING, 0),
        ("mix_strength", Kind.FLOAT, 0.5, SHAPING, 0),
        ("variation_seed", Kind.SEED, None, SHAPING, 0),
        ("variation_strength", Kind.FLOAT, 0.0, SHAPING, 0),
        ("d", Kind.FLOAT, 0.0, DIRECTIONS, 16),
        ("z", Kind.FLOAT, 0.0, RAW, 16),
    ]
    assert table.get("label").choice_values() == ("kick", "snare", "hat", "open-hat", "tom", "clap", "pluck", "bass",
                                                  "bell", "pad")
    assert [s.name for s in table if s.render_only] == ["label"]
    assert table.get("mix_strength").when == ("mix_seed", ())
    assert table.find("prompt") is None
    assert table.check(entry.default_request(4)) == RenderRequest("one-shots", seed=4, params={"label": "kick"})
