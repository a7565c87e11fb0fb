"""End to end, as a person uses the LoRA list: the real window on a real X server with a tiny Stable Diffusion
pipeline folder and a LoRA file in `loras/` beside it. A real click on Add LoRA adds a row for that file, real keys
type a weight into the row's box, and the request carries "ink:0.35" (read from the autosave the app writes when it
is ended by SIGTERM, as it keeps unsaved work); the preview changed with the LoRA on. Marked slow; skipped without
Xvfb, xdotool or ImageMagick."""

from __future__ import annotations

import signal
import subprocess

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from xharness import PREVIEW_CHANGED, App, Screen, crop, mad, wait_for, xdisplay  # noqa: E402,F401


def write_kohya_lora(path, unet, seed: int = 1, rank: int = 2) -> None:
    """A kohya/A1111 LoRA for the attention projections of the tiny UNet (what artists' LoRA files hold)."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(("to_q", "to_k", "to_v")):
            stem = "lora_unet_" + name.replace(".", "_")
            tensors[f"{stem}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=gen)
            tensors[f"{stem}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=gen)
            tensors[f"{stem}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


@pytest.mark.slow
def test_add_a_lora_and_type_its_weight_in_the_real_window(xdisplay, tmp_path):
    from sd_tiny import make_parts, make_pipeline_folder
    from studio.project import load_document

    parts = make_parts(0)
    pipe = make_pipeline_folder(tmp_path / "sd" / "tiny-pipe", parts=parts)
    write_kohya_lora(tmp_path / "sd" / "loras" / "ink.safetensors", parts[0])
    display = xdisplay(1440, 900)
    screen = Screen(display)
    app = App.start(display, tmp_path, "--model", str(pipe))
    try:
        geo = app.geometry()
        assert geo["model"] == "tiny-pipe", geo["model"]
        assert "loraAddButton" in geo and "loraRow_0_name" not in geo, sorted(k for k in geo if "lora" in k)
        window = app.main_window(screen)
        before = screen.settled(app.rect("previewImage"))
        screen.shot(tmp_path / "before.png")
        steps = geo["state"]["undo_index"]

        # a real click on Add LoRA: a row for the one LoRA beside the pipeline, weight 1
        screen.click(*app.centre("loraAddButton"))
        geo = wait_for(lambda: (g := app.geometry(again=True)) and "loraRow_0_weight" in g and g, 30)
        assert geo, "no LoRA row after clicking Add LoRA" + app.log()
        assert geo["state"]["undo_index"] == steps + 1
        for part in ("name", "weight", "remove"):
            assert f"loraRow_0_{part}" in geo

        # real keys into the weight box: select its text, type 0.35, Enter (one change, one undo step)
        screen.click(*app.centre("loraRow_0_weight"))
        screen.key(window, "ctrl+a")
        screen.xdotool("type", "--delay", 60, "0.35")
        screen.key(window, "Return")
        geo = wait_for(lambda: (g := app.geometry(again=True))["state"]["undo_index"] == steps + 2 and g, 30)
        assert geo, "typing a weight made no undo step" + app.log()
        assert wait_for(lambda: screen.title(window).endswith("*"), 10)
        after = screen.settled(app.rect("previewImage"), timeout=60)
        screen.shot(tmp_path / "after.png")
        assert mad(crop(before, app.rect("previewImage")), crop(after, app.rect("previewImage"))) > PREVIEW_CHANGED

        # SIGTERM: the app quits and keeps the unsaved document in its autosave slot, which names the request
        app.proc.send_signal(signal.SIGTERM)
        try:
            app.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not end within 30 s of SIGTERM" + app.log())
    finally:
        app.kill()
    slots = sorted((tmp_path / "data" / "autosave").glob("*.lstudio"))
    assert len(slots) == 1, f"no autosave: {slots}" + app.log()
    request = load_document(slots[0]).request
    assert request.params.get("loras") == "ink:0.35", request.params
