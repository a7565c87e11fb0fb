"""Our samplers (studio.nets.samplers) against diffusers' schedulers, on the same inputs.

diffusers is a test-only dependency: this file is skipped without it. Each of our samplers is set up like the
diffusers scheduler it follows (same β schedule, timestep spacing, clip_sample=False, set_alpha_to_one=True,
steps_offset=0, ε-prediction; DPM-Solver++ 2M with a final σ of 0 and a first-order last step), then:

- the timesteps (and, for the σ samplers, the σs) agree for every sampler × spacing × step count × schedule;
- whole sampling loops run side by side with the same deterministic ε-function (built on a tiny seeded UNet with
  random weights) from the same noise; the model input (`scale_input` / `scale_model_input`), x and the x₀ estimate
  agree after every step, and the final sample agrees. Each loop runs twice: in float64 with diffusers given our
  tables, so the step formulas must agree to ~1e-8 (1e-6 where diffusers rounds to float32 inside its step), and
  in float32 with diffusers untouched. The samplers that draw noise (DDPM, DDIM with η > 0) get generators in the
  same state and must draw the same numbers;
- image-to-image: `add_noise` and `start_index(strength)` agree with diffusers' `add_noise` and the start its img2img
  pipelines pick, and the loop from there agrees too.

A deliberate error in any sampler's formula (a coefficient off by 1e-4, a wrong variance, input scaling or initial
noise scale, a start step off by one, DPM-Solver's history kept across walks) makes tests here fail.

Two diffusers defects are worked around, not copied. (1) `DDIMScheduler.step` steps to `t − T // N` instead of the
next timestep of its own schedule, which is only the same for the "leading" spacing, or when N divides T (diffusers
issue #12633; its DDPMScheduler looks the next timestep up, as we do for both). Where the two differ, diffusers' own
DDIM step is run with its stride set to the real gap (`_diffusers_ddim_step`), so the formulas are still compared.
(2) The "trailing" spacing, np.arange(T, 0, −T/N), leaves an extra timestep −1 for 62 step counts up to 1000 (61,
103, …); we keep exactly N and compare with diffusers' first N.
"""

from __future__ import annotations

import math
from unittest.mock import patch

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler  # noqa: E402
from diffusers.configuration_utils import FrozenDict  # noqa: E402
from diffusers.schedulers import scheduling_ddim, scheduling_ddpm  # noqa: E402

from studio.errors import RequestError  # noqa: E402
from studio.nets.unet import UNet  # noqa: E402
from studio.nets.samplers import (SAMPLERS, SCHEDULES, SPACINGS, Schedule, make_sampler,  # noqa: E402
                                      spaced_timesteps)

# diffusers' Euler and DPM-Solver call np.array(torch tensor) in set_timesteps; numpy 2 warns about it each time
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

T = 1000
BETA_SCHEDULE = {"cosine": "squaredcos_cap_v2", "linear": "linear", "scaled_linear": "scaled_linear"}
STEP_COUNTS = (1, 7, 10, 25, 50)
SHAPE = (2, 1, 8, 8)  # batch 2 of the tiny UNet's 8×8 images
RTOL = 1e-4  # float32 results, relative to their scale (tables, add_noise, model inputs)
# float64 walks on the same tables: DDPM and DDIM agree to ~1e-15 (diffusers' DDPM adds 1e-10·noise on a last step
# with t > 0 that we leave out); diffusers' Euler and DPM-Solver round x to float32 inside each step (~1e-6 by 50 steps)
EXACT_RTOL = {"ddpm": 1e-8, "ddim": 1e-8, "euler": 4e-6, "dpmpp": 4e-6}
WALK_RTOL = 1e-5  # float32 walks, relative to their conditioning (see run_side_by_side)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def diffusers_scheduler(name: str, schedule: str, spacing: str, clip: bool = False):
    common = dict(num_train_timesteps=T, beta_schedule=BETA_SCHEDULE[schedule], beta_start=1e-4, beta_end=0.02,
                  timestep_spacing=spacing, steps_offset=0, prediction_type="epsilon")
    if name == "ddpm":
        return DDPMScheduler(clip_sample=clip, variance_type="fixed_small", **common)
    if name == "ddim":
        return DDIMScheduler(clip_sample=clip, set_alpha_to_one=True, **common)
    assert not clip, "diffusers' Euler and DPM-Solver schedulers have no clip_sample"
    if name == "euler":
        return EulerDiscreteScheduler(**common)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                           final_sigmas_type="zero", lower_order_final=True, **common)
    raise AssertionError(name)


@pytest.fixture(scope="module")
def schedules() -> dict[str, Schedule]:
    return {kind: Schedule.make(kind, T) for kind in SCHEDULES}


@pytest.fixture(scope="module")
def unet():
    """The app's UNet, tiny, with every parameter random (its zero-initialised convs would otherwise make ε ≡ 0 and
    every check vacuous): ε(x, t) for a batch, t a float timestep."""
    net = UNet(image_size=8, channels=1, base=8, mults=(1, 2), num_classes=0, emb_dim=16, attention=True).eval()
    with torch.no_grad():
        torch.manual_seed(0)
        for p in net.parameters():
            torch.nn.init.normal_(p, 0.0, 0.2)

    net = net.double()

    def eps(x: torch.Tensor, t: float) -> torch.Tensor:  # in float64 whatever x is: no rounding boundary to hit
        with torch.inference_mode():
            return net(x.double(), torch.full((x.shape[0],), float(t), dtype=torch.float64), None).to(x.dtype)

    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    a, b, c = eps(x, 500), eps(x, 100), eps(2 * x, 500)
    assert a.abs().mean() > 0.1 and (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3  # ε depends on x, t
    return eps


DATA_STD = 0.5


@pytest.fixture(scope="module")
def eps_net(unet, schedules):
    """The ε-function the loops use: the ideal denoiser of Gaussian data N(0, 0.5²) plus the random UNet, weighted
    by √ᾱ_t. A random UNet alone is no denoiser: under the cosine schedule (ᾱ_999 ≈ 2.4e-9) its x₀ estimates
    reach ~1e4 and the walk stays that large, so a tolerance relative to the scale would hide an O(1) error. With
    the ideal term the walk stays O(1) (and ε depends strongly on x, so a wrong input scaling shows); with the UNet
    it is non-linear in x and t. ᾱ at fractional timesteps (Euler's linspace) is interpolated."""
    tables = {kind: s.alphas_cumprod.numpy() for kind, s in schedules.items()}

    def make(kind: str):
        table = tables[kind]

        def eps(x: torch.Tensor, t: float) -> torch.Tensor:
            a = float(np.interp(float(t), np.arange(len(table)), table))
            ideal = math.sqrt(1 - a) / (a * DATA_STD**2 + 1 - a) * x.double()
            return (ideal + 0.5 * math.sqrt(a) * unet(x.double(), t)).to(x.dtype)

        return eps

    return make


def close(ours: torch.Tensor, ref: torch.Tensor, what: str, rtol: float = RTOL, scale: float = 1.0) -> None:
    """|ours − ref| ≤ rtol × the largest of 1, |ref| and `scale` (what the step's rounding is relative to: a step
    from x ≈ 2e4, Euler's first under the cosine schedule, loses ~2e-3 to float32 whatever the result's size)."""
    ours, ref = ours.double(), ref.double()
    scale = max(1.0, float(ref.abs().max()), scale)
    err = float((ours - ref).abs().max())
    assert torch.isfinite(ref).all() and err <= rtol * scale, f"{what}: max |ours − diffusers| = {err:.3g}, scale " \
                                                              f"{scale:.3g}"


def _diffusers_ddim_step(sched: DDIMScheduler, eps, t, t_prev: int, x, **kwargs):
    """diffusers' DDIM step from timestep t to t_prev (−1 = the end, ᾱ = 1). Its step assumes the stride T // N
    (diffusers issue #12633); when that is not the gap to the next timestep of its own schedule, run the same step
    with the stride set to the real gap."""
    gap = int(t) - t_prev
    n = sched.num_inference_steps
    stride_prev = int(t) - sched.config.num_train_timesteps // n
    if stride_prev == t_prev or (stride_prev < 0 and t_prev < 0):
        return sched.step(eps, t, x, **kwargs)
    config = sched._internal_dict
    sched._internal_dict, sched.num_inference_steps = FrozenDict({**config, "num_train_timesteps": gap}), 1
    try:
        return sched.step(eps, t, x, **kwargs)
    finally:
        sched._internal_dict, sched.num_inference_steps = config, n


def diffusers_start(steps: int, strength: float) -> int:
    """The first step index diffusers' img2img pipelines run for a strength (StableDiffusionImg2ImgPipeline.
    get_timesteps, order-1 schedulers)."""
    init_timestep = min(int(steps * strength), steps)
    return max(steps - init_timestep, 0)


def _diffusers_step(sched, name: str, eps, i: int, x, eta: float, generator, clip: bool = False):
    t = sched.timesteps[i]
    if name == "ddim":
        t_prev = int(sched.timesteps[i + 1]) if i + 1 < len(sched.timesteps) else -1
        return _diffusers_ddim_step(sched, eps, t, t_prev, x, eta=eta, generator=generator,
                                    use_clipped_model_output=clip)
    return sched.step(eps, t, x, generator=generator)


def _float32_draws(shape, generator=None, device=None, dtype=None, **kwargs):
    """Noise as our samplers draw it, float32 on the CPU then cast (for a float64 sample diffusers would draw
    float64 numbers: other numbers from the same generator)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def _share_tables(sched, ours) -> None:
    """Give diffusers' scheduler our float64 tables: ᾱ, and σ for Euler and DPM-Solver (equal to theirs to float32
    precision, checked by the timestep tests)."""
    sched.alphas_cumprod = ours.schedule.alphas_cumprod.clone()
    if hasattr(ours, "sigmas"):
        sched.sigmas = torch.from_numpy(ours.sigmas.copy())


def _alpha_bar(ours, i: int) -> float:
    """ᾱ at step i of our sampler (1 after the last step)."""
    if hasattr(ours, "sigmas"):
        return 1 / (1 + float(ours.sigmas[i]) ** 2)
    return float(ours.ac[int(ours.timesteps[i])]) if i < len(ours.timesteps) else 1.0


def _conditioning(ours, i: int, x: torch.Tensor) -> float:
    """How far float32 rounding of x can move a step's result: |x| for Euler (x₀ = x − σε); |x|·√(ᾱ_next/ᾱ_t) for
    the others, whose x₀ estimate divides by √ᾱ_t (≈ 5e-5 at t = 999 under the cosine schedule)."""
    if ours.name == "euler":
        return float(x.abs().max())
    return float(x.abs().max()) * math.sqrt(_alpha_bar(ours, i + 1) / _alpha_bar(ours, i))


def run_side_by_side(name: str, schedule: Schedule, kind: str, spacing: str, steps: int, eps, eta: float = 0.0,
                     start: int = 0, x0: torch.Tensor | None = None, seed: int = 0, exact: bool = True,
                     clip: bool = False) -> torch.Tensor:
    """Our sampling loop and diffusers' with the ε-function `eps` from the same noise (or, from step `start`, the
    same noised x0), x (and the x₀ estimate where diffusers returns one) compared after every step and at the end;
    our final sample. `clip`: clip_sample=True on both sides (DDPM and DDIM only).

    exact: in float64, diffusers given our tables (`_share_tables`): the step formulas must agree to EXACT_RTOL of
    the step's scale (for Euler, of the walk's largest |x|: diffusers' Euler rounds x to float32 inside `step`).
    Otherwise: float32, diffusers' scheduler untouched; agreement to WALK_RTOL of the largest of |x| and the
    steps' `_conditioning` so far.
    """
    dtype = torch.float64 if exact else torch.float32
    rtol = EXACT_RTOL[name] if exact else WALK_RTOL
    ours = make_sampler(name, schedule, steps, eta=eta, spacing=spacing, clip_sample=clip)
    theirs = diffusers_scheduler(name, kind, spacing, clip)
    theirs.set_timesteps(steps)
    if exact:
        _share_tables(theirs, ours)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)).to(dtype)
    tag = f"{name}/{kind}/{spacing}/{steps} steps/η={eta:g}/start {start}/{str(dtype)[6:]}"
    if x0 is None:
        x, y = ours.initial(noise), noise * theirs.init_noise_sigma
        close(x, y, f"{tag}: initial noise", rtol)
    else:
        if hasattr(theirs, "set_begin_index"):  # what the img2img pipelines do before add_noise
            theirs.set_begin_index(start)
        x = ours.add_noise(x0.to(dtype), noise, start)
        y = theirs.add_noise(x0.to(dtype), noise, theirs.timesteps[start:start + 1].repeat(SHAPE[0]))
        close(x, y, f"{tag}: add_noise", rtol)
    assert x.dtype == y.dtype == dtype
    gen_ours, gen_theirs = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 1)
    cond = 0.0
    with patch.object(scheduling_ddpm, "randn_tensor", _float32_draws), \
            patch.object(scheduling_ddim, "randn_tensor", _float32_draws):
        for i in range(start, steps):
            t = theirs.timesteps[i]
            assert ours.model_timestep(i) == pytest.approx(float(t), abs=1e-3), f"{tag}: model timestep, step {i}"
            if not exact:
                cond = max(cond, _conditioning(ours, i, x))
            elif name == "euler":  # diffusers' Euler rounds x to float32 in each step: from 2e4 (cosine), 1e-3
                cond = max(cond, float(x.abs().max()))
            scale = max(cond, float(y.abs().max()))
            inp_ours, inp_theirs = ours.scale_input(x, i), theirs.scale_model_input(y, t)
            close(inp_ours, inp_theirs, f"{tag}: model input at step {i}", rtol, scale)
            x, x0_ours = ours.step(eps(inp_ours, ours.model_timestep(i)), i, x, gen_ours)
            out = _diffusers_step(theirs, name, eps(inp_theirs, float(t)), i, y, eta, gen_theirs, clip)
            y = out.prev_sample
            assert x.dtype == y.dtype == dtype
            close(x, y, f"{tag}: x after step {i}", rtol, scale)
            if getattr(out, "pred_original_sample", None) is not None:
                amplified = not exact and name != "euler"  # a float32 x₀ estimate divides x's rounding by √ᾱ_t
                close(x0_ours, out.pred_original_sample, f"{tag}: x0 estimate at step {i}", rtol,
                      scale / math.sqrt(_alpha_bar(ours, i)) if amplified else scale)
    close(x, y, f"{tag}: final sample", rtol, scale)
    assert torch.isfinite(x).all()
    return x


# --- timesteps -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_matches_diffusers_alphas_cumprod(kind, schedules):
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=BETA_SCHEDULE[kind], beta_start=1e-4,
                        beta_end=0.02).alphas_cumprod
    assert torch.equal(schedules[kind].alphas_cumprod.float(), ref)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_timesteps_match_diffusers(name, spacing, kind, schedules):
    for steps in (*STEP_COUNTS, 3, 13, 100):
        ours = make_sampler(name, schedules[kind], steps, spacing=spacing)
        theirs = diffusers_scheduler(name, kind, spacing)
        theirs.set_timesteps(steps)
        ref = theirs.timesteps.double().numpy()
        assert ours.timesteps.dtype == np.float64 and ours.timesteps.shape == (steps,), (name, spacing, steps)
        assert np.all(np.diff(ours.timesteps) < 0), (name, spacing, steps)
        if name == "euler":  # diffusers keeps Euler's fractional linspace timesteps in float32
            np.testing.assert_allclose(ours.timesteps, ref, rtol=0, atol=1e-4, err_msg=f"{name} {spacing} {steps}")
        else:
            np.testing.assert_array_equal(ours.timesteps, ref, err_msg=f"{name} {spacing} {steps}")
            assert np.array_equal(ours.timesteps, ours.timesteps.round())  # whole timesteps index ᾱ exactly
        assert [ours.model_timestep(i) for i in range(steps)] == pytest.approx(ref.tolist(), abs=1e-4)
        if name in ("euler", "dpmpp"):
            sig = theirs.sigmas.double().numpy()
            assert ours.sigmas.shape == sig.shape and ours.sigmas[-1] == 0.0
            np.testing.assert_allclose(ours.sigmas, sig, rtol=1e-5, atol=1e-6, err_msg=f"{name} {spacing} {steps}")


def test_too_many_steps_for_a_spacing_is_a_request_error(schedules):
    # DPM-Solver's linspace and leading spacings lay out N+1 points: with N = T they repeat a timestep (h = 0)
    for spacing in ("linspace", "leading"):
        with pytest.raises(RequestError) as info:
            make_sampler("dpmpp", schedules["cosine"], T, spacing=spacing)
        assert info.value.field == "steps"
        assert len(make_sampler("dpmpp", schedules["cosine"], T - 1, spacing=spacing).timesteps) == T - 1
    assert len(make_sampler("dpmpp", schedules["cosine"], T).timesteps) == T  # trailing is fine


@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_step_count_gives_that_many_distinct_timesteps(spacing):
    for train in (T, 100, 37):
        for steps in range(1, train + 1):
            t = spaced_timesteps(train, steps, spacing)
            assert len(t) == steps and t.min() >= 0 and t.max() <= train - 1 and np.all(np.diff(t) < 0), \
                (train, steps)


@pytest.mark.parametrize("name", SAMPLERS)
def test_trailing_never_adds_a_step_at_timestep_minus_one(name, schedules):
    """np.arange(T, 0, −T/N) has N+1 points for 62 step counts up to 1000 (61, 103, 121, …): its last point is ~0,
    timestep −1. diffusers keeps it (an extra step, which its DDPM and DDIM look up as ᾱ[−1] = ᾱ_999); we keep the
    first N, the same as theirs."""
    for steps in (61, 103, 121, 201):
        ours = make_sampler(name, schedules["cosine"], steps)
        theirs = diffusers_scheduler(name, "cosine", "trailing")
        theirs.set_timesteps(steps)
        ref = theirs.timesteps.double().numpy()
        assert len(ours.timesteps) == steps and ours.timesteps[-1] >= 0
        if len(ref) == steps + 1:  # diffusers' extra point (drop this branch once diffusers fixes it)
            assert ref[-1] == -1
            ref = ref[:steps]
        np.testing.assert_allclose(ours.timesteps, ref, atol=1e-4)


# --- whole sampling loops --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampling_loop_matches_diffusers_step_by_step(name, spacing, kind, schedules, eps_net):
    for exact in (True, False):
        for steps in STEP_COUNTS:
            run_side_by_side(name, schedules[kind], kind, spacing, steps, eps_net(kind), seed=steps, exact=exact)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampling_loop_with_the_bare_unet_matches_diffusers(name, kind, schedules, unet):
    """The same with the random UNet alone as ε (its walk grows large: compared relative to its scale)."""
    for steps in (7, 10):
        for exact in (True, False):
            run_side_by_side(name, schedules[kind], kind, "trailing", steps, unet, seed=50 + steps, exact=exact)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("spacing", ("trailing", "leading"))
@pytest.mark.parametrize("name,eta", [("ddpm", 0.0), ("ddim", 1.0), ("ddim", 0.5)])
def test_noisy_samplers_draw_the_same_noise_as_diffusers(name, eta, spacing, kind, schedules, eps_net):
    """DDPM and DDIM with η > 0 add noise each step: from generators in the same state, ours and diffusers' draw the
    same numbers (on the CPU), so the whole walk agrees."""
    for steps in (7, 10, 25):
        for exact in (True, False):
            run_side_by_side(name, schedules[kind], kind, spacing, steps, eps_net(kind), eta=eta, seed=100 + steps,
                             exact=exact)


def test_noise_matters_in_the_noisy_samplers(schedules, eps_net):
    """Guard for the check above: DDPM's result does depend on its generator."""
    eps = eps_net("cosine")

    def walk(seed):
        s = make_sampler("ddpm", schedules["cosine"], 10)
        x = s.initial(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
        gen = torch.Generator().manual_seed(seed)
        for i in range(10):
            x, _ = s.step(eps(s.scale_input(x, i), s.model_timestep(i)), i, x, gen)
        return x

    assert (walk(1) - walk(2)).abs().max() > 1e-2


@pytest.mark.parametrize("start", (0, 4))
def test_dpmpp_sampler_walked_again_starts_fresh(start, schedules, eps_net):
    """DPM-Solver++ keeps the previous x₀ estimate between steps; a second walk with the same sampler (or one that
    starts part-way) must not use the first walk's, just as diffusers' scheduler starts first order after
    set_timesteps."""
    eps = eps_net("linear")
    sampler = make_sampler("dpmpp", schedules["linear"], 10)
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(4)) * 2 - 1
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))

    def walk(s):
        x = s.add_noise(x0, noise, start) if start else s.initial(noise)
        for i in range(start, 10):
            x, _ = s.step(eps(s.scale_input(x, i), s.model_timestep(i)), i, x)
        return x

    first = walk(sampler)
    close(walk(sampler), first, "the same sampler, walked again", rtol=1e-12)
    theirs = diffusers_scheduler("dpmpp", "linear", "trailing")
    theirs.set_timesteps(10)
    theirs.set_begin_index(start)
    y = theirs.add_noise(x0, noise, theirs.timesteps[start:start + 1].repeat(SHAPE[0])) if start else noise
    for t in theirs.timesteps[start:]:
        y = theirs.step(eps(y, float(t)), t, y).prev_sample
    close(first, y, "against diffusers", rtol=WALK_RTOL * 10)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("name,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_clip_sample_matches_diffusers(name, eta, kind, schedules, unet):
    """clip_sample=True (what DiffusionFamily.render asks for): DDPM clamps x₀ as diffusers' DDPMScheduler does; our
    DDIM also re-derives ε from the clamped x₀, which is diffusers' use_clipped_model_output=True. ε is the bare
    random UNet, whose x₀ estimates are far outside −1 … 1: the clamp is what keeps this walk in range."""
    eps = unet
    for steps in (10, 25):
        for exact in (True, False):
            clipped = run_side_by_side(name, schedules[kind], kind, "trailing", steps, eps, eta=eta, seed=steps,
                                       exact=exact, clip=True)
            plain = run_side_by_side(name, schedules[kind], kind, "trailing", steps, eps, eta=eta, seed=steps,
                                     exact=exact)
            assert (clipped - plain).abs().max() > 1e-3  # the clamp did something


# --- image-to-image --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_start_index_matches_diffusers_img2img(steps, schedules):
    for strength in (0.01, 0.1, 0.25, 0.3, 0.5, 0.55, 0.7, 0.75, 0.9, 0.99, 1.0):
        want = diffusers_start(steps, strength)
        sampler = make_sampler("ddim", schedules["cosine"], steps)
        if want == steps:  # diffusers would run no step at all; we say so
            with pytest.raises(RequestError) as info:
                sampler.start_index(strength)
            assert info.value.field == "strength"
        else:
            assert sampler.start_index(strength) == want, (steps, strength)
    with pytest.raises(RequestError):
        make_sampler("ddim", schedules["cosine"], steps).start_index(0.0)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_add_noise_matches_diffusers(name, spacing, kind, schedules):
    g = torch.Generator().manual_seed(5)
    x0, noise = torch.rand(SHAPE, generator=g) * 2 - 1, torch.randn(SHAPE, generator=g)
    for steps in STEP_COUNTS:
        ours = make_sampler(name, schedules[kind], steps, spacing=spacing)
        for strength in (0.3, 0.6, 1.0):
            if int(steps * strength) < 1:
                continue
            start = ours.start_index(strength)
            theirs = diffusers_scheduler(name, kind, spacing)
            theirs.set_timesteps(steps)
            if hasattr(theirs, "set_begin_index"):
                theirs.set_begin_index(start)
            ref = theirs.add_noise(x0, noise, theirs.timesteps[start:start + 1].repeat(SHAPE[0]))
            close(ours.add_noise(x0, noise, start), ref, f"{name}/{kind}/{spacing}/{steps}/strength {strength}")


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("name", SAMPLERS)
def test_img2img_loop_matches_diffusers(name, kind, schedules, eps_net):
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(6)) * 2 - 1
    for spacing, steps, strength in (("trailing", 10, 0.6), ("trailing", 7, 0.5), ("leading", 25, 0.3),
                                     ("linspace", 10, 0.75)):
        start = make_sampler(name, schedules[kind], steps, spacing=spacing).start_index(strength)
        assert start == diffusers_start(steps, strength) > 0
        for exact in (True, False):
            run_side_by_side(name, schedules[kind], kind, spacing, steps, eps_net(kind), start=start, x0=x0, seed=7,
                             exact=exact)


# --- guards: the checks can fail -------------------------------------------------------------------------------


def test_close_rejects_a_small_relative_error():
    ref = torch.full((3,), 100.0)
    close(ref * (1 + 0.5 * RTOL), ref, "within")
    with pytest.raises(AssertionError):
        close(ref * (1 + 3 * RTOL), ref, "outside")


def test_ddim_workaround_only_changes_the_stride(schedules, eps_net):
    """With the real gap, diffusers' DDIM step equals ours; with its own stride (T // N) it does not (issue #12633):
    the workaround is needed, and it changes nothing else."""
    theirs = diffusers_scheduler("ddim", "cosine", "linspace")
    theirs.set_timesteps(10)
    ours = make_sampler("ddim", schedules["cosine"], 10, spacing="linspace")
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    t, t_next = theirs.timesteps[0], int(theirs.timesteps[1])
    e = eps_net("cosine")(x, float(t))
    assert int(t) - T // 10 != t_next
    plain = theirs.step(e, t, x).prev_sample
    fixed = _diffusers_ddim_step(theirs, e, t, t_next, x).prev_sample
    close(ours.step(e, 0, x)[0], fixed, "DDIM with the real gap")
    assert (plain - fixed).abs().max() > 1e-3
    assert theirs.config.num_train_timesteps == T and theirs.num_inference_steps == 10  # restored
    assert math.isclose(float(theirs.alphas_cumprod[int(t)]), float(schedules["cosine"].alphas_cumprod[int(t)]),
                        rel_tol=1e-6)
