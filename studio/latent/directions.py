"""Principal directions of a latent space (PCA over encoded or sampled latents, as GANSpace does)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Directions:
    """Unit directions (k, d) with the spread of the data along each (k,), and the mean (d,)."""

    vectors: torch.Tensor
    stds: torch.Tensor
    mean: torch.Tensor

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def offset(self, index: int, amount: float) -> torch.Tensor:
        """The shift for moving `amount` standard deviations along direction `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"direction {index} does not exist (this model has {len(self)})")
        return self.vectors[index] * self.stds[index] * float(amount)

    def coordinates(self, z: torch.Tensor) -> torch.Tensor:
        """Where `z` sits along each direction, in standard deviations from the mean."""
        return ((z.reshape(-1) - self.mean) @ self.vectors.T) / self.stds.clamp_min(1e-12)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"vectors": self.vectors, "stds": self.stds, "mean": self.mean}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "Directions":
        vectors, stds, mean = tensors["vectors"].float(), tensors["stds"].float(), tensors["mean"].float()
        if vectors.ndim != 2 or stds.shape != (vectors.shape[0],) or mean.shape != (vectors.shape[1],):
            raise ValueError(f"inconsistent shapes: vectors {list(vectors.shape)}, stds {list(stds.shape)}, "
                             f"mean {list(mean.shape)}")
        return cls(vectors, stds, mean)


def principal_directions(latents: torch.Tensor, k: int | None = None) -> Directions:
    """PCA of `latents` (n, d): the top-k unit directions, ordered by variance, with a deterministic sign
    (the largest-magnitude coordinate of each direction is positive)."""
    x = latents.reshape(latents.shape[0], -1).to(torch.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError("need at least two latents for principal directions")
    k = min(k or d, d, n)
    mean = x.mean(0)
    xc = x - mean
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    vectors = vh[:k]
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    vectors = vectors * signs
    stds = s[:k] / (n - 1) ** 0.5
    return Directions(vectors.float(), stds.float(), mean.float())
