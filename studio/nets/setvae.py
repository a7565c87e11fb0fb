"""The set-encoder VAE (images, optionally with a class each) and the fitted prior shared with the audio VAE: the
networks the VAE family renders with and the VAE trainers train.

The encoder maps one or more images (each with its label, e.g. several glyphs of one font) to a single posterior
q(z | x_1..x_K) = N(μ, σ²) by averaging per-image features; the decoder draws p(x | z, label).
Loss: ELBO = E_q[log p(x | z, y)] − KL(q(z | ·) ‖ N(0, I)), with a Bernoulli likelihood on pixel intensities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# --- the network ------------------------------------------------------------------------------------------------


class FittedPrior(nn.Module):
    """For VAE networks: an optional Gaussian fitted to the encoded training latents after training.

    The artist's latent w is N(0, I) and maps to the decoder's z = mean + (w · scale) @ axes, so prior samples land
    where real data lies instead of in the holes between it. Identity until fitted. With `classes`, one Gaussian per
    class (the class's own mean, axes and spread): classes whose latents sit in different regions (a hat and a pad)
    then each sample from their own region, and axis k is class c's k-th principal way to vary.
    """

    latent_dim: int
    fitted_prior: bool
    prior_classes: int
    prior_mean: torch.Tensor  # buffers registered by _init_prior when fitted
    prior_axes: torch.Tensor
    prior_scale: torch.Tensor
    PRIOR_BUFFERS = ("prior_mean", "prior_axes", "prior_scale")  # fitted after training, not trained

    def _init_prior(self, latent_dim: int, fitted: bool, classes: int = 0) -> None:
        self.fitted_prior = fitted
        self.prior_classes = classes
        if fitted:
            lead = (classes,) if classes else ()
            self.register_buffer("prior_mean", torch.zeros(*lead, latent_dim))
            self.register_buffer("prior_axes", torch.eye(latent_dim).expand(*lead, -1, -1).clone())
            self.register_buffer("prior_scale", torch.ones(*lead, latent_dim))

    def _class_prior(self, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean (N, d), axes (N, d, d), scale (N, d)) of each row's class."""
        if labels is None:
            raise ValueError("this network's prior is fitted per class: give the class of each latent")
        return self.prior_mean[labels], self.prior_axes[labels], self.prior_scale[labels]

    def from_prior(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The artist's latent (prior N(0, I)) → the decoder's z (rows of `w`; `labels` for a per-class prior)."""
        if not self.fitted_prior:
            return w
        if not self.prior_classes:
            return self.prior_mean + (w * self.prior_scale) @ self.prior_axes
        mean, axes, scale = self._class_prior(labels)
        return mean + torch.einsum("nd,nde->ne", w * scale, axes)

    def to_prior(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's z → the artist's latent."""
        if not self.fitted_prior:
            return z
        if not self.prior_classes:
            return ((z - self.prior_mean) @ self.prior_axes.T) / self.prior_scale
        mean, axes, scale = self._class_prior(labels)
        return torch.einsum("nd,ned->ne", z - mean, axes) / scale

    @torch.no_grad()
    def fit_prior(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Fit the prior map to encoded latents z (n, latent_dim) (with their classes for a per-class prior): mean
        and principal axes with their spread."""
        from studio.latent.directions import principal_directions

        if not self.fitted_prior:
            raise ValueError("this network was built without a fitted prior")
        groups = [(None, z)] if not self.prior_classes else [(c, z[labels == c]) for c in range(self.prior_classes)]
        for c, rows in groups:
            fit = principal_directions(rows, k=self.latent_dim)
            if fit.vectors.shape[0] < self.latent_dim:
                which = f" of class {c}" if c is not None else ""
                raise ValueError(f"need at least {self.latent_dim} encoded latents{which} to fit the prior, "
                                 f"got {len(rows)}")
            index = () if c is None else (c,)
            self.prior_mean[index].copy_(fit.mean)
            self.prior_axes[index].copy_(fit.vectors)
            self.prior_scale[index].copy_(fit.stds.clamp_min(1e-4))


class SetVAE(FittedPrior, nn.Module):
    def __init__(self, image_size: int = 64, channels: int = 1, latent_dim: int = 32, num_classes: int = 0,
                 width: int = 32, class_dim: int = 32, hidden: int = 256, fitted_prior: bool = False):
        super().__init__()
        levels = int(math.log2(image_size // 4))
        if 4 * 2**levels != image_size:
            raise ValueError(f"image_size must be 4·2^n (8, 16, 32, 64, 128…), got {image_size}")
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        self.num_classes = num_classes
        self.class_dim = class_dim if num_classes else 0
        enc_ch = [channels] + [width * 2**i for i in range(levels)]
        top = enc_ch[-1]
        self.encoder = nn.Sequential(*[layer for i in range(levels) for layer in (
            nn.Conv2d(enc_ch[i], enc_ch[i + 1], 4, 2, 1), nn.SiLU())])
        if num_classes:
            self.enc_embed = nn.Embedding(num_classes, class_dim)
            self.dec_embed = nn.Embedding(num_classes, class_dim)
        self.enc_fc = nn.Linear(top * 16 + self.class_dim, hidden)
        self.enc_head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))
        cond = latent_dim + self.class_dim
        # Transposed convolutions, the last one straight to the output channels: at 64×64 the full-resolution
        # layers dominate CPU training time, so none runs there with more than one output map.
        dec_ch = [top // 2**i for i in range(levels)]
        self.dec_fc = nn.Linear(cond, top * 16)
        self.dec_convs = nn.ModuleList(nn.ConvTranspose2d(dec_ch[i], dec_ch[i + 1], 4, 2, 1)
                                       for i in range(levels - 1))
        self.dec_film = nn.ModuleList(nn.Linear(cond, 2 * dec_ch[i + 1]) for i in range(levels - 1))
        self.dec_out = nn.ConvTranspose2d(dec_ch[-1], channels, 4, 2, 1)
        self._top = top
        self._init_prior(latent_dim, fitted_prior)

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, K, C, H, W) in [0, 1], labels (B, K) → μ, log σ² of shape (B, latent_dim)."""
        b, k = images.shape[:2]
        h = self.encoder(images.reshape(b * k, *images.shape[2:])).flatten(1)
        if self.num_classes:
            if labels is None:
                raise ValueError("this VAE needs a label for every image")
            h = torch.cat([h, self.enc_embed(labels.reshape(b * k))], 1)
        # Non-linear per image before pooling, so each image's features depend on its own label.
        h = F.silu(self.enc_fc(h)).reshape(b, k, -1).mean(1)
        mu, logvar = self.enc_head(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, latent_dim), labels (N,) → logits (N, C, H, W)."""
        c = z
        if self.num_classes:
            if labels is None:
                raise ValueError("this VAE needs a label to decode")
            c = torch.cat([z, self.dec_embed(labels)], 1)
        x = self.dec_fc(c).reshape(-1, self._top, 4, 4)
        for conv, film in zip(self.dec_convs, self.dec_film):
            x = conv(x)
            scale, shift = film(c).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            x = F.silu(x * (1 + scale) + shift)
        return self.dec_out(x)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None, target_labels: torch.Tensor | None,
                generator: torch.Generator | None = None):
        """Encode a set per row, reparameterise, decode the targets: logits (B, T, C, H, W), μ, log σ², z."""
        mu, logvar = self.encode(images, labels)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        if target_labels is None:
            return self.decode(z).unsqueeze(1), mu, logvar, z
        b, t = target_labels.shape
        logits = self.decode(z.repeat_interleave(t, 0), target_labels.reshape(-1))
        return logits.reshape(b, t, *logits.shape[1:]), mu, logvar, z


# --- the objective ------------------------------------------------------------------------------------------------


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per row, summed over latent dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−log p(x | logits) per row (first dimension), summed over everything else."""
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return nll.reshape(nll.shape[0], -1).sum(-1)


def elbo(logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
         beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row (ELBO, reconstruction NLL, KL); the training loss is −ELBO averaged (β weights the KL)."""
    nll = bernoulli_nll(logits, target)
    kl = gaussian_kl(mu, logvar)
    return -(nll + beta * kl), nll, kl
