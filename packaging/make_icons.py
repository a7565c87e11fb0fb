"""Draw the application icon (studio/data/icons/): PNGs in the sizes desktops use, a Windows .ico and a macOS .icns.

    python packaging/make_icons.py

A dark rounded square holding a 4 × 4 field of latent cells whose colours and sizes vary smoothly (the latent grid),
crossed by a waveform (sound). Drawn once at 1024 px with Pillow and scaled down, so every size is the same picture.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
OUT = Path(__file__).resolve().parents[1] / "studio" / "data" / "icons"
BIG = 1024


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def draw() -> Image.Image:
    img = Image.new("RGBA", (BIG, BIG), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    margin, radius = 40, 200
    d.rounded_rectangle((margin, margin, BIG - margin, BIG - margin), radius, fill=(28, 30, 42, 255))
    cold, warm = (64, 196, 255), (236, 72, 153)
    n, inner = 4, 190
    step = (BIG - 2 * inner) / (n - 1)
    for row in range(n):
        for col in range(n):
            cx, cy = inner + col * step, inner + row * step
            t = (col + row) / (2 * n - 2)
            r = 58 + 34 * math.sin(1.3 * col + 0.9 * row + 0.4)
            d.rounded_rectangle((cx - r, cy - r, cx + r, cy + r), r * 0.35, fill=(*_mix(cold, warm, t), 255))
    wave = Image.new("RGBA", (BIG, BIG), (0, 0, 0, 0))
    w = ImageDraw.Draw(wave)
    points = [(x, BIG / 2 + 150 * math.sin((x - margin) / (BIG - 2 * margin) * 2 * math.pi * 1.5)
               * math.exp(-((x - BIG / 2) / 420) ** 2)) for x in range(margin + 30, BIG - margin - 30, 4)]
    w.line(points, fill=(0, 0, 0, 150), width=58, joint="curve")
    w.line(points, fill=(255, 255, 255, 255), width=30, joint="curve")
    img.alpha_composite(wave.filter(ImageFilter.GaussianBlur(1.5)))
    return img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    big = draw()
    for size in SIZES:
        big.resize((size, size), Image.Resampling.LANCZOS).save(OUT / f"latent-studio-{size}.png", optimize=True)
    big.resize((256, 256), Image.Resampling.LANCZOS).save(OUT / "latent-studio.ico",
                                                           sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    big.resize((512, 512), Image.Resampling.LANCZOS).save(OUT / "latent-studio.icns")
    print(f"wrote {len(SIZES)} PNGs, latent-studio.ico and latent-studio.icns to {OUT}")


if __name__ == "__main__":
    main()
