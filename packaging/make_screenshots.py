"""Make the README's screenshots in resources/screenshots/ from the real window (run it again after a layout change):

    .venv/bin/python packaging/make_screenshots.py

Each shot starts the app on a fresh Xvfb screen (a fresh user folder: a first start), as a user would, waits for the
model's final picture or sound, and saves the window alone, optimised with Pillow (at most 256 colours when the full
colour PNG is over 300 KB):

- main-window.png: the first start on the glyph model, at the first-start size on a 1440 × 900 screen;
- diffusion.png: the diffusion model on a 1280 × 720 laptop screen (every control reachable, the preview biggest);
- sound.png: the sound model's waveform, spectrogram and transport, at the first-start size.

Needs Xvfb, xdotool and ImageMagick's `import` (packaging/bootstrap.sh --dev installs them on Debian).
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "ui"))

from PIL import Image  # noqa: E402

from xharness import App, Screen, missing_tools, start_xvfb, stop, wait_for  # noqa: E402

OUT = REPO / "resources" / "screenshots"
MAX_BYTES = 300_000
SHOTS = [  # file, screen size, model
    ("main-window.png", (1440, 900), "glyphs"),
    ("diffusion.png", (1280, 720), "glyph-diffusion"),
    ("sound.png", (1440, 900), "one-shots"),
]


def shoot(name: str, size: tuple[int, int], model: str, tmp: Path) -> Path:
    display, xvfb = start_xvfb(*size)
    app = App.start(display, tmp, "--model", model)
    try:
        screen = Screen(display)
        app.geometry()
        # the final picture (a diffusion model shows its steps): the render progress has gone, the time is shown
        done = wait_for(lambda: "renderProgress" not in (g := app.geometry(again=True)) and "renderTime" in g, 120,
                        0.5)
        if not done:
            raise SystemExit(f"{name}: {model} did not finish its first render in 120 s" + app.log())
        time.sleep(1.0)  # the status bar's transient messages and the last repaint
        window = app.rect("mainWindow")
        pixels = screen.settled(window)
        x, y, w, h = window
        image = Image.fromarray(pixels[y:y + h, x:x + w])
        path = OUT / name
        save_small(image, path)
        app.quit(screen)
        return path
    finally:
        app.kill()
        stop(xvfb)


def save_small(image: Image.Image, path: Path) -> None:
    """A PNG under MAX_BYTES when it can be: full colour if it fits, else an adaptive 256-colour palette."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        buffer = io.BytesIO()
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buffer, "PNG",
                                                                                           optimize=True)
    path.write_bytes(buffer.getvalue())


def main() -> int:
    missing = missing_tools()
    if missing:
        print(f"needs {', '.join(missing)} on PATH (Debian: apt-get install xvfb xdotool imagemagick)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    for name, size, model in SHOTS:
        with tempfile.TemporaryDirectory() as tmp:
            path = shoot(name, size, model, Path(tmp))
        with Image.open(path) as image:
            print(f"{path.relative_to(REPO)}: {model}, {image.width} × {image.height}, "
                  f"{path.stat().st_size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
