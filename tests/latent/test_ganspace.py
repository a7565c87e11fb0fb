"""GANSpace directions (studio.latent.ganspace) and their cache beside a package (studio.nets.stylegan_directions), on
the tiny NVIDIA fixture generators (tests/fixtures/stylegan/) and a small conditional StyleGAN2 with seeded weights."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from studio.io.safetensors import read_header
from studio.latent.directions import principal_directions
from studio.latent.ganspace import compute_directions, nvidia_z
from studio.nets import stylegan_directions as sd
from studio.nets.stylegan_nv import StyleGAN2Generator, StyleGAN3Generator, z_from_seed

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stylegan"
CLASSES = {"sg2_uncond": StyleGAN2Generator, "sg3t": StyleGAN3Generator}
SHA = "ab" * 32


def build(name: str) -> torch.nn.Module:
    kwargs = json.loads((FIX / f"{name}.init_kwargs.json").read_text())["init_kwargs"]
    g = CLASSES[name](**kwargs).eval()
    g.load_state_dict(load_file(FIX / f"{name}.G_ema.safetensors"), strict=True)
    return g


@pytest.fixture(scope="module")
def g2() -> torch.nn.Module:
    return build("sg2_uncond")


def conditional_g(c_dim: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    g = StyleGAN2Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=8, img_channels=3,
                           mapping_kwargs={"num_layers": 2}, channel_base=64, channel_max=16).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_()
    return g


def test_z_are_nvidia_seeds() -> None:
    z = nvidia_z(range(5, 8), 64)
    for i, s in enumerate(range(5, 8)):
        assert torch.equal(z[i], z_from_seed(s, 64)[0])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_directions_orthonormal_sorted_and_match_pca_of_the_same_ws(name: str) -> None:
    g = build(name)
    d = compute_directions(g, count=600, seed=3, k=20, batch=64)
    assert d.vectors.shape == (20, g.w_dim) and d.stds.shape == (20,) and d.mean.shape == (g.w_dim,)
    assert torch.allclose(d.vectors @ d.vectors.T, torch.eye(20), atol=1e-5)
    assert bool((d.stds[:-1] >= d.stds[1:]).all()) and float(d.stds[-1]) > 0
    with torch.no_grad():  # the same ws held in memory, through the plain (float64 SVD) PCA
        ws = g.mapping(nvidia_z(range(3, 603), g.z_dim), None)[:, 0]
    ref = principal_directions(ws, k=20)
    assert torch.allclose(d.mean, ref.mean, atol=1e-4 * float(ws.abs().max()))
    assert torch.allclose(d.stds, ref.stds, rtol=1e-3)
    # well-separated components are the same vectors with the same sign convention
    gaps = (ref.stds[:-1] - ref.stds[1:]) / ref.stds[:-1]
    for i in range(5):
        if gaps[i] > 0.02 and (i == 0 or gaps[i - 1] > 0.02):
            assert float(d.vectors[i] @ ref.vectors[i]) > 0.999, i


def test_same_seed_same_directions_any_batch_and_other_seed_differs(g2) -> None:
    a = compute_directions(g2, count=300, seed=7, k=10, batch=300)
    b = compute_directions(g2, count=300, seed=7, k=10, batch=300)
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.stds, b.stds)
    small = compute_directions(g2, count=300, seed=7, k=10, batch=17)  # streamed merge = one batch
    assert torch.allclose(small.stds, a.stds, rtol=1e-4)
    assert float((small.vectors[:3] * a.vectors[:3]).sum(1).min()) > 0.9999
    other = compute_directions(g2, count=300, seed=8, k=10, batch=300)
    assert not torch.allclose(other.mean, a.mean)


def test_progress_reports_every_batch(g2) -> None:
    seen: list[tuple[int, int]] = []
    compute_directions(g2, count=50, seed=0, k=4, batch=20, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(20, 50), (40, 50), (50, 50)]


def test_conditional_cycles_classes_or_takes_one(g2) -> None:
    g = conditional_g(3)
    every = compute_directions(g, count=90, seed=0, k=4)
    one = compute_directions(g, count=90, seed=0, k=4, c=torch.tensor([0.0, 1.0, 0.0]))
    assert not torch.allclose(every.mean, one.mean)
    with torch.no_grad():
        ws = g.mapping(nvidia_z(range(90), 16), torch.eye(3)[1].expand(90, -1))[:, 0]
    assert torch.allclose(one.mean, ws.mean(0), atol=1e-4 * float(ws.abs().max()))
    with pytest.raises(ValueError, match="shape"):
        compute_directions(g, count=10, c=torch.ones(2))
    with pytest.raises(ValueError, match="unconditional"):
        compute_directions(g2, count=10, c=torch.ones(1, 3))


# --- the cache ---------------------------------------------------------------------------------------------------


def test_cache_miss_writes_beside_the_package_then_hits(g2, tmp_path, monkeypatch) -> None:
    first = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    path = tmp_path / "directions.safetensors"
    assert read_header(path).metadata == sd.cache_metadata(SHA, 64, 1, 6)
    assert [p.name for p in tmp_path.iterdir()] == ["directions.safetensors"]  # no temporary left behind

    def fail(*_a, **_k):
        raise AssertionError("computed again although the cache matched")

    monkeypatch.setattr(sd, "compute_directions", fail)
    hit = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    assert torch.equal(hit.vectors, first.vectors) and torch.equal(hit.mean, first.mean)


def test_cache_for_other_weights_or_count_is_recomputed(g2, tmp_path, monkeypatch) -> None:
    sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    calls = []
    real = sd.compute_directions
    monkeypatch.setattr(sd, "compute_directions", lambda *a, **k: calls.append(k["count"]) or real(*a, **k))
    sd.cached_directions(tmp_path, "cd" * 32, g2, count=64, seed=1, k=6)
    assert read_header(tmp_path / "directions.safetensors").metadata["weights_sha256"] == "cd" * 32
    sd.cached_directions(tmp_path, "cd" * 32, g2, count=80, seed=1, k=6)
    assert read_header(tmp_path / "directions.safetensors").metadata["count"] == "80"
    assert calls == [64, 80]


def test_corrupt_cache_is_recomputed_with_a_warning_naming_it(g2, tmp_path, caplog) -> None:
    good = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    path = tmp_path / "directions.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger=sd.__name__):
        again = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert torch.equal(again.vectors, good.vectors)
    assert read_header(path).metadata == sd.cache_metadata(SHA, 64, 1, 6)  # rewritten whole


def test_cache_holding_nan_is_recomputed(g2, tmp_path, caplog) -> None:
    good = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    path = tmp_path / "directions.safetensors"
    tensors = {k: v.clone() for k, v in load_file(path).items()}
    tensors["stds"][0] = float("nan")
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata=sd.cache_metadata(SHA, 64, 1, 6))
    with caplog.at_level(logging.WARNING, logger=sd.__name__):
        again = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    assert torch.equal(again.stds, good.stds)
    assert any("NaN" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_shipped_directions_of_another_kind_are_kept(g2, tmp_path) -> None:
    path = tmp_path / "directions.safetensors"
    from safetensors.torch import save_file
    save_file({"vectors": torch.eye(64)[:2], "stds": torch.ones(2), "mean": torch.zeros(64)}, str(path))
    before = path.read_bytes()
    d = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    # the package's own directions are the model's: used as they are, never overwritten, nothing computed
    assert path.read_bytes() == before and len(d) == 2
    torch.testing.assert_close(d.vectors, torch.eye(64)[:2])
    assert not sd.user_cache_path(SHA, 64, 1, 6).exists()


def test_shipped_directions_that_are_damaged_give_way_to_ganspace(g2, tmp_path, caplog) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "directions.safetensors"
    save_file({"vectors": torch.full((2, 64), float("nan")), "stds": torch.ones(2), "mean": torch.zeros(64)},
              str(path))
    before = path.read_bytes()
    d = sd.cached_directions(tmp_path, SHA, g2, count=64, seed=1, k=6)
    assert len(d) == 6 and path.read_bytes() == before  # not the shipper's file: left alone, cached elsewhere
    assert sd.user_cache_path(SHA, 64, 1, 6).exists()
    assert str(path) in caplog.text and "GANSpace directions are used instead" in caplog.text


def _refuse_writes_in(folder: Path, monkeypatch) -> None:
    """Make `folder` unwritable for the process (root ignores file modes, so the refusal is the OS error a
    read-only folder gives, raised where a temporary would be made in it)."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr("studio.io.atomic.tempfile.mkstemp", mkstemp)


def test_unwritable_folder_caches_in_the_user_cache(g2, tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    _refuse_writes_in(pkg, monkeypatch)
    first = sd.cached_directions(pkg, SHA, g2, count=64, seed=1, k=6)
    assert list(pkg.iterdir()) == []
    cached = sd.user_cache_path(SHA, 64, 1, 6)
    assert cached.exists() and str(cached).startswith(os.environ["LATENT_STUDIO_CACHE"])
    monkeypatch.setattr(sd, "compute_directions", lambda *a, **k: pytest.fail("computed again"))
    hit = sd.cached_directions(pkg, SHA, g2, count=64, seed=1, k=6)
    assert torch.equal(hit.vectors, first.vectors)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_caches_in_the_user_cache(g2, tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    pkg.chmod(0o555)
    try:
        sd.cached_directions(pkg, SHA, g2, count=64, seed=1, k=6)
        assert list(pkg.iterdir()) == [] and sd.user_cache_path(SHA, 64, 1, 6).exists()
    finally:
        pkg.chmod(0o755)


def test_nowhere_writable_still_returns_directions(g2, tmp_path, monkeypatch, caplog) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    cache = tmp_path / "cache-is-a-file"
    cache.write_text("")
    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(cache))
    _refuse_writes_in(pkg, monkeypatch)
    with caplog.at_level(logging.WARNING, logger=sd.__name__):
        d = sd.cached_directions(pkg, SHA, g2, count=64, seed=1, k=6)
    assert len(d) == 6 and np.isfinite(d.stds.numpy()).all()
    assert any("could not be cached" in r.getMessage() for r in caplog.records)
