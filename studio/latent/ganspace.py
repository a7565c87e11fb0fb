"""GANSpace directions of a style-based generator: the principal components of its mapped w (Härkönen et al. 2020,
"GANSpace: Discovering Interpretable GAN Controls", which takes PCA of the mapping network's output).

`compute_directions(G, count, seed)` maps `count` latents z drawn as NVIDIA's tools draw seeds — sample i is
``np.random.RandomState(seed + i).randn(z_dim)``, the z of seed ``seed + i`` in gen_images.py and the StyleGAN3
visualizer — through ``G.mapping`` on the model's device, in batches, and returns the top principal directions of w as
a `studio.latent.directions.Directions` (unit vectors ordered by variance, their standard deviations, and the mean w).

Memory stays bounded by the batch: nothing of size `count` is kept. Each batch's mean and centred scatter matrix
(w_dim × w_dim) are merged into running ones (Chan et al.'s pairwise update, stable where the naive E[wwᵀ] − E[w]E[w]ᵀ
cancels), accumulated in float32 on the model's device (MPS has no float64); the final eigendecomposition of the
w_dim × w_dim covariance runs in float64 on the CPU. The same G, count, seed and c give the same directions.

Works on any generator with ``G.mapping(z, c) -> ws [n, num_ws, w_dim]`` and ``z_dim``/``c_dim``/``w_dim``
attributes (studio.nets.stylegan_nv's StyleGAN2Generator / StyleGAN3Generator); no Qt, no file access (the cache beside
a package is studio.nets.stylegan_directions, a layer above: this module may not import studio.io).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from studio.latent.directions import Directions

# latents sampled. Measured on the tiny StyleGAN2 fixture: the top ten directions from 10 000 samples lie within
# |cos| 0.977 of those from 100 000 (stds within 2 %), except pairs of near-equal variance, which mix with each other
# at any count; from 1 000 samples only a few do.
DEFAULT_COUNT = 10_000
DEFAULT_K = 80  # directions kept (GANSpace's usual number of components)
DEFAULT_BATCH = 256

Progress = Callable[[int, int], None]


def nvidia_z(seeds: range | list[int], z_dim: int) -> torch.Tensor:
    """The z of each seed as NVIDIA's gen_images.py draws it, float32 [len(seeds), z_dim] on the CPU."""
    rows = [np.random.RandomState(int(s)).randn(z_dim) for s in seeds]
    return torch.from_numpy(np.stack(rows) if rows else np.zeros((0, z_dim))).to(torch.float32)


def class_vectors(G: Any, c: torch.Tensor | None, seeds: range) -> torch.Tensor | None:
    """The class vector of each sample (None for an unconditional G). For a conditional G without `c`, sample
    seed s takes class s mod c_dim (one-hot), so every class is represented equally and reproducibly; a given `c`
    of shape (c_dim,) or (1, c_dim) is used for every sample."""
    c_dim = int(getattr(G, "c_dim", 0))
    if c_dim == 0:
        if c is not None and c.numel() > 0:
            raise ValueError("this generator is unconditional: it takes no class vector")
        return None
    if c is None:
        idx = torch.tensor([s % c_dim for s in seeds], dtype=torch.long)
        return torch.nn.functional.one_hot(idx, c_dim).to(torch.float32)
    c = c.detach().to(torch.float32).reshape(-1, c.shape[-1]).cpu()
    if c.shape[-1] != c_dim or c.shape[0] != 1:
        raise ValueError(f"the class vector must have shape ({c_dim},) or (1, {c_dim}), not {list(c.shape)}")
    return c.expand(len(seeds), -1)


def _device_of(G: Any) -> torch.device:
    for t in G.parameters():
        return t.device
    return torch.device("cpu")


def compute_directions(G: Any, count: int = DEFAULT_COUNT, seed: int = 0, c: torch.Tensor | None = None,
                       device: torch.device | str | None = None, k: int = DEFAULT_K, batch: int = DEFAULT_BATCH,
                       progress: Progress | None = None) -> Directions:
    """GANSpace: the top-`k` principal directions of w = G.mapping(z, c) over `count` NVIDIA-seeded z's (seeds
    `seed` … `seed + count − 1`), computed on `device` (default: where G's weights are) in batches of `batch`.

    Returns Directions on the CPU in float32: `vectors` (k, w_dim) orthonormal, ordered by decreasing variance, with
    a deterministic sign (the largest-magnitude coordinate of each is positive, as principal_directions does);
    `stds` (k,) the standard deviation of w along each; `mean` (w_dim,) the mean w. `progress(done, count)` is
    called after every batch. Raises ValueError when count < 2 or `c` does not fit G."""
    if count < 2:
        raise ValueError("need at least two latents for principal directions")
    dev = torch.device(device) if device is not None else _device_of(G)
    w_dim = int(G.w_dim)
    n_total = 0
    mean = torch.zeros(w_dim, dtype=torch.float32, device=dev)
    scatter = torch.zeros(w_dim, w_dim, dtype=torch.float32, device=dev)
    with torch.inference_mode():
        for start in range(0, count, batch):
            seeds = range(seed + start, seed + min(start + batch, count))
            z = nvidia_z(seeds, int(G.z_dim)).to(dev)
            cs = class_vectors(G, c, seeds)
            ws = G.mapping(z, cs.to(dev) if cs is not None else None)
            w = ws[:, 0].to(torch.float32)  # the mapping repeats one w over every layer (no truncation here)
            n_b = w.shape[0]
            mean_b = w.mean(0)
            xc = w - mean_b
            scatter_b = xc.T @ xc
            # Chan et al.: merge (n, mean, scatter) with (n_b, mean_b, scatter_b)
            delta = mean_b - mean
            n_new = n_total + n_b
            scatter = scatter + scatter_b + torch.outer(delta, delta) * (n_total * n_b / n_new)
            mean = mean + delta * (n_b / n_new)
            n_total = n_new
            if progress is not None:
                progress(n_total, count)
    cov = (scatter.double().cpu() + scatter.double().cpu().T) / (2 * (n_total - 1))
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    k = min(k, w_dim, n_total)
    order = torch.argsort(evals, descending=True)[:k]
    vectors = evecs[:, order].T.contiguous()
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    vectors = vectors * signs
    stds = evals[order].clamp_min(0).sqrt()
    return Directions(vectors.float(), stds.float(), mean.double().cpu().float())
