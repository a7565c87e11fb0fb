"""NVIDIA's mixed precision in our StyleGAN generators: the layers flagged `use_fp16` (the last `num_fp16_res`
resolutions) compute in float16 where NVIDIA's code does (CUDA), in float32 elsewhere.

The float16 path is checked on the CPU too, by letting it run there (FP16_DEVICE_TYPES), against the float32
outputs of NVIDIA's code in tests/fixtures/stylegan/. Measured (CPU float16, seeds 0–2, ψ 1 and 0.7): largest error
6e-4–9e-4 of the reference's largest magnitude for sg2_uncond, 9e-4–3.3e-3 for sg3t; the tolerance is 1e-2 (the
float32 path stays within 1e-4, tests/nets/test_stylegan_nv.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import studio.nets.stylegan_nv as nv
from test_stylegan_nv import CASES, CLASSES, FIX, build, rel_err  # the fixtures, loaded as the float32 tests do

FP16_TOLERANCE = 1e-2


def half_layers(g: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in g.synthesis.modules() if getattr(m, "use_fp16", False)]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_fp16_layers_are_nvidias_and_run_in_float32_on_the_cpu(name: str) -> None:
    g = build(name)
    assert half_layers(g)  # the fixtures use NVIDIA's default num_fp16_res 4
    assert nv.compute_dtype(True, torch.device("cpu")) == torch.float32
    assert nv.compute_dtype(True, torch.device("cuda")) == torch.float16
    assert nv.compute_dtype(False, torch.device("cuda")) == torch.float32


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_float16_path_matches_nvidia_within_tolerance(name: str, monkeypatch) -> None:
    g = build(name)
    ref = np.load(FIX / f"{name}.reference.npz")
    monkeypatch.setattr(nv, "FP16_DEVICE_TYPES", frozenset({"cpu"}))
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out[0].dtype if isinstance(out, tuple)
                                                                   else out.dtype)) for m in half_layers(g)]
    errors = []
    for seed, psi in CASES:
        with torch.no_grad():
            img = g(nv.z_from_seed(seed, g.z_dim), None, truncation_psi=psi, noise_mode="const")
        assert img.dtype == torch.float32
        errors.append(rel_err(img, ref[f"img_seed{seed}_psi{psi:.1f}"]))
    for h in hooks:
        h.remove()
    assert torch.float16 in seen  # the flagged layers really computed in float16
    assert max(errors) <= FP16_TOLERANCE, errors
    assert min(errors) > 1e-5, errors  # and it shows: not the float32 path


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_gpu_render_matches_nvidia(name: str) -> None:
    """On CUDA in float16 where NVIDIA uses it (tolerance 1e-2); on MPS in float32 (1e-3: GPU reductions)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "mps")
    g = build(name).to(device)
    ref = np.load(FIX / f"{name}.reference.npz")
    tolerance = FP16_TOLERANCE if device.type in nv.FP16_DEVICE_TYPES else 1e-3
    for seed, psi in CASES:
        with torch.inference_mode():
            img = g(nv.z_from_seed(seed, g.z_dim).to(device), None, truncation_psi=psi, noise_mode="const")
        assert img.dtype == torch.float32 and img.device.type == device.type
        assert rel_err(img, ref[f"img_seed{seed}_psi{psi:.1f}"]) <= tolerance, (seed, psi)
