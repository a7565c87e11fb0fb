"""Make the contact sheets of the shipped glyph models: one block per seed 0–5, each block the 62 characters in five
rows of up to 13 (A–M, N–Z, a–m, n–z, 0–9), blocks 10 px apart, through the app's own `latent-studio sheet`.

    .venv/bin/python resources/contact-sheets/make_sheets.py [MODEL ...]   (default: glyphs glyph-gan glyph-diffusion)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROWS = ("ABCDEFGHIJKLM", "NOPQRSTUVWXYZ", "abcdefghijklm", "nopqrstuvwxyz", "0123456789")
SEEDS, GAP, CELL = 6, 10, 32


def sheet(model: str) -> np.ndarray:
    width = max(map(len, ROWS)) * CELL
    with tempfile.TemporaryDirectory() as tmp:
        per_row = []
        for i, text in enumerate(ROWS):
            out = Path(tmp) / f"{i}.png"
            subprocess.run([sys.executable, "-m", "studio", "sheet", "--model", model, "--rows", str(SEEDS),
                            "--prompt", text, "--threads", "1", "--out", str(out)], check=True,
                           stdout=subprocess.DEVNULL)
            with Image.open(out) as image:
                rows = np.asarray(image.convert("L"))
            space, uneven = divmod(rows.shape[0] - SEEDS * CELL, SEEDS - 1)  # the sheet's rows are spaced
            if uneven or rows.shape[1] != len(text) * CELL:
                raise SystemExit(f"{model}: unexpected sheet size {rows.shape} for {text!r}")
            rows = np.pad(rows, ((0, 0), (0, width - rows.shape[1])), constant_values=255)
            per_row.append([rows[s * (CELL + space):s * (CELL + space) + CELL] for s in range(SEEDS)])
    blocks = [np.concatenate([r[s] for r in per_row]) for s in range(SEEDS)]
    gap = np.full((GAP, width), 255, np.uint8)
    return np.concatenate([part for b in blocks for part in (b, gap)][:-1])


if __name__ == "__main__":
    for name in sys.argv[1:] or ["glyphs", "glyph-gan", "glyph-diffusion"]:
        Image.fromarray(sheet(name)).save(HERE / f"{name}.png", optimize=True)
        print("wrote", HERE / f"{name}.png")
