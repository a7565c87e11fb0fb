"""AUTOMATIC1111's noise sources, so that a seed gives A1111's initial noise (its "RNG" setting).

- "CPU": `torch.randn(shape)` from a CPU `torch.Generator` seeded with the seed — the same draw as our own
  `studio.latent.seeds.sample_prior` (the initial noise of a plain seed is identical).
- "GPU" (A1111's default; an infotext without "RNG" means it): `torch.randn` from a CUDA generator. CUDA's generator
  is Philox 4x32-10 with one Box–Muller value per counter, so it is reproduced exactly on any device by "NV".
- "NV": Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011) computed here in NumPy,
  as A1111's `rng_philox` does: the 64-bit seed is the key (low word, high word); value i of a draw uses the counter
  (offset, 0, i, 0), where `offset` counts the draws made so far; each value is the first Box–Muller output of the
  counter's first two words, u = w0·2⁻³² + 2⁻³³ and v = (w1·2⁻³² + 2⁻³³)·2π in float32 constants, √(−2 ln u)·sin v.

A variation seed ("Variation seed" / "Variation seed strength") is A1111's `slerp(strength, noise, subnoise)`, which
normalises along dimension 1 (the latent's rows) and falls back to a reversed linear blend when the two are almost
parallel — reproduced here as it is, so that a variation re-renders as A1111 drew it.

After the initial noise, A1111's ImageRNG (modules/rng.py) gives every `randn_like` of its samplers (Euler a's and
DDIM η's fresh noise) as `next()`: the next draw of the same generator. Its "Eta noise seed delta" (ENSD, infotext
"ENSD: N"), when not 0, replaces the generator right after the initial draw by a new one seeded with seed + ENSD,
so the initial noise stays the seed's and only the samplers' noise moves.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from studio.request import MAX_SEED

SOURCES = ("cpu", "gpu", "nv")  # A1111's "CPU", "GPU", "NV"
INFOTEXT = {"cpu": "CPU", "gpu": "GPU", "nv": "NV"}

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox 4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_MASK = 0xFFFFFFFF
_INV32 = float(np.float32(2.3283064e-10))  # 2⁻³² as the float32 A1111 (and cuRAND) use
_INV32_2PI = float(np.float32(2.3283064e-10 * 6.2831855))


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox 4x32-`rounds` of the (4, N) uint32 `counter` under the (2, N) uint32 `key`; returns (4, N) uint32."""
    c = [counter[i].astype(np.uint64) for i in range(4)]
    k0, k1 = key[0].astype(np.uint64), key[1].astype(np.uint64)
    for r in range(rounds):
        if r:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = c[0] * _M0  # < 2⁶⁴: exact in uint64
        p1 = c[2] * _M1
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & _MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & _MASK]
    return np.stack(c).astype(np.uint32)


class PhiloxGenerator:
    """A CPU generator whose draws equal `torch.randn(..., device="cuda")` after `torch.cuda.manual_seed(seed)`:
    each `randn` is one draw (the counter's offset moves on by one), float32."""

    def __init__(self, seed: int):
        if not 0 <= int(seed) <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
        self.seed = int(seed)
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        n = int(np.prod(shape, dtype=np.int64))
        if n > 1 << 32:
            raise ValueError(f"a draw of {n:,} values is over Philox's 2³² per offset")
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset & _MASK
        counter[2] = np.arange(n, dtype=np.uint64).astype(np.uint32)
        key = np.empty((2, n), dtype=np.uint32)
        key[0], key[1] = self.seed & _MASK, (self.seed >> 32) & _MASK
        self.offset += 1
        words = philox4x32(counter, key)
        u = words[0].astype(np.float64) * _INV32 + _INV32 / 2
        v = words[1].astype(np.float64) * _INV32_2PI + _INV32_2PI / 2
        values = (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)
        return torch.from_numpy(values.reshape(tuple(shape)))


class A1111Noise:
    """The noise A1111 draws for one picture from `seed` with the source `source` ("cpu", "gpu", "nv"): `first()`
    is the initial noise (shape (C, H/8, W/8), float32 on the CPU), `next()` each further draw (its ancestral
    samplers' noise, from the same generator, as A1111's ImageRNG gives them; with `ensd` not 0, from a generator
    seeded with seed + ensd after the first draw). "gpu" draws on `device` when it is a CUDA device, else through
    Philox (the same numbers)."""

    def __init__(self, source: str, seed: int, shape: Sequence[int], device: torch.device | str | None = None,
                 ensd: int = 0):
        if source not in SOURCES:
            raise ValueError(f"unknown A1111 noise source {source!r} (known: {', '.join(SOURCES)})")
        if ensd and not 0 <= int(seed) + int(ensd) <= MAX_SEED:
            raise ValueError(f"the seed plus the eta noise seed delta must be in 0..{MAX_SEED}, got "
                             f"{int(seed)} + {int(ensd)}")
        self.source, self.seed, self.shape = source, int(seed), tuple(int(s) for s in shape)
        self.ensd = int(ensd)
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.cuda = device if source == "gpu" and device.type == "cuda" else None
        self._gen = self._generator(self.seed)

    def _generator(self, seed: int):
        if self.source == "cpu":
            return torch.Generator(device="cpu").manual_seed(seed)
        if self.cuda is not None:
            return torch.Generator(device=self.cuda).manual_seed(seed)
        return PhiloxGenerator(seed)

    def _draw(self, gen) -> torch.Tensor:
        if isinstance(gen, PhiloxGenerator):
            return gen.randn(self.shape)
        device = "cpu" if self.source == "cpu" else self.cuda
        return torch.randn(self.shape, generator=gen, device=device, dtype=torch.float32).cpu()

    def first(self, subseed: int | None = None, subseed_strength: float = 0.0) -> torch.Tensor:
        """The initial noise; with a variation seed and strength, A1111's slerp toward that seed's first draw."""
        noise = self._draw(self._gen)
        if subseed is not None and subseed_strength != 0:
            subnoise = self._draw(self._generator(int(subseed)))
            noise = a1111_slerp(subseed_strength, noise, subnoise)
        if self.ensd:  # A1111: the samplers' noise comes from seed + ENSD from here on
            self._gen = self._generator(self.seed + self.ensd)
        return noise

    def next(self) -> torch.Tensor:
        """The next draw (call `first()` once before, as A1111 does)."""
        return self._draw(self._gen)


def a1111_slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's `slerp(val, low, high)` on (C, H, W) noise: per (channel, column), normalised along the rows;
    when the mean cosine is over 0.9995 it returns low·val + high·(1 − val), as A1111 does."""
    low_n = low / torch.norm(low, dim=1, keepdim=True)
    high_n = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_n * high_n).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high
