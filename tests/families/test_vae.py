"""The VAE family: objective, network and rendering through the package loader (studio.families.vae)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from studio.errors import RequestError
from studio.steps import Output, Progress
from studio.nets.setvae import SetVAE, bernoulli_nll, elbo, gaussian_kl
from studio.latent.seeds import sample_prior
from studio.library import PackageEntry, load_model, resolve
from studio.request import RenderRequest

# --- the objective --------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 10, generator=g) * 2
    logvar = torch.randn(6, 10, generator=g) * 1.5
    ref = kl_divergence(Normal(mu, torch.exp(logvar / 2)), Normal(0.0, 1.0)).sum(-1)
    out = gaussian_kl(mu, logvar)
    assert out.shape == (6,)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_bernoulli_nll_matches_torch_distributions_binary():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 8, 8, generator=g) * 3
    x = (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float()
    ref = -Bernoulli(logits=logits).log_prob(x).reshape(4, -1).sum(-1)
    out = bernoulli_nll(logits, x)
    assert out.shape == (4,)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-5)


def test_bernoulli_nll_matches_for_intensities_in_unit_interval():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 2, 5, 5, generator=g) * 3
    x = torch.rand(3, 2, 5, 5, generator=g)
    ref = -Bernoulli(logits=logits, validate_args=False).log_prob(x).reshape(3, -1).sum(-1)
    assert torch.allclose(bernoulli_nll(logits, x), ref, atol=1e-4, rtol=1e-5)


def test_elbo_returns_minus_nll_plus_beta_kl_and_parts():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 1, 4, 4, generator=g)
    x = (torch.rand(5, 1, 4, 4, generator=g) > 0.5).float()
    mu, logvar = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    value, nll, kl = elbo(logits, x, mu, logvar)
    assert torch.allclose(nll, bernoulli_nll(logits, x))
    assert torch.allclose(kl, gaussian_kl(mu, logvar))
    assert torch.allclose(value, -(nll + kl))
    v3, nll3, kl3 = elbo(logits, x, mu, logvar, beta=3.0)
    assert torch.equal(nll3, nll) and torch.equal(kl3, kl)  # β scales only the KL term in the total
    assert torch.allclose(v3, -(nll + 3.0 * kl))
    assert torch.allclose(v3 - value, -2.0 * kl)


def test_elbo_is_a_lower_bound_on_the_log_likelihood():
    """Monte Carlo: E_q[log p(x|z)] − KL(q‖p) ≤ log p(x), estimated by importance sampling with q."""
    torch.manual_seed(0)
    net = SetVAE(image_size=8, channels=1, latent_dim=3, num_classes=0, width=4, hidden=16).eval()
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(1, 1, 1, 8, 8, generator=g) > 0.6).float()  # one set of one binary image
    n = 4000
    with torch.no_grad():
        mu, logvar = net.encode(x)
        q = Independent(Normal(mu[0], torch.exp(0.5 * logvar[0])), 1)
        prior = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
        z = q.sample((n,))
        logits = net.decode(z)
        target = x[0, 0].expand(n, -1, -1, -1)
        log_px_z = Independent(Bernoulli(logits=logits), 3).log_prob(target)
        log_w = log_px_z + prior.log_prob(z) - q.log_prob(z)
        log_px = torch.logsumexp(log_w, 0) - math.log(n)
        # the studio's ELBO, averaged over the same samples, with its analytic KL
        values, nll, kl = elbo(logits, target, mu.expand(n, -1), logvar.expand(n, -1))
        assert torch.allclose(-nll, log_px_z, atol=1e-3)
        mc_elbo = values.mean()
    assert torch.allclose(kl[0], kl_divergence(q, prior), atol=1e-4)
    assert mc_elbo <= log_px + 0.05
    # the bound is not vacuous: an untrained q leaves a real gap, but not an absurd one
    assert float(log_px - mc_elbo) < 50


# --- the network ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("classes", [0, 5])
def test_setvae_shapes(size, classes):
    torch.manual_seed(0)
    net = SetVAE(image_size=size, channels=1, latent_dim=6, num_classes=classes, width=4, class_dim=3, hidden=16)
    b, k = 2, 3 if classes else 1
    images = torch.rand(b, k, 1, size, size)
    labels = torch.randint(0, 5, (b, k)) if classes else None
    mu, logvar = net.encode(images, labels)
    assert mu.shape == (b, 6) and logvar.shape == (b, 6)
    z = torch.randn(4, 6)
    out = net.decode(z, torch.tensor([0, 1, 2, 3]) if classes else None)
    assert out.shape == (4, 1, size, size)
    targets = torch.randint(0, 5, (b, 4)) if classes else None
    logits, mu2, logvar2, zs = net(images, labels, targets, generator=torch.Generator().manual_seed(0))
    assert logits.shape == ((b, 4, 1, size, size) if classes else (b, 1, 1, size, size))
    assert zs.shape == (b, 6)


def test_setvae_rejects_bad_image_size():
    with pytest.raises(ValueError, match="image_size"):
        SetVAE(image_size=24)


def test_setvae_needs_labels_when_conditional():
    net = SetVAE(image_size=16, latent_dim=4, num_classes=3, width=4, class_dim=2, hidden=8)
    with pytest.raises(ValueError):
        net.encode(torch.rand(1, 1, 1, 16, 16), None)
    with pytest.raises(ValueError):
        net.decode(torch.randn(1, 4), None)


def _cond_net(seed=0):
    torch.manual_seed(seed)
    return SetVAE(image_size=16, channels=1, latent_dim=6, num_classes=5, width=4, class_dim=4, hidden=16).eval()


def test_setvae_encode_mean_pools_over_the_set():
    net = _cond_net()
    g = torch.Generator().manual_seed(5)
    images = torch.rand(1, 4, 1, 16, 16, generator=g)
    labels = torch.tensor([[0, 3, 1, 4]])
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        mu, logvar = net.encode(images, labels)
        mu_p, logvar_p = net.encode(images[:, perm], labels[:, perm])
        mu_1, _ = net.encode(images[:, :1], labels[:, :1])
    assert torch.allclose(mu, mu_p, atol=1e-6) and torch.allclose(logvar, logvar_p, atol=1e-6)
    assert not torch.allclose(mu, mu_1, atol=1e-4)
    # and it is a mean: a set of one image repeated equals that image alone
    with torch.no_grad():
        mu_rep, _ = net.encode(images[:, :1].expand(1, 3, 1, 16, 16), labels[:, :1].expand(1, 3))
    assert torch.allclose(mu_rep, mu_1, atol=1e-5)


def test_setvae_decoding_uses_the_label():
    net = _cond_net()
    z = torch.randn(1, 6, generator=torch.Generator().manual_seed(6)).expand(5, -1)
    with torch.no_grad():
        out = net.decode(z, torch.arange(5))
    for i in range(5):
        for j in range(i + 1, 5):
            assert (out[i] - out[j]).abs().max() > 1e-4


def test_setvae_forward_is_reproducible_with_a_generator():
    net = _cond_net()
    images = torch.rand(2, 2, 1, 16, 16, generator=torch.Generator().manual_seed(7))
    labels, targets = torch.tensor([[0, 1], [2, 3]]), torch.tensor([[4], [0]])
    with torch.no_grad():
        a = net(images, labels, targets, generator=torch.Generator().manual_seed(8))
        b = net(images, labels, targets, generator=torch.Generator().manual_seed(8))
        c = net(images, labels, targets, generator=torch.Generator().manual_seed(9))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[3], c[3])
    # the reparameterisation is z = μ + σ·ε
    eps = torch.randn(a[1].shape, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(a[3], a[1] + torch.exp(0.5 * a[2]) * eps, atol=1e-6)


# --- the family, through the package loader --------------------------------------------------------------------


def _run(model, request) -> Output:
    steps = model.family.render(model, request)
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            assert seen and all(isinstance(s, Progress) for s in seen)
            return stop.value


@pytest.fixture
def tiny_model(tiny_package):
    entry = resolve(str(tiny_package))
    assert isinstance(entry, PackageEntry) and entry.id == "tiny"
    return load_model(entry)


@pytest.fixture
def plain_model(models_dir):
    return load_model(resolve(str(models_dir / "tiny-plain")))


def test_render_is_bit_identical_and_seed_dependent(tiny_model):
    req = RenderRequest("tiny", seed=11, params={"prompt": "Ab"})
    a, b = _run(tiny_model, req), _run(tiny_model, req)
    assert a.kind == "image" and a.data.dtype == np.uint8
    assert np.array_equal(a.data, b.data)
    c = _run(tiny_model, req.with_(seed=12))
    assert not np.array_equal(a.data, c.data)


def test_render_is_identical_across_separate_loads(tiny_package):
    req = RenderRequest("tiny", seed=3, params={"prompt": "Zz9"})
    a = _run(load_model(resolve(str(tiny_package))), req)
    b = _run(load_model(resolve(str(tiny_package))), req)
    assert np.array_equal(a.data, b.data)


def test_render_prompt_layout_and_paper(tiny_model):
    out = _run(tiny_model, RenderRequest("tiny", seed=1, params={"prompt": "Ab c"}))
    assert out.data.shape == (16, 64, 1)
    assert out.size == (64, 16)
    assert out.info["cells"] == 3
    assert (out.data[:, 32:48] == 255).all()  # the space is blank paper
    for col in (0, 1, 3):
        assert not (out.data[:, col * 16:(col + 1) * 16] == 255).all()
    two_lines = _run(tiny_model, RenderRequest("tiny", seed=1, params={"prompt": "Ab\nc"}))
    assert two_lines.data.shape == (32, 32, 1)
    assert (two_lines.data[16:, 16:] == 255).all()  # the short second line is padded with paper
    # the same character at the same seed is drawn the same wherever it sits
    assert np.array_equal(two_lines.data[:16, :32], out.data[:, :32])


def test_render_default_prompt_is_the_manifest_default(tiny_model):
    assert np.array_equal(_run(tiny_model, RenderRequest("tiny", seed=2)).data,
                          _run(tiny_model, RenderRequest("tiny", seed=2, params={"prompt": "Ab"})).data)


def test_render_unknown_character_names_the_prompt(tiny_model):
    with pytest.raises(RequestError) as info:
        _run(tiny_model, RenderRequest("tiny", params={"prompt": "A!"}))
    assert info.value.field == "params.prompt"
    assert "prompt" in str(info.value) and "'!'" in str(info.value)


@pytest.mark.parametrize("prompt", ["   ", " \n "])
def test_render_blank_prompt_is_a_request_error(tiny_model, prompt):
    with pytest.raises(RequestError) as info:
        _run(tiny_model, RenderRequest("tiny", params={"prompt": prompt}))
    assert info.value.field == "params.prompt"


def test_render_resizes_to_request_width_height(tiny_model):
    req = RenderRequest("tiny", seed=4, params={"prompt": "Ab"})  # native 32x16
    assert _run(tiny_model, req.with_(width=64)).data.shape == (32, 64, 1)
    assert _run(tiny_model, req.with_(height=8)).data.shape == (8, 16, 1)
    assert _run(tiny_model, req.with_(width=20, height=30)).data.shape == (30, 20, 1)


def test_explicit_latent_overrides_the_seed(tiny_model):
    z = sample_prior(21, (8,))
    by_seed = _run(tiny_model, RenderRequest("tiny", seed=21, params={"prompt": "Ab"}))
    by_latent = _run(tiny_model, RenderRequest("tiny", seed=999, latent=tuple(z.tolist()), params={"prompt": "Ab"}))
    assert np.array_equal(by_seed.data, by_latent.data)
    shifted = _run(tiny_model, RenderRequest("tiny", latent=tuple((z + 1).tolist()), params={"prompt": "Ab"}))
    assert not np.array_equal(by_seed.data, shifted.data)


def test_latent_of_the_wrong_length_is_refused(tiny_model):
    with pytest.raises(RequestError) as info:
        _run(tiny_model, RenderRequest("tiny", latent=(0.0,) * 7))
    assert info.value.field == "latent"
    assert "8" in str(info.value)


def test_edits_reach_the_render_and_bad_edits_name_the_param(tiny_model):
    req = RenderRequest("tiny", seed=5, params={"prompt": "A"})
    assert tiny_model.directions is not None and len(tiny_model.directions) == 4
    base = tiny_model.family.latent(tiny_model, req)
    moved = tiny_model.family.latent(tiny_model, req.with_param("d0", 2.0))
    assert torch.allclose(moved - base, tiny_model.directions.offset(0, 2.0), atol=1e-6)
    assert not np.array_equal(_run(tiny_model, req).data, _run(tiny_model, req.with_param("d0", 3.0)).data)
    for name, known in (("z8", "z0…z7"), ("d4", "d0…d3")):  # 8 dimensions, 4 directions
        with pytest.raises(RequestError) as info:
            _run(tiny_model, req.with_param(name, 1.0))
        assert info.value.field == f"params.{name}"
        assert known in str(info.value)
    with pytest.raises(RequestError) as info:
        _run(tiny_model, req.with_param("d0", "far"))
    assert info.value.field == "params.d0"


def test_unconditional_model_renders_one_image(plain_model):
    out = _run(plain_model, RenderRequest("tiny-plain", seed=1))
    assert out.data.shape == (16, 16, 1)
    # a prompt or label means nothing to an unconditional model: refused, not silently ignored
    for name, value in (("prompt", "xyz"), ("label", "cat")):
        with pytest.raises(RequestError, match=f"no parameter '{name}' \\(it takes: truncation") as info:
            _run(plain_model, RenderRequest("tiny-plain", seed=1, params={name: value}))
        assert info.value.field == f"params.{name}"


def test_encode_a_rendered_glyph(tiny_model):
    out = _run(tiny_model, RenderRequest("tiny", seed=6, params={"prompt": "A"}))
    z = tiny_model.family.encode(tiny_model, out.data[None], labels=["A"])
    assert z.shape == (8,) and z.dtype == torch.float32 and torch.isfinite(z).all()
    # (N, H, W) without channel axis and a 2x larger image give a latent of the same size
    z2 = tiny_model.family.encode(tiny_model, out.data[None, :, :, 0], labels=["A"])
    assert torch.allclose(z, z2, atol=1e-6)
    big = np.repeat(np.repeat(out.data[None, :, :, 0], 2, axis=1), 2, axis=2)
    assert tiny_model.family.encode(tiny_model, big, labels=["A"]).shape == (8,)
    # a set of two glyphs pools to one latent
    two = _run(tiny_model, RenderRequest("tiny", seed=6, params={"prompt": "Ab"})).data
    pair = np.stack([two[:, :16], two[:, 16:]])
    assert tiny_model.family.encode(tiny_model, pair, labels=["A", "b"]).shape == (8,)


def test_encode_needs_labels_on_the_conditional_model(tiny_model, plain_model):
    glyph = _run(tiny_model, RenderRequest("tiny", seed=6, params={"prompt": "A"})).data[None]
    for labels in (None, [], ["A", "b"]):
        with pytest.raises(RequestError) as info:
            tiny_model.family.encode(tiny_model, glyph, labels=labels)
        assert info.value.field == "labels"
    with pytest.raises(RequestError, match="labels"):
        tiny_model.family.encode(tiny_model, glyph, labels=["!"])
    # the unconditional model needs none
    assert plain_model.family.encode(plain_model, glyph).shape == (8,)


def test_fitted_prior_maps_unit_gaussians_onto_the_encoded_styles():
    torch.manual_seed(0)
    net = SetVAE(image_size=16, latent_dim=4, num_classes=3, width=4, class_dim=4, hidden=8, fitted_prior=True)
    w = torch.randn(5, 4)
    assert torch.equal(net.from_prior(w), w)  # identity until fitted
    gen = torch.Generator().manual_seed(1)
    mixing = torch.tensor([[3.0, 0, 0, 0], [1.0, 0.5, 0, 0], [0, 0, 0.2, 0], [0, 0, 0.1, 0.05]])
    styles = torch.randn(4000, 4, generator=gen) @ mixing + torch.tensor([1.0, -2.0, 0.5, 0.0])
    net.fit_prior(styles)
    assert torch.allclose(net.to_prior(net.from_prior(w)), w, atol=1e-4)
    samples = net.from_prior(torch.randn(20000, 4, generator=gen))
    assert torch.allclose(samples.mean(0), styles.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(samples.T), torch.cov(styles.T), atol=0.1)
    assert set(net.state_dict()) >= {"prior_mean", "prior_axes", "prior_scale"}
    plain = SetVAE(image_size=16, latent_dim=4, num_classes=3, width=4, class_dim=4, hidden=8)
    assert not any(k.startswith("prior_") for k in plain.state_dict())
    with pytest.raises(ValueError):
        plain.fit_prior(styles)


# --- the parameters the family declares ------------------------------------------------------------------------------


def test_the_shipped_vae_declares_its_parameters():
    from pathlib import Path

    from studio.params import CONDITIONS, DIRECTIONS, RAW, SHAPING, Capability, Kind

    entry = resolve(str(Path(__file__).resolve().parents[2] / "models" / "glyphs"))
    assert entry.manifest.family == "vae"
    assert entry.capabilities == Capability.SAMPLE | Capability.ENCODE | Capability.DECODE
    table = entry.parameters
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    assert [(s.name, s.kind, s.default, s.group, s.count) for s in table] == [
        ("prompt", Kind.TEXT, "Latent", CONDITIONS, 0),
        ("truncation", Kind.FLOAT, 1.0, SHAPING, 0),
        ("mix_seed", Kind.SEED, None, SHAPING, 0),
        ("mix_strength", Kind.FLOAT, 0.5, SHAPING, 0),
        ("variation_seed", Kind.SEED, None, SHAPING, 0),
        ("variation_strength", Kind.FLOAT, 0.0, SHAPING, 0),
        ("d", Kind.FLOAT, 0.0, DIRECTIONS, 16),  # the package's 16 principal directions
        ("z", Kind.FLOAT, 0.0, RAW, 32),  # its 32 latent dimensions
    ]
    prompt = table.get("prompt")
    assert prompt.charset == alphabet and prompt.render_only  # the text is drawn in the latent's style
    assert [s.name for s in table if s.render_only] == ["prompt"]  # the rest acts on the latent
    assert table.get("truncation").range is None and table.get("truncation").slider_span == (0.0, 1.5)
    assert table.get("mix_strength").when == ("mix_seed", ())
    assert table.get("variation_strength").when == ("variation_seed", ())
    assert table.get("d").slider_span == table.get("z").slider_span == (-3.0, 3.0)
    assert table.known_names()[-2:] == ["d0…d15", "z0…z31"]
    assert entry.default_request(5) == RenderRequest("glyphs", seed=5, params={"prompt": "Latent"})
    assert table.check(entry.default_request(5)) == entry.default_request(5)
