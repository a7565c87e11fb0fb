"""A1111's noise sources: Philox 4x32-10 (its "NV", equal to CUDA's torch.randn), "CPU", and its variation slerp."""

import numpy as np
import pytest
import torch

from studio.latent.a1111_rng import A1111Noise, PhiloxGenerator, a1111_slerp, philox4x32
from studio.latent.seeds import sample_prior


@pytest.mark.parametrize("counter, key, expected", [
    # Random123's known-answer vectors for philox4x32_10 (kat_vectors)
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(counter, key, expected):
    out = philox4x32(np.array(counter, np.uint32).reshape(4, 1), np.array(key, np.uint32).reshape(2, 1))
    assert tuple(int(v) for v in out[:, 0]) == expected


def test_nv_matches_published_cuda_draw():
    # rng_philox's documented output for Generator(seed=0).randn((3, 4)) — torch.randn(3, 4, device="cuda") at seed 0
    expected = np.array([[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
                         [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
                         [-1.07454231, -0.36314407, -1.67105067, 2.26550497]], np.float32)
    got = PhiloxGenerator(0).randn((3, 4))
    assert got.dtype == torch.float32 and got.shape == (3, 4)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_nv_draws_move_on_and_seed_high_word_counts():
    gen = PhiloxGenerator(7)
    a, b = gen.randn((2, 3)), gen.randn((2, 3))
    assert not torch.equal(a, b)  # the offset moved on
    assert torch.equal(PhiloxGenerator(7).randn((2, 3)), a)
    assert not torch.equal(PhiloxGenerator(7 + (1 << 32)).randn((2, 3)), a)  # the key's high word is the seed's
    big = PhiloxGenerator(3).randn((4, 64, 64))
    assert abs(float(big.mean())) < 0.03 and abs(float(big.std()) - 1) < 0.03


def test_cpu_source_is_our_seed_draw_and_continues_the_stream():
    noise = A1111Noise("cpu", 1234, (4, 8, 8))
    first = noise.first()
    assert torch.equal(first, sample_prior(1234, (4, 8, 8)))
    gen = torch.Generator().manual_seed(1234)
    torch.randn((4, 8, 8), generator=gen)
    assert torch.equal(noise.next(), torch.randn((4, 8, 8), generator=gen))


def test_ensd_reseeds_the_sampler_noise_after_the_first_draw():
    """A1111's ImageRNG: first() is the seed's draw (a variation slerped in as usual); with an eta noise seed delta
    every later draw comes from a generator seeded with seed + delta, in order; without one from the seed's."""
    shape = (4, 6, 5)
    noise = A1111Noise("cpu", 1234, shape, ensd=31337)
    assert torch.equal(noise.first(), torch.randn(shape, generator=torch.Generator().manual_seed(1234)))
    moved = torch.Generator().manual_seed(1234 + 31337)
    assert [torch.equal(noise.next(), torch.randn(shape, generator=moved)) for _ in range(3)] == [True] * 3
    varied = A1111Noise("nv", 5, shape, ensd=7)
    first = varied.first(subseed=9, subseed_strength=0.4)
    assert torch.equal(first, a1111_slerp(0.4, PhiloxGenerator(5).randn(shape), PhiloxGenerator(9).randn(shape)))
    philox = PhiloxGenerator(12)  # seed + delta, from its first draw (offset 0) on
    assert torch.equal(varied.next(), philox.randn(shape)) and torch.equal(varied.next(), philox.randn(shape))
    plain, same = A1111Noise("nv", 5, shape), PhiloxGenerator(5)
    assert torch.equal(plain.first(), same.randn(shape)) and torch.equal(plain.next(), same.randn(shape))
    with pytest.raises(ValueError, match="seed plus the eta noise seed delta"):
        A1111Noise("cpu", 2**64 - 2, shape, ensd=5)


def test_gpu_source_without_cuda_is_philox():
    noise = A1111Noise("gpu", 99, (4, 8, 8), device="cpu")
    assert torch.equal(noise.first(), PhiloxGenerator(99).randn((4, 8, 8)))
    with pytest.raises(ValueError, match="unknown A1111 noise source"):
        A1111Noise("xpu", 1, (4, 8, 8))


def test_variation_slerp_is_a1111s():
    low, high = sample_prior(1, (4, 8, 8)), sample_prior(2, (4, 8, 8))
    out = A1111Noise("cpu", 1, (4, 8, 8)).first(subseed=2, subseed_strength=0.3)
    assert torch.allclose(out, a1111_slerp(0.3, low, high))
    # by its rules, per (channel, column): normalised along rows, angle from their cosine
    c, w = 2, 5
    a, b = low[c, :, w].double(), high[c, :, w].double()
    omega = torch.acos((a / a.norm()) @ (b / b.norm()))
    want = torch.sin(0.7 * omega) / torch.sin(omega) * a + torch.sin(0.3 * omega) / torch.sin(omega) * b
    assert torch.allclose(out[c, :, w].double(), want, atol=1e-5)
    # almost parallel: A1111's (reversed) linear blend, low·val + high·(1 − val)
    near = a1111_slerp(0.25, low, low * 1.0001)
    assert torch.allclose(near, low * 0.25 + low * 1.0001 * 0.75)
    assert torch.equal(A1111Noise("cpu", 1, (4, 8, 8)).first(subseed=2, subseed_strength=0), low)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nv_equals_cuda_randn():
    for seed, shape in ((0, (3, 4)), (123456789, (4, 64, 64)), (2 ** 40 + 5, (4, 96, 80))):
        gen = torch.Generator(device="cuda").manual_seed(seed)
        cuda = [torch.randn(shape, generator=gen, device="cuda").cpu() for _ in range(2)]
        nv = PhiloxGenerator(seed)
        for want in cuda:
            torch.testing.assert_close(nv.randn(shape), want, rtol=0, atol=1e-5)
        noise = A1111Noise("gpu", seed, shape, device="cuda")
        assert torch.equal(noise.first(), cuda[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_step_noise_and_delta_on_cuda_equal_nv():
    """On CUDA, A1111's "GPU" source draws with CUDA's generator: its later draws (and those after an ENSD re-seed)
    are the Philox stream the app computes on the CPU for "GPU" elsewhere."""
    shape = (4, 64, 64)
    for ensd in (0, 31337):
        cuda = A1111Noise("gpu", 4242, shape, device="cuda", ensd=ensd)
        cpu = A1111Noise("gpu", 4242, shape, device="cpu", ensd=ensd)
        torch.testing.assert_close(cuda.first(), cpu.first(), rtol=0, atol=1e-5)
        for _ in range(3):
            torch.testing.assert_close(cuda.next(), cpu.next(), rtol=0, atol=1e-5)
