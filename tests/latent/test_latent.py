"""Latent math: seeded priors, slerp, principal directions and named edits (studio.latent)."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys

import pytest
import torch

from studio.latent.directions import Directions, principal_directions
from studio.latent.edits import apply_edits, indexed_edit
from studio.latent.seeds import MAX_SEED, lerp, mix, sample_prior, slerp, variation


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


# --- sample_prior -----------------------------------------------------------------------------------------------


def test_sample_prior_same_seed_is_bit_identical_and_float32_cpu():
    a = sample_prior(1234, (3, 5))
    b = sample_prior(1234, (3, 5))
    assert a.dtype == torch.float32 and a.device.type == "cpu" and a.shape == (3, 5)
    assert _digest(a) == _digest(b)
    assert torch.equal(a, b)


def test_sample_prior_is_identical_in_a_fresh_process(repo_root):
    here = _digest(sample_prior(987654321, (64,)))
    code = ("import hashlib\nfrom studio.latent.seeds import sample_prior\n"
            "t = sample_prior(987654321, (64,))\n"
            "print(hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == here


def test_sample_prior_does_not_touch_the_global_rng():
    torch.manual_seed(7)
    before = torch.random.get_rng_state().clone()
    sample_prior(5, (100,))
    sample_prior(6, (4, 4), batch=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    # and the global stream is not consumed: the next global draw equals a fresh one from seed 7
    after_draw = torch.randn(3)
    torch.manual_seed(7)
    assert torch.equal(after_draw, torch.randn(3))


def test_sample_prior_seeds_differ_and_batch_shape():
    a, b = sample_prior(0, (32,)), sample_prior(1, (32,))
    assert not torch.equal(a, b)
    batch = sample_prior(3, (8,), batch=4)
    assert batch.shape == (4, 8)
    assert not torch.equal(batch[0], batch[1])


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, -(2**70)])
def test_sample_prior_out_of_range_seed_raises(seed):
    with pytest.raises(ValueError, match="seed"):
        sample_prior(seed, (4,))


def test_sample_prior_extreme_valid_seeds_and_unknown_prior():
    assert sample_prior(0, (2,)).shape == (2,)
    assert sample_prior(MAX_SEED, (2,)).shape == (2,)
    with pytest.raises(ValueError, match="prior"):
        sample_prior(0, (2,), prior="uniform")


# --- slerp ------------------------------------------------------------------------------------------------------


def test_slerp_endpoints_are_exact():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)
    assert torch.equal(slerp(a, b, 0), a)
    assert torch.equal(slerp(a, b, 1), b)


def test_slerp_keeps_gaussian_norm_where_lerp_does_not():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(512, generator=g), torch.randn(512, generator=g)
    ends = (a.norm() + b.norm()) / 2
    mid = slerp(a, b, 0.5)
    assert abs(float(mid.norm() / ends) - 1.0) < 0.03
    lmid = lerp(a, b, 0.5)
    ratio = float(lmid.norm() / ends)
    assert 0.6 < ratio < 0.8  # ~1/sqrt(2) for independent Gaussians
    # the slerp path stays on the sphere all the way
    for t in (0.1, 0.25, 0.75, 0.9):
        assert abs(float(slerp(a, b, t).norm() / ends) - 1.0) < 0.03


def test_slerp_midpoint_direction_bisects_the_angle():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 2.0, 0.0])
    mid = slerp(a, b, 0.5)
    # direction halfway on the arc, norm halfway between 1 and 2
    expected = torch.tensor([1.0, 1.0, 0.0]) / 2**0.5 * 1.5
    assert torch.allclose(mid, expected, atol=1e-6)


@pytest.mark.parametrize("delta", [0.0, 1e-9, 1e-6])
def test_slerp_nearly_parallel_inputs_are_finite(delta):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(64, generator=g)
    b = a * (1 + delta) + delta
    for t in (0.3, 0.5, 0.7):
        out = slerp(a, b, t)
        assert torch.isfinite(out).all()
        assert torch.allclose(out, a, atol=1e-4, rtol=1e-4)


def test_slerp_batched_rows_match_single_rows():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(5, 32, generator=g), torch.randn(5, 32, generator=g)
    b[2] = a[2]  # one parallel row must not disturb the others
    out = slerp(a, b, 0.4)
    assert out.shape == (5, 32)
    for i in range(5):
        assert torch.allclose(out[i], slerp(a[i], b[i], 0.4), atol=1e-6)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[2], a[2], atol=1e-5)


# --- principal directions ---------------------------------------------------------------------------------------


def _anisotropic(n=4000, seed=0):
    """Gaussian data with stds (3, 1, 0.5, 0.2) along a known random rotation, plus an offset mean."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    stds = torch.tensor([3.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    x = (torch.randn(n, 4, generator=g, dtype=torch.float64) * stds) @ q.T + torch.tensor([1.0, -2.0, 0.5, 3.0],
                                                                                             dtype=torch.float64)
    return x.float(), q.T.float(), stds.float()  # rows of q.T are the axes


def test_principal_directions_recover_axes_and_spread():
    x, axes, stds = _anisotropic()
    d = principal_directions(x)
    assert len(d) == 4 and d.vectors.shape == (4, 4)
    assert abs(float(d.vectors[0] @ axes[0])) > 0.99
    assert abs(float(d.vectors[1] @ axes[1])) > 0.99
    assert torch.allclose(d.stds, stds, rtol=0.06)
    assert torch.all(d.stds[:-1] >= d.stds[1:])  # ordered by variance
    assert torch.allclose(d.vectors @ d.vectors.T, torch.eye(4), atol=1e-5)
    assert torch.allclose(d.mean, x.mean(0), atol=1e-5)


def test_principal_directions_k_and_deterministic_sign():
    x, _, _ = _anisotropic(seed=4)
    d = principal_directions(x, k=2)
    assert d.vectors.shape == (2, 4) and d.stds.shape == (2,)
    # sign rule: the largest-magnitude coordinate of every direction is positive
    idx = d.vectors.abs().argmax(1)
    assert torch.all(d.vectors[torch.arange(2), idx] > 0)
    # the sign does not depend on the data's orientation (negated data has the same covariance)
    d_neg = principal_directions(-x, k=2)
    assert torch.allclose(d_neg.vectors, d.vectors, atol=1e-5)
    assert torch.equal(principal_directions(x, k=2).vectors, d.vectors)


def test_principal_directions_needs_two_latents():
    with pytest.raises(ValueError):
        principal_directions(torch.randn(1, 4))


def test_directions_offset_coordinates_round_trip():
    x, _, _ = _anisotropic(seed=5)
    d = principal_directions(x)
    for i, amount in [(0, 1.5), (1, -2.0), (3, 0.25)]:
        z = d.mean + d.offset(i, amount)
        coords = d.coordinates(z)
        expected = torch.zeros(4)
        expected[i] = amount
        assert torch.allclose(coords, expected, atol=1e-4)
    # offset is stds-scaled: one unit moves by exactly stds[i] in latent space
    assert torch.allclose(d.offset(0, 1.0).norm(), d.stds[0], rtol=1e-5)
    with pytest.raises(IndexError):
        d.offset(4, 1.0)
    with pytest.raises(IndexError):
        d.offset(-1, 1.0)


def test_directions_tensor_round_trip():
    x, _, _ = _anisotropic(seed=6)
    d = principal_directions(x, k=3)
    back = Directions.from_tensors(d.to_tensors())
    assert torch.equal(back.vectors, d.vectors)
    assert torch.equal(back.stds, d.stds)
    assert torch.equal(back.mean, d.mean)
    # float64 inputs come back as float32
    t64 = {k: v.double() for k, v in d.to_tensors().items()}
    assert Directions.from_tensors(t64).vectors.dtype == torch.float32


@pytest.mark.parametrize("bad", [
    {"vectors": torch.zeros(3, 4), "stds": torch.ones(2), "mean": torch.zeros(4)},
    {"vectors": torch.zeros(3, 4), "stds": torch.ones(3), "mean": torch.zeros(5)},
    {"vectors": torch.zeros(12), "stds": torch.ones(3), "mean": torch.zeros(4)},
    {"vectors": torch.zeros(3, 4), "stds": torch.ones(3, 1), "mean": torch.zeros(4)},
])
def test_directions_from_tensors_rejects_inconsistent_shapes(bad):
    with pytest.raises(ValueError, match="inconsistent shapes"):
        Directions.from_tensors(bad)


# --- edits ------------------------------------------------------------------------------------------------------


def _dirs(d=8):
    g = torch.Generator().manual_seed(11)
    return principal_directions(torch.randn(200, d, generator=g) * torch.linspace(2, 0.5, d) + 0.3, k=4)


def _edit_table(latent: int = 8, directions: int = 4):
    """The latent edits a normal-prior model declares (studio.families.base.latent_specs): what checks their names
    and values before apply_edits sees them."""
    from pathlib import Path

    from conftest import tiny_manifest
    from studio.families.base import latent_specs
    from studio.manifest import parse_manifest
    from studio.params import ParamTable

    manifest = parse_manifest(tiny_manifest(latent=latent), Path("tiny") / "model.toml")
    return ParamTable(latent_specs(manifest, directions=directions))


def test_indexed_edit():
    assert indexed_edit("d3") == ("d", 3)
    assert indexed_edit("z10") == ("z", 10)
    assert indexed_edit("d0") == ("d", 0)
    assert indexed_edit("truncation") is None  # a scalar edit, not an indexed one
    for other in ("d", "x1", "d-1", "z1a", "Truncation", "", "D1", "dz1", "mix_seed"):
        assert indexed_edit(other) is None, other


def test_edit_names_are_checked_by_the_models_specs():
    from studio.errors import RequestError

    table = _edit_table()
    for name in ("d3", "z7", "d0", "truncation", "mix_seed", "mix_strength", "variation_seed", "variation_strength"):
        assert table.spec(name).name == (indexed_edit(name) or (name,))[0]
    assert table.find("d3").count == 4 and table.find("z7").count == 8
    for bad in ("d", "x1", "d-1", "z1a", "Truncation", "d4", "z8", "d03"):
        with pytest.raises(RequestError) as info:
            table.spec(bad)
        assert "d0…d3" in str(info.value) and "z0…z7" in str(info.value) and "truncation" in str(info.value)


def test_apply_edits_order_is_fixed():
    z = sample_prior(42, (8,))
    dirs = _dirs()
    edits = [("z1", 0.5), ("d0", 1.0), ("truncation", 0.7), ("mix_seed", 3), ("mix_strength", 0.3),
             ("variation_seed", 9), ("variation_strength", 0.4), ("d2", -0.5), ("z0", -1.0)]
    reference = apply_edits(z, dict(edits), directions=dirs)
    assert not torch.allclose(reference, z)
    for perm in itertools.islice(itertools.permutations(edits), 0, 5040, 97):
        assert torch.equal(apply_edits(z, dict(perm), directions=dirs), reference)
    assert torch.equal(apply_edits(z, dict(reversed(edits)), directions=dirs), reference)
    from studio.request import Params

    assert torch.equal(apply_edits(z, Params(edits), directions=dirs), reference)  # a request's params


def test_apply_edits_leaves_params_that_are_not_latent_edits_alone():
    z = sample_prior(42, (8,))
    dirs = _dirs()
    edits = {"d0": 1.0, "truncation": 0.7}
    assert torch.equal(apply_edits(z, {**edits, "prompt": "Ab", "noise": 0.5, "label": "cat"}, directions=dirs),
                       apply_edits(z, edits, directions=dirs))


def test_apply_edits_does_not_modify_its_input():
    z = sample_prior(1, (8,))
    keep = z.clone()
    apply_edits(z, {"z0": 5.0})
    apply_edits(z, {})
    assert torch.equal(z, keep)
    out = apply_edits(z, {})
    assert torch.equal(out, z) and out.data_ptr() != z.data_ptr()


def test_z_edit_adds_to_one_dimension():
    z = sample_prior(2, (8,))
    out = apply_edits(z, {"z3": 1.25})
    expected = z.clone()
    expected[3] += 1.25
    assert torch.equal(out, expected)
    # multi-dimensional latents are addressed flat
    z2 = sample_prior(2, (2, 4))
    out2 = apply_edits(z2, {"z5": -2.0})
    assert out2.shape == (2, 4)
    assert torch.allclose(out2.reshape(-1) - z2.reshape(-1), torch.eye(8)[5] * -2.0)


def test_d_edit_moves_along_direction_by_std():
    z = sample_prior(3, (8,))
    dirs = _dirs()
    out = apply_edits(z, {"d1": 2.0}, directions=dirs)
    assert torch.allclose(out - z, dirs.vectors[1] * dirs.stds[1] * 2.0, atol=1e-6)
    coords = dirs.coordinates(out) - dirs.coordinates(z)
    assert torch.allclose(coords, torch.tensor([0.0, 2.0, 0.0, 0.0]), atol=1e-4)


def test_truncation():
    z = sample_prior(4, (8,))
    dirs = _dirs()
    assert torch.allclose(apply_edits(z, {"truncation": 0.0}, directions=dirs), dirs.mean)
    assert torch.equal(apply_edits(z, {"truncation": 0.0}), torch.zeros(8))
    assert torch.allclose(apply_edits(z, {"truncation": 0.5}), z * 0.5)
    assert torch.allclose(apply_edits(z, {"truncation": 1.0}, directions=dirs), z, atol=1e-6)
    half = apply_edits(z, {"truncation": 0.5}, directions=dirs)
    assert torch.allclose(half, dirs.mean + 0.5 * (z - dirs.mean), atol=1e-6)


def test_variation_strength():
    z = sample_prior(5, (8,))
    assert torch.equal(apply_edits(z, {"variation_seed": 77, "variation_strength": 0.0}), z)
    assert torch.equal(apply_edits(z, {"variation_seed": 77, "variation_strength": 1.0}),
                       sample_prior(77, (8,)))
    mid = apply_edits(z, {"variation_seed": 77, "variation_strength": 0.3})
    assert torch.allclose(mid, slerp(z, sample_prior(77, (8,)), 0.3))
    assert torch.allclose(mid, variation(z, 77, 0.3))
    # a different variation seed gives a different neighbour
    other = apply_edits(z, {"variation_seed": 78, "variation_strength": 0.3})
    assert not torch.allclose(mid, other)


def test_mix():
    z = sample_prior(6, (8,))
    other = sample_prior(12, (8,))
    assert torch.allclose(apply_edits(z, {"mix_seed": 12}), (z + other) / 2, atol=1e-6)
    assert torch.allclose(apply_edits(z, {"mix_seed": 12, "mix_strength": 1.0}), other)
    assert torch.equal(apply_edits(z, {"mix_seed": 12, "mix_strength": 0.0}), z)
    assert torch.allclose(apply_edits(z, {"mix_seed": 12, "mix_strength": 0.25}), z + 0.25 * (other - z))
    # crossover mixing of chosen dims
    crossed = mix(z, other, 1.0, dims=[0, 3])
    assert torch.equal(crossed[[0, 3]], other[[0, 3]])
    assert torch.equal(crossed[[1, 2, 4, 5, 6, 7]], z[[1, 2, 4, 5, 6, 7]])
    with pytest.raises(ValueError):
        mix(z, torch.zeros(4))


def test_seeds_of_edits_reach_2_to_the_64_minus_1():
    z = sample_prior(6, (8,))
    assert torch.allclose(apply_edits(z, {"mix_seed": MAX_SEED, "mix_strength": 1.0}), sample_prior(MAX_SEED, (8,)))
    assert not torch.equal(sample_prior(MAX_SEED, (8,)), sample_prior(MAX_SEED - 1, (8,)))


@pytest.mark.parametrize("edits", [
    {"bogus": 1.0},
    {"d0x": 1.0},
    {"z8": 1.0},
    {"z100": 1.0},
    {"mix_seed": 1.5},
    {"mix_seed": -1},
    {"variation_seed": 2.5, "variation_strength": 0.5},
    {"mix_strength": "half"},
])
def test_bad_edits_are_refused_naming_the_param(edits):
    from studio.errors import RequestError
    from studio.request import RenderRequest

    with pytest.raises(RequestError) as info:
        _edit_table().check(RenderRequest("tiny", params=edits))
    assert info.value.field == f"params.{next(iter(edits))}"


@pytest.mark.parametrize("edits", [{"z8": 1.0}, {"z100": 1.0}, {"mix_seed": -1}, {"mix_seed": MAX_SEED + 1}])
def test_apply_edits_bad_edits_raise_value_error(edits):
    with pytest.raises(ValueError):
        apply_edits(sample_prior(0, (8,)), edits, directions=_dirs())


def test_d_edit_without_directions_raises():
    with pytest.raises(ValueError, match="directions"):
        apply_edits(sample_prior(0, (8,)), {"d0": 1.0}, directions=None)


def test_d_edit_beyond_available_directions_raises():
    with pytest.raises((ValueError, IndexError)):
        apply_edits(sample_prior(0, (8,)), {"d4": 1.0}, directions=_dirs())
