"""Make the README's screenshots in resources/screenshots/ from the real window (run it again after a layout change):

    .venv/bin/python packaging/make_screenshots.py

Each shot starts the app on a fresh Xvfb screen (a fresh user folder: a first start), as a user would, waits for the
model's final picture or sound, and saves the window alone, optimised with Pillow (at most 256 colours when the full
colour PNG is over 300 KB):

- main-window.png: the first start on the glyph model, at the first-start size on a 1440 × 900 screen;
- diffusion.png: the diffusion model on a 1280 × 720 laptop screen (every control reachable, the preview biggest);
- sound.png: the sound model's waveform, spectrogram and transport, at the first-start size;
- gallery.png: the GAN after a queued job of eight renders (Count typed in the Queue dock, Ctrl+Enter), the Gallery
  dock opened from its tab, at the first-start size;
- gallery-compare.png: two of them picked (click, Ctrl+click) and *Compare*: the gallery's viewer alone.

`python packaging/make_screenshots.py gallery.png` makes the named shots only.

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


def _open_tab(app: App, screen: Screen, title: str) -> dict:
    """Click a bottom dock's tab; the fresh geometry report once the dock shows."""
    geo = app.geometry(again=True)
    ratio = geo.get("ratio", 1.0)
    x, y, w, h = geo["dockTabs"][title]
    screen.click(int((x + w / 2) * ratio), int((y + h / 2) * ratio))
    time.sleep(1.0)
    return app.geometry(again=True)


def _queue_renders(app: App, screen: Screen, tmp: Path, count: int) -> None:
    """A job of `count` renders typed into the Queue dock and started with Ctrl+Enter, as a user would."""
    window = app.main_window(screen)
    screen.click(*app.centre("promptEdit"))
    screen.key(window, "ctrl+Return")  # one render; the Queue comes forward
    if not wait_for(lambda: len(list((tmp / "data" / "renders").rglob("*.png"))) == 1, 60):
        raise SystemExit("the queue wrote nothing" + app.log())
    app.geometry(again=True)
    screen.click(*app.centre("queueCount"))
    screen.key(window, "ctrl+a")
    screen.xdotool("type", "--delay", "50", str(count - 1))
    screen.key(window, "ctrl+Return")
    if not wait_for(lambda: len(list((tmp / "data" / "renders").rglob("*.png"))) == count, 120):
        raise SystemExit(f"the queue did not write {count} renders" + app.log())


def gallery_steps(app: App, screen: Screen, tmp: Path) -> tuple[int, int, int, int]:
    _queue_renders(app, screen, tmp, 8)
    screen.key(app.main_window(screen), "ctrl+r")  # the current picture is not one of the gallery's
    _open_tab(app, screen, "Gallery")
    time.sleep(1.5)  # the thumbnails load
    return app.rect("mainWindow")


def compare_steps(app: App, screen: Screen, tmp: Path) -> tuple[int, int, int, int]:
    _queue_renders(app, screen, tmp, 8)
    geo = _open_tab(app, screen, "Gallery")
    time.sleep(1.5)
    x, y, w, _ = app.rect("galleryView", geo)
    cell = int(112 * geo.get("ratio", 1.0))
    screen.click(x + cell // 2, y + cell // 2)  # the middle of a picture
    screen.xdotool("keydown", "ctrl")
    screen.click(x + cell + cell // 2, y + cell // 2)
    screen.xdotool("keyup", "ctrl")
    screen.click(*app.centre("galleryCompare"))
    if not wait_for(lambda: screen.windows("^Gallery — .* and "), 20):
        raise SystemExit("Compare did not open the viewer" + app.log())
    time.sleep(1.5)
    geo = app.geometry(again=True)
    return app.rect("galleryViewer", geo)


SHOTS = [  # file, screen size, model, steps after the first picture (they return the rectangle to keep) or None
    ("main-window.png", (1440, 900), "glyphs", None),
    ("diffusion.png", (1280, 720), "glyph-diffusion", None),
    ("sound.png", (1440, 900), "one-shots", None),
    ("gallery.png", (1440, 900), "glyph-gan", gallery_steps),
    ("gallery-compare.png", (1440, 900), "glyph-gan", compare_steps),
]


def shoot(name: str, size: tuple[int, int], model: str, tmp: Path, steps=None) -> Path:
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
        window = app.rect("mainWindow") if steps is None else steps(app, screen, tmp)
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
    wanted = set(sys.argv[1:])
    for name, size, model, steps in SHOTS:
        if wanted and name not in wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = shoot(name, size, model, Path(tmp), steps)
        with Image.open(path) as image:
            print(f"{path.relative_to(REPO)}: {model}, {image.width} × {image.height}, "
                  f"{path.stat().st_size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
