"""Projection of a picture into w / w+ (studio.nets.stylegan_projection) on the tiny NVIDIA fixture generators
(tests/fixtures/stylegan/) and a small class-conditional StyleGAN2 with seeded random weights.

The recovery margin comes from measurement: on the StyleGAN2 fixture, pictures of seeds 0–2, 100 steps, the result's
mean squared error against the target was 0.047–0.090 of the mean style's (w and w+); the test asks for < 0.25."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from studio.nets.stylegan_nv import StyleGAN2Generator, StyleGAN3Generator, z_from_seed
from studio.nets.stylegan_projection import prepare_target, project
from studio.steps import Progress, run_steps

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stylegan"
CLASSES = {"sg2_uncond": StyleGAN2Generator, "sg3t": StyleGAN3Generator}
MARGIN = 0.25  # measured 0.047–0.090 (see the module docstring)


def build(name: str, inference: bool = False) -> torch.nn.Module:
    kwargs = json.loads((FIX / f"{name}.init_kwargs.json").read_text())["init_kwargs"]
    with torch.inference_mode(inference):
        g = CLASSES[name](**kwargs).eval()
        g.load_state_dict(load_file(FIX / f"{name}.G_ema.safetensors"), strict=True)
    return g


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are tiny: a second torch thread only adds contention on a shared machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def g2() -> torch.nn.Module:
    return build("sg2_uncond", inference=True)  # as the engine holds it: inference tensors


def to_u8(img: torch.Tensor) -> np.ndarray:
    """As NVIDIA's gen_images.py writes a picture."""
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def render(g, ws: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return to_u8(g.synthesis(ws, noise_mode="const"))


def as_ws(g, latent: torch.Tensor) -> torch.Tensor:
    return latent[None, None].expand(1, g.num_ws, -1) if latent.ndim == 1 else latent[None]


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())


@pytest.mark.parametrize("mode", ["w", "w+"])
def test_projection_recovers_a_rendered_picture(g2, mode: str) -> None:
    with torch.inference_mode():
        target = render(g2, g2.mapping(z_from_seed(2, g2.z_dim), None))
    mean_style = render(g2, g2.mapping.w_avg[None, None].expand(1, g2.num_ws, -1))
    before = {k: v.clone() for k, v in g2.state_dict().items()}
    latent = run_steps(project(g2, target, steps=100, mode=mode, w_avg_samples=2000))
    assert latent.dtype == torch.float32 and latent.device.type == "cpu" and not latent.requires_grad
    assert latent.shape == ((g2.w_dim,) if mode == "w" else (g2.num_ws, g2.w_dim))
    if mode == "w+":
        assert not torch.equal(latent[0], latent[-1])  # refined per layer
    got = render(g2, as_ws(g2, latent))
    assert mse(got, target) < MARGIN * mse(mean_style, target)
    assert all(torch.equal(v, before[k]) for k, v in g2.state_dict().items())  # G itself untouched


def test_progress_every_step_and_same_seed_same_latent(g2) -> None:
    picture = np.full((40, 50, 3), 90, np.uint8)
    steps = project(g2, picture, steps=6, mode="w+", w_avg_samples=200, seed=4)
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            first = stop.value
            break
    assert all(isinstance(p, Progress) and p.total == 6 for p in seen)
    assert [p.step for p in seen] == [0, 1, 2, 3, 4, 5, 6] and "w+" in seen[-1].message
    again = run_steps(project(g2, picture, steps=6, mode="w+", w_avg_samples=200, seed=4))
    assert torch.equal(first, again)
    other = run_steps(project(g2, picture, steps=6, mode="w+", w_avg_samples=200, seed=5))
    assert not torch.equal(first, other)


def test_close_stops_the_work(g2) -> None:
    calls = []
    handle = g2.synthesis.register_forward_hook(lambda *_: calls.append(1))  # the private copy keeps the hook
    try:
        steps = project(g2, np.zeros((32, 32, 3), np.uint8), steps=50, w_avg_samples=100)
        for _ in range(4):
            next(steps)
        assert len(calls) == 3
        steps.close()
        with pytest.raises(StopIteration):
            next(steps)
        assert len(calls) == 3
    finally:
        handle.remove()


def test_optimised_noise_as_nvidia_does_leaves_g_alone(g2) -> None:
    before = {k: v.clone() for k, v in g2.state_dict().items()}
    latent = run_steps(project(g2, np.zeros((32, 32, 3), np.uint8), steps=4, mode="w", w_avg_samples=100,
                               optimise_noise=True))
    assert latent.shape == (g2.w_dim,) and torch.isfinite(latent).all()
    assert all(torch.equal(v, before[k]) for k, v in g2.state_dict().items())


def test_stylegan3_w_plus_shape() -> None:
    g3 = build("sg3t")
    latent = run_steps(project(g3, np.zeros((16, 16), np.uint8), steps=2, mode="w+", w_avg_samples=100))
    assert latent.shape == (g3.num_ws, g3.w_dim) and torch.isfinite(latent).all()


def test_class_conditional_takes_its_class() -> None:
    torch.manual_seed(0)
    g = StyleGAN2Generator(z_dim=16, c_dim=3, w_dim=16, img_resolution=8, img_channels=3,
                           mapping_kwargs={"num_layers": 2}, channel_base=64, channel_max=16).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.5)
    picture = np.random.RandomState(0).randint(0, 255, (8, 8, 3)).astype(np.uint8)
    one = run_steps(project(g, picture, steps=3, mode="w", c=torch.eye(3)[0], w_avg_samples=50))
    two = run_steps(project(g, picture, steps=3, mode="w", c=torch.eye(3)[1:2], w_avg_samples=50))
    assert one.shape == (16,) and not torch.allclose(one, two)
    with pytest.raises(ValueError, match="class-conditional"):
        run_steps(project(g, picture, steps=1))
    with pytest.raises(ValueError, match="unconditional"):
        run_steps(project(build("sg2_uncond"), picture, steps=1, c=torch.ones(3)))


def test_prepare_target_sizes_and_channels() -> None:
    rgb = np.random.RandomState(1).randint(0, 256, (48, 64, 3)).astype(np.uint8)
    t = prepare_target(rgb, 32, 3)
    assert t.shape == (1, 3, 32, 32) and t.dtype == torch.float32 and -1 <= float(t.min()) <= float(t.max()) <= 1
    assert torch.allclose(prepare_target(rgb.astype(np.float32) / 255, 32, 3), t, atol=1e-6)
    assert torch.equal(prepare_target(rgb[:, 8:56], 32, 3), t)  # the centre square of a wide picture
    rgba = np.concatenate([rgb, np.zeros((48, 64, 1), np.uint8)], axis=2)
    assert torch.equal(prepare_target(rgba, 32, 3), t)  # alpha dropped
    grey = prepare_target(rgb[:, :, 0], 32, 3)
    assert torch.equal(grey[0, 0], grey[0, 2])
    assert prepare_target(rgb, 32, 1).shape == (1, 1, 32, 32)
    assert torch.equal(prepare_target(np.full((4, 4, 3), 255, np.uint8), 16, 3), torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="channels"):
        prepare_target(np.zeros((4, 4, 5), np.uint8), 8, 3)
    with pytest.raises(ValueError, match="uint8 or float"):
        prepare_target(np.zeros((4, 4, 3), np.int64), 8, 3)
    with pytest.raises(ValueError, match="NaN"):
        prepare_target(np.full((4, 4, 3), np.nan, np.float32), 8, 3)
    with pytest.raises(ValueError, match="mode"):
        run_steps(project(StyleGAN2Generator(8, 0, 8, 8, 3, channel_base=32, channel_max=8), rgb, mode="z"))


def test_half_precision_inference_generator_projects_in_float32() -> None:
    """The engine's copy may be float16 and made of inference tensors: the projection works on its own float32
    copy and leaves that one as it was."""
    with torch.inference_mode():
        g = build("sg2_uncond", inference=True).half()
    assert next(g.parameters()).dtype == torch.float16 and next(g.parameters()).is_inference()
    latent = run_steps(project(g, np.zeros((32, 32, 3), np.uint8), steps=3, mode="w+", w_avg_samples=100))
    assert latent.dtype == torch.float32 and latent.shape == (g.num_ws, g.w_dim) and torch.isfinite(latent).all()
    assert next(g.parameters()).dtype == torch.float16
