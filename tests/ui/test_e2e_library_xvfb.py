"""The latent library in the real window (Xvfb, xdotool): a Glyph GAN project whose library holds a seed's w (128
values) and a w+ (8 × 128, what a projection gives) opens; in the Library dock the Interpolate combos offer exactly
that pair, and a mouse drag of t morphs the preview with no message (before, each step of the drag failed with
"cannot interpolate latents of 1024 and 128 values": 25 identical errors for one drag).

The w+ is made here from the model itself (a seed's styles mixed with another seed's from layer 3 on: different per
layer, as a projection's are) instead of by projecting, which takes minutes on a CPU."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from xharness import PREVIEW_CHANGED, App, Screen, crop, mad, wait_for, xdisplay  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

MODEL = "glyph-gan"


def gan_latents() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The shipped Glyph GAN's w of seed 43 (128 values) and a w+ of seed 7 mixed with seed 99 (8 × 128)."""
    from studio.library import load_model, resolve
    from studio.request import RenderRequest

    model = load_model(resolve(MODEL))
    family = model.family
    w = family.latent(model, RenderRequest(MODEL, seed=43, params={"prompt": "Latent"}))
    w_plus = family.latent(model, RenderRequest(MODEL, seed=7, params={"prompt": "Latent", "mix_seed": 99,
                                                                        "mix_layer": 3}))
    assert w.numel() == 128 and w_plus.numel() == 1024, (w.shape, w_plus.shape)
    return tuple(w.flatten().tolist()), tuple(w_plus.flatten().tolist())


def make_project(path):
    from studio.project import Document, SavedLatent, save_document
    from studio.request import RenderRequest

    w, w_plus = gan_latents()
    document = Document(RenderRequest(MODEL, seed=43, params={"prompt": "Latent"}),
                        latents=[SavedLatent("seed 43", MODEL, "", w),
                                 SavedLatent("projected from my-letters.png", MODEL, "", w_plus)])
    return save_document(document, path)


def messages(app: App) -> list[str]:
    """The messages the app has shown so far (each is logged: "message: TEXT")."""
    log = app.tmp / "data" / "logs" / "latent-studio.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [line.split("message: ", 1)[1] for line in text.splitlines() if "message: " in line]


def test_a_w_and_a_w_plus_interpolate_by_mouse_with_at_most_one_message(xdisplay, tmp_path):
    project = make_project(tmp_path / "letters.lstudio")
    display = xdisplay(1440, 900)
    screen = Screen(display)
    app = App.start(display, tmp_path, str(project))
    try:
        geo = app.geometry()
        tab = geo["dockTabs"].get("Library")
        if tab:  # the Library dock shares its place with another dock: raise it
            screen.click(tab[0] + tab[2] // 2, tab[1] + tab[3] // 2)
            time.sleep(0.5)
            geo = app.geometry(again=True)
        assert "interpT" in geo, f"the Library dock did not come up: {sorted(geo)}" + app.log()
        slider, preview = app.rect("interpT", geo), app.rect("previewImage", geo)
        screen.move(5, 5)
        before = screen.settled(preview)
        Image.fromarray(before).save(tmp_path / "library-before.png")
        shown_before = len(messages(app))

        # drag t from 0 (its handle, 12 px wide, at the left end) to the right end with the mouse
        x, y = slider[0] + 6, slider[1] + slider[3] // 2
        screen.xdotool("mousemove", "--sync", x, y)
        time.sleep(0.2)
        screen.xdotool("mousedown", 1)
        for step in range(1, 26):
            time.sleep(0.05)
            screen.xdotool("mousemove", "--sync", x + (slider[2] - 12) * step // 25, y)
        time.sleep(0.1)
        screen.xdotool("mouseup", 1)
        screen.move(5, 5)

        changed = wait_for(lambda: mad(crop(screen.shot(), preview), crop(before, preview)) > PREVIEW_CHANGED, 30,
                           0.2)
        if not changed:
            screen.shot(tmp_path / "library-drag-failed.png")
        assert changed, "the preview did not change within 30 s of dragging t" + app.log()
        after = screen.settled(preview)
        Image.fromarray(after).save(tmp_path / "library-after.png")
        print(f"screenshots: {tmp_path / 'library-before.png'} {tmp_path / 'library-after.png'}")
        new = messages(app)[shown_before:]
        assert len(new) <= 1, f"one drag gave {len(new)} messages: {new}" + app.log()
        assert not any("interpolate" in text.lower() for text in new), new
        app.quit(screen)
    finally:
        app.kill()
