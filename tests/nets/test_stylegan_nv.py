"""Our pure-PyTorch StyleGAN generators against the outputs NVIDIA's own code gives for two tiny
generators (tests/fixtures/stylegan/, copied from the shared fixtures; README.md there says what each
file is). Tolerance: 1e-4 of the reference's largest magnitude, as issue 19 asks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from studio.nets.stylegan_nv import StyleGAN2Generator, StyleGAN3Generator, z_from_seed

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stylegan"
CASES = [(s, p) for s in (0, 1, 2) for p in (1.0, 0.7)]
CLASSES = {"sg2_uncond": StyleGAN2Generator, "sg3t": StyleGAN3Generator}


def build(name: str) -> torch.nn.Module:
    kwargs = json.loads((FIX / f"{name}.init_kwargs.json").read_text())["init_kwargs"]
    g = CLASSES[name](**kwargs).eval()
    g.load_state_dict(load_file(FIX / f"{name}.G_ema.safetensors"), strict=True)
    return g


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(ours.detach().float().cpu().numpy() - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module", params=sorted(CLASSES))
def model(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, dict[str, np.ndarray]]:
    ref = np.load(FIX / f"{request.param}.reference.npz")
    return request.param, build(request.param), {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("seed,psi", CASES)
def test_matches_nvidia_reference(model, seed: int, psi: float) -> None:
    name, g, ref = model
    z = z_from_seed(seed, g.z_dim)
    np.testing.assert_array_equal(np.random.RandomState(seed).randn(1, g.z_dim), ref[f"z_seed{seed}"])
    with torch.no_grad():
        w = g.mapping(z, None, truncation_psi=psi)
        img = g.synthesis(w, noise_mode="const")
        img_full = g(z, None, truncation_psi=psi, noise_mode="const")
    assert rel_err(w, ref[f"w_seed{seed}_psi{psi:.1f}"]) <= 1e-4, name
    assert rel_err(img, ref[f"img_seed{seed}_psi{psi:.1f}"]) <= 1e-4, name
    assert torch.equal(img, img_full)


def test_truncation_cutoff_and_psi_zero_give_w_avg(model) -> None:
    _, g, _ = model
    z = z_from_seed(5, g.z_dim)
    with torch.no_grad():
        w = g.mapping(z, None, truncation_psi=0.0, truncation_cutoff=2)
        free = g.mapping(z, None)
    assert torch.allclose(w[0, :2], g.mapping.w_avg.expand(2, -1))
    assert torch.equal(w[0, 2:], free[0, 2:])
    assert not torch.allclose(free[0, 0], g.mapping.w_avg)


def test_sg2_noise_modes_differ_and_random_is_seeded() -> None:
    g = build("sg2_uncond")
    z = z_from_seed(0, g.z_dim)
    with torch.no_grad():
        ws = g.mapping(z, None)
        const = g.synthesis(ws, noise_mode="const")
        none = g.synthesis(ws, noise_mode="none")
        r1 = g.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(3))
        r2 = g.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(r1, r2)
    assert (const - none).abs().max() > 1e-3 and (r1 - const).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(ws, noise_mode="loud")


def test_wrong_state_names_are_refused() -> None:
    g = StyleGAN2Generator(**json.loads((FIX / "sg2_uncond.init_kwargs.json").read_text())["init_kwargs"])
    state = load_file(FIX / "sg2_uncond.G_ema.safetensors")
    state["synthesis.b4.conv9.weight"] = state.pop("synthesis.b4.conv1.weight")
    with pytest.raises(RuntimeError, match="conv1.weight"):
        g.load_state_dict(state, strict=True)


def test_lowpass_filters_match_scipy_designs() -> None:
    """Our Kaiser (firwin) and radial jinc designs against scipy's, for StyleGAN3-T and -R layers."""
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    from studio.nets.stylegan_nv import design_lowpass_filter

    for numtaps, cutoff, width, fs in [(12, 2.0, 6.4, 16), (24, 11.3, 9.4, 64), (12, 16.0, 3.2, 64)]:
        ours = design_lowpass_filter(numtaps, cutoff, width, fs)
        ref = signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        assert ours is not None and np.abs(ours.numpy() - ref).max() < 1e-6
        x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        f = special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        beta = signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2)))
        f *= np.outer(np.kaiser(numtaps, beta), np.kaiser(numtaps, beta))
        f /= f.sum()
        radial = design_lowpass_filter(numtaps, cutoff, width, fs, radial=True)
        assert radial is not None and radial.shape == (numtaps, numtaps)
        assert np.abs(radial.numpy() - f).max() < 1e-6
    assert design_lowpass_filter(1, 2.0, 1.0, 16) is None


def test_stylegan3_r_config_builds_radial_layers_and_renders() -> None:
    """StyleGAN3-R differs from T by conv_kernel 1 and radial down filters (no fixture: shapes and sanity)."""
    torch.manual_seed(0)
    g = StyleGAN3Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                           channel_base=2048, channel_max=32, conv_kernel=1, use_radial_filters=True,
                           mapping_kwargs={"num_layers": 2}).eval()
    names = g.synthesis.layer_names
    radial = [n for n in names if getattr(g.synthesis, n).down_filter is not None
              and getattr(g.synthesis, n).down_filter.ndim == 2]
    critical = names[-3:]  # the two critically sampled layers and ToRGB keep separable / no filters
    assert radial and not set(radial) & set(critical)
    assert all(getattr(g.synthesis, n).weight.shape[-1] == 1 for n in names)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_()
        img = g(z_from_seed(0, 16), None, truncation_psi=1.0)
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all() and img.std() > 0


def test_input_transform_moves_the_stylegan3_picture() -> None:
    g = build("sg3t")
    z = z_from_seed(1, g.z_dim)
    with torch.no_grad():
        base = g(z, None)
        g.set_input_transform(translate=(0.0, 0.0), rotate_deg=0.0)
        same = g(z, None)
        g.set_input_transform(translate=(0.25, 0.0), rotate_deg=10.0)
        moved = g(z, None)
        g.set_input_transform()
    assert torch.allclose(base, same, atol=1e-6)
    assert (moved - base).abs().max() > 1e-2


def test_stylegan2_ada_layout_and_architectures() -> None:
    """stylegan2-ada-pytorch nests synthesis kwargs and has no conv clamp by default; orig/resnet build."""
    from studio.nets.stylegan_nv import build_nvidia_generator

    kwargs = json.loads((FIX / "sg2_uncond.init_kwargs.json").read_text())["init_kwargs"]
    ada = {k: kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")}
    ada["synthesis_kwargs"] = {"channel_base": 1024, "channel_max": 64}
    g = build_nvidia_generator("Generator", (), ada, load_file(FIX / "sg2_uncond.G_ema.safetensors"))
    assert g.synthesis.b32.conv1.conv_clamp is None
    ref = np.load(FIX / "sg2_uncond.reference.npz")
    with torch.no_grad():  # the reference never reaches the ±256 clamp, so the pictures agree
        img = g(z_from_seed(1, 64), None, truncation_psi=0.7, noise_mode="const")
    assert rel_err(img, ref["img_seed1_psi0.7"]) <= 1e-4
    for arch in ("orig", "resnet"):
        torch.manual_seed(1)
        a = StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
                               channel_max=16, architecture=arch, mapping_kwargs={"num_layers": 2}).eval()
        with torch.no_grad():
            for p in a.parameters():
                p.normal_()
            out = a(z_from_seed(0, 8), None, noise_mode="none")
        assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()
        assert hasattr(a.synthesis.b8, "skip") == (arch == "resnet")
        assert not hasattr(a.synthesis.b8, "torgb") and hasattr(a.synthesis.b16, "torgb")


@pytest.mark.parametrize("cls", [StyleGAN2Generator, StyleGAN3Generator])
def test_conditional_mapping_uses_the_class_label(cls: type) -> None:
    torch.manual_seed(2)
    extra = {"channel_base": 256, "channel_max": 16} if cls is StyleGAN2Generator else {
        "channel_base": 512, "channel_max": 16}
    g = cls(z_dim=8, c_dim=4, w_dim=8, img_resolution=16, img_channels=3,
            mapping_kwargs={"num_layers": 2, "lr_multiplier": 1.0}, **extra).eval()
    assert "mapping.embed.weight" in g.state_dict()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_()
        z = z_from_seed(0, 8)
        w0 = g.mapping(z, torch.eye(4)[:1])
        w1 = g.mapping(z, torch.eye(4)[1:2])
        assert (w0 - w1).abs().max() > 1e-2 * w0.abs().max()
        with pytest.raises(ValueError, match="class label"):
            g.mapping(z, None)
