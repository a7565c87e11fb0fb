"""Score the shipped glyph models of every family on the same count with the same classifier: accuracy, Fréchet
distance to held-out real glyphs, and per-character style spread across seeds (studio.train.scoring.glyphs).

    python tests/benchmarks/bench_glyph_quality.py [--recipe recipes/glyph-gan.toml] [--samples 620]
        [--vae models/glyphs] [--diffusion models/glyph-diffusion] [--gan models/glyph-gan] [--gan OTHER ...]
        [--threads 1]

The recipe gives the fonts (its data table: installed Debian packages, or `roots` / `font_files`) and the held-out
families; the scoring classifier is the shared one (trained once per data set, kept in the user cache). Each model
draws `samples` glyphs, every character equally often, one seed each; the held-out real glyphs are scored the same way
as the yardstick (their spread: how differently real typefaces draw a character). Reports and exits 0; exit 2 when a
package or the fonts cannot be read. Plain script: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import cast

import torch

from studio.errors import StudioError
from studio.library import load_model, resolve
from studio.train.data.glyphs import glyph_data, ink_at
from studio.train.fonts import CHARSET
from studio.train.recipe import read_recipe
from studio.train.scoring.glyphs import balanced_labels, score, shared_classifier, vae_reference


def gan_ink(folder: Path, want: torch.Tensor, seed: int, psi: float = 1.0) -> torch.Tensor:
    from studio.nets.stylegan import StyleGenerator
    from studio.train.loops.gan import sample
    return sample(cast(StyleGenerator, load_model(resolve(str(folder)), "cpu", torch.float32).network), seed, want,
                  psi)


def diffusion_ink(folder: Path, want: torch.Tensor, seed: int) -> torch.Tensor:
    from studio.families.diffusion.family import DiffusionNet
    from studio.train.loops.diffusion import sample  # the family's default sampler, steps and guidance
    return sample(cast(DiffusionNet, load_model(resolve(str(folder)), "cpu", torch.float32).network), seed, want)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="recipes/glyph-gan.toml")
    p.add_argument("--samples", type=int, default=620)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--vae", default="models/glyphs")
    p.add_argument("--diffusion", default="models/glyph-diffusion")
    p.add_argument("--gan", action="append", default=None, help="a GAN package (repeat for several)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        recipe = read_recipe(Path(a.recipe))
        data = glyph_data(recipe, int(recipe.train.get("seed", 0)), log=lambda s: print(s, file=sys.stderr))
        size = 32
        clf = shared_classifier(data.train.numpy(), steps=int(recipe.evaluate.get("classifier_steps", 1500)),
                                log=lambda s: print(s, file=sys.stderr))
        held = ink_at(data.held, size)
        want = balanced_labels(a.samples, a.seed)
        rows: list[tuple[str, dict, float]] = []
        real_want = torch.arange(len(CHARSET)).repeat(len(data.held))
        t = time.perf_counter()
        rows.append((f"held-out real ({len(data.held)} faces)",
                     score(clf, held, real_want, ink_at(data.train, size)), time.perf_counter() - t))
        t = time.perf_counter()
        vae = {k[4:]: v for k, v in vae_reference(Path(a.vae), clf, held, a.samples, a.seed).items()}
        rows.append((f"VAE {a.vae}", vae, time.perf_counter() - t))
        t = time.perf_counter()
        rows.append((f"diffusion {a.diffusion}", score(clf, diffusion_ink(Path(a.diffusion), want, a.seed), want, held),
                     time.perf_counter() - t))
        for gan in a.gan or ["models/glyph-gan"]:
            for psi in (1.0, 0.7):
                t = time.perf_counter()
                rows.append((f"GAN {gan}" + (f" ψ {psi}" if psi != 1.0 else ""),
                             score(clf, gan_ink(Path(gan), want, a.seed, psi), want, held), time.perf_counter() - t))
    except (StudioError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.samples} samples per model ({a.samples // len(CHARSET)} per character), seed {a.seed}; "
          f"held-out families: {len(data.heldout_families)}; real reference: {len(held)} held-out glyphs "
          f"(Fréchet against the training faces)")
    print(f"{'model':<48} {'accuracy':>8} {'lenient':>8} {'Fréchet':>9} {'spread':>8} {'seconds':>8}")
    for name, s, sec in rows:
        print(f"{name:<48} {s['accuracy']:>8.4f} {s['accuracy_lenient']:>8.4f} {s['frechet_distance']:>9.2f} "
              f"{s['style_spread']:>8.3f} {sec:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
