"""The stochastic samplers' per-step noise under A1111's noise sources (studio/families/stable_diffusion/noise.py):
the noise a render hands Euler a and DDIM η at each step is recorded at the sampler and compared with the sequence
A1111's ImageRNG rules give, written here straight from torch's and Philox's generators (initial draw, then the
same generator's next draws; with an eta noise seed delta, a generator seeded with seed + delta after the first)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import make_pipeline_folder  # noqa: E402
from studio.errors import RequestError  # noqa: E402
from studio.latent.a1111_rng import PhiloxGenerator  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.nets import samplers  # noqa: E402
from studio.request import RenderRequest  # noqa: E402

STEPS = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(resolve(str(make_pipeline_folder(tmp_path_factory.mktemp("sdnoise") / "tiny-pipe"))))


def request(model, **params) -> RenderRequest:
    seed = params.pop("seed", 4242)
    return RenderRequest(model_id=model.id, seed=seed, width=32, height=24,
                         params={"prompt": "a lighthouse", "steps": STEPS, "sampler": "euler_a", **params})


def recorded(model, req, monkeypatch, cls=samplers.EulerAncestral):
    """(the render's image, the noise handed to the sampler's step at each step)."""
    seen: list[torch.Tensor] = []
    step = cls.step

    def record(self, eps, i, x, generator=None, noise=None):
        seen.append(noise.detach().clone())
        return step(self, eps, i, x, generator, noise)

    monkeypatch.setattr(cls, "step", record)
    out = finish(model.family.render(model, req))[0]
    monkeypatch.undo()
    return out.data, seen


@pytest.mark.parametrize("ensd", [0, 31337])
def test_euler_a_with_a1111_cpu_noise_follows_image_rng(model, monkeypatch, ensd):
    req = request(model, rng="cpu", ensd=ensd)
    shape = model.family.latent_shape(model, req)
    image, seen = recorded(model, req, monkeypatch)
    gen = torch.Generator().manual_seed(4242)
    first = torch.randn(shape, generator=gen)
    if ensd:
        gen = torch.Generator().manual_seed(4242 + ensd)
    want = [torch.randn(shape, generator=gen) for _ in range(STEPS)]
    assert torch.equal(model.family.latent(model, req), first)  # the initial noise stays the seed's
    assert len(seen) == STEPS
    assert all(torch.equal(got[0], w) for got, w in zip(seen, want))
    if ensd:  # the delta moved only the steps' noise: another picture from the same start
        other = finish(model.family.render(model, request(model, rng="cpu")))[0].data
        assert not np.array_equal(image, other)


def test_ddim_eta_with_nv_noise_and_a_delta(model, monkeypatch):
    req = request(model, rng="nv", ensd=7, sampler="ddim", eta=0.8)
    shape = model.family.latent_shape(model, req)
    _, seen = recorded(model, req, monkeypatch, samplers.DDIM)
    assert torch.equal(model.family.latent(model, req), PhiloxGenerator(4242).randn(shape))
    moved = PhiloxGenerator(4242 + 7)
    assert len(seen) == STEPS and all(torch.equal(got[0], moved.randn(shape)) for got in seen)
    _, again = recorded(model, request(model, rng="nv", sampler="ddim", eta=0.8), monkeypatch, samplers.DDIM)
    same = PhiloxGenerator(4242)
    same.randn(shape)  # without a delta: the seed's generator after its first draw
    assert all(torch.equal(got[0], same.randn(shape)) for got in again)


def test_our_own_noise_is_diffusers_and_ignores_the_delta(model, monkeypatch):
    req = request(model)
    shape = (1, *model.family.latent_shape(model, req))
    image, seen = recorded(model, req, monkeypatch)
    gen = torch.Generator().manual_seed(4242)
    torch.randn(shape, generator=gen)  # diffusers' pipelines: the initial noise, then the steps' from one generator
    assert all(torch.equal(got, torch.randn(shape, generator=gen)) for got in seen)
    with_delta, _ = recorded(model, request(model, ensd=31337), monkeypatch)
    assert np.array_equal(image, with_delta)
    spec = model.table.find("ensd")
    assert spec is not None and spec.when == ("rng", ("cpu", "gpu", "nv")) and spec.default == 0


def test_a_delta_past_the_largest_seed_is_refused(model):
    with pytest.raises(RequestError, match="eta noise seed delta") as err:
        finish(model.family.render(model, request(model, seed=2**64 - 3, rng="cpu", ensd=5)))
    assert err.value.field == "params.ensd"
