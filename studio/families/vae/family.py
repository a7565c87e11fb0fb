"""The VAE family: a set-encoder VAE with an optional class (character) condition.

The encoder maps one or more images (each with its label, e.g. several glyphs of one font) to a single posterior
q(z | x_1..x_K) = N(μ, σ²) by averaging per-image features; the decoder draws p(x | z, label). With labels, z holds
only what the images share (the style) and the label says what to draw, so prior samples z ~ N(0, I) read as the
asked-for character. Without labels (num_classes = 0, one image per set) it is the classic VAE.

Loss: ELBO = E_q[log p(x | z, y)] − KL(q(z | ·) ‖ N(0, I)), with a Bernoulli likelihood on pixel intensities.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch

from studio.errors import ManifestError
from studio.families.base import Family, LoadedModel, arch_value, check_parameter_count
from studio.steps import Output, Progress, RenderSteps
from studio.params import Capability
from studio.families.cells import check_cell_manifest, compose_sheet, label_rows, prepare_cells
from studio.nets.setvae import SetVAE

# --- the family ---------------------------------------------------------------------------------------------------


class VAEFamily(Family):
    name = "vae"
    output_kinds = ("image",)
    capabilities = Capability.SAMPLE | Capability.ENCODE | Capability.DECODE

    def _config(self, manifest) -> dict:
        out = manifest.output
        cfg = {
            "image_size": arch_value(manifest, "image_size", int, out["width"], minimum=8),
            "channels": out["channels"],
            "latent_dim": manifest.latent.size,
            "num_classes": len(manifest.conditions.labels) if manifest.conditions.kind in ("class", "text") else 0,
            "width": arch_value(manifest, "width", int, 32, minimum=4),
            "class_dim": arch_value(manifest, "class_dim", int, 32, minimum=1),
            "hidden": arch_value(manifest, "hidden", int, 256, minimum=4),
            "fitted_prior": arch_value(manifest, "fitted_prior", bool, False),
        }
        return cfg

    def validate(self, manifest) -> None:
        super().validate(manifest)
        check_cell_manifest(manifest, self.name)
        out = manifest.output
        size = self._config(manifest)["image_size"]
        if size != out["width"] or 4 * 2 ** int(math.log2(max(size // 4, 1))) != size:
            raise ManifestError(f"must equal output.width and be 4·2^n, got {size}", manifest.path,
                                "architecture.image_size")

    def build(self, manifest) -> SetVAE:
        self.validate(manifest)
        config = self._config(manifest)
        check_parameter_count(manifest, lambda: SetVAE(**config))  # on the meta device, before any allocation
        return SetVAE(**config)

    # --- rendering ---
    def render(self, model: LoadedModel, request) -> RenderSteps:
        z = self.latent(model, request)
        rows = label_rows(model, request)
        yield Progress(0, 1, "decoding")
        net = cast(SetVAE, model.network)
        flat = [i for row in rows for i in row if i is not None]
        zd = z.to(model.device, model.dtype).reshape(1, -1).expand(max(len(flat), 1), -1)
        labels = torch.tensor(flat, dtype=torch.long, device=model.device) if net.num_classes else None
        cells = torch.sigmoid(net.decode(net.from_prior(zd), labels).float())  # (N, C, S, S), 1 = ink
        image = compose_sheet(model, request, rows, cells)
        yield Progress(1, 1, "done")
        return Output("image", image, {"cells": len(flat)})

    def encode(self, model: LoadedModel, images: np.ndarray, labels: list[str] | None = None) -> torch.Tensor:
        """Posterior mean of one set of images (N, H, W[, C]) uint8, with a label each when the model has classes.

        Dark-on-light and light-on-dark images both work; each is resized to the model's cell size.
        """
        net = cast(SetVAE, model.network)
        x, lab = prepare_cells(model, images, labels, net.image_size, net.channels)
        if lab is not None:
            lab = lab[None].to(model.device)
        mu, _ = net.encode(x[None].to(model.device, model.dtype), lab)
        return net.to_prior(mu)[0].float().cpu()
