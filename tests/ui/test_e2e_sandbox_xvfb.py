"""End to end, in the real window (Xvfb, xdotool, `import`; see test_e2e_xvfb.py): Esc ends a stuck forward.

A TorchScript model runs in the engine's worker process. We start the app on a normal scripted model (its first
preview shows, so the app reports where its widgets are), switch to a model whose forward never ends the way a user
does (the Models list: type its name, Enter), check the worker is busy in it, press Esc, and check that the worker
process is gone while the app, its window and its document (title, model, geometry) are as they were. Then we switch
back to the normal model the same way: a fresh worker renders it, the exact picture of the start comes back, and
Ctrl+R (a random seed) renders a new one. Ctrl+Q, Discard: the app exits cleanly and leaves no worker behind.

Issue 16 point 1 asks for the worker to end within 1 s; this test only bounds it generously (BOUND) and prints the
time it measured: a machine shared with other work must not make it fail.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from PIL import Image
from test_e2e_xvfb import (PREVIEW_CHANGED, SCREEN, Screen, _geometry, _start_app, _wait_for, crop, grey, mad,
                           xvfb)  # noqa: F401 (xvfb: the fixture)
from torch import nn

BOUND = 15.0  # s: Esc to the worker gone (issue 16 asks for 1 s; measured and printed, bounded generously here)
WORKER_MARK = "studio.engine.child"  # in the worker's command line (studio.engine.sandbox._BOOT)


class Generator(nn.Module):
    def __init__(self, latent: int = 4, size: int = 16):
        super().__init__()
        self.size = size
        self.fc = nn.Linear(latent, 3 * size * size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).reshape(-1, 3, self.size, self.size)


class Stuck(nn.Module):
    """A forward that never ends (tensor ops in an endless loop; they pass the operator allowlist)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        while bool(x.sum() < 1e30):
            x = x * 1.0 + 0.0
        return x.new_zeros(1, 3, 16, 16)


def make_package(folder: Path, module: nn.Module) -> Path:
    """A TorchScript model package (as tests/engine/test_sandbox.py builds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(module), str(folder / "generator.pt"))
    manifest = {
        "format": 1, "id": folder.name, "name": folder.name, "family": "torchscript", "version": "1.0",
        "license": "MIT", "weights": "generator.pt",
        "output": {"kind": "image", "width": 16, "height": 16, "channels": 3},
        "latent": {"shape": [4], "prior": "normal"}, "conditions": {"kind": "none"}, "architecture": {"range": "-1..1"},
    }
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _workers(parent: int) -> list[int]:
    """The render worker processes (children of `parent` running studio.engine.child), zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or fields[1] != str(parent):
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if WORKER_MARK in command:
            found.append(int(entry.name))
    return sorted(found)


def _cpu_seconds(pid: int) -> float | None:
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sandbox-e2e-models")
    make_package(root / "scripted", Generator())
    make_package(root / "stuck", Stuck())
    return root


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc (Linux)")
def test_esc_ends_a_stuck_forward_in_the_worker_and_the_next_model_renders_in_a_fresh_one(xvfb, tmp_path, models):
    screen = Screen(xvfb)
    report = tmp_path / "geometry.json"
    log_err = tmp_path / "app.stderr"
    app, app_log = _start_app(xvfb, tmp_path, report, "--models-dir", str(models), "--model", "scripted")
    try:
        # 1. The normal model's first preview is up: rendered in a worker process, a child of the app.
        geo = _geometry(app, report, app_log)
        ratio = float(geo.get("ratio", 1.0))

        def rect(name: str) -> tuple[int, int, int, int]:
            assert name in geo, f"{name!r} missing from the geometry report: {sorted(geo)}"
            x, y, w, h = (round(v * ratio) for v in geo[name])
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(SCREEN[0], x + w), min(SCREEN[1], y + h)
            assert x1 - x0 >= 8 and y1 - y0 >= 8, f"{name} is not on screen: {geo[name]}"
            return x0, y0, x1 - x0, y1 - y0

        preview, models_list = rect("previewImage"), rect("modelList")
        main = screen.windows("^Latent Studio")[0]
        workers = _workers(app.pid)
        assert len(workers) == 1, f"one worker process renders the TorchScript model: {workers}" + app_log()
        first = workers[0]

        def settled_shot() -> np.ndarray:
            def still():
                a = screen.shot()
                time.sleep(0.3)
                b = screen.shot()
                return (b,) if mad(crop(a, preview), crop(b, preview)) == 0 else None

            got = _wait_for(still, 20, 0)
            assert got, "the preview never settled" + app_log()
            return got[0]

        start = settled_shot()
        Image.fromarray(start).save(tmp_path / "sandbox-start.png")
        assert grey(crop(start, preview)).std() > 5, "the preview region looks blank" + app_log()

        def use_model(name: str) -> None:
            """As a user: click into the Models list, type the model's name (the list's keyboard search), Enter."""
            screen.xdotool("mousemove", "--sync", models_list[0] + models_list[2] // 2,
                           models_list[1] + models_list[3] // 2)  # (selects the row there: one click uses nothing)
            screen.xdotool("click", 1)
            time.sleep(0.3)
            screen.key(main, *name)  # one key per letter, 50 ms apart: well within the search's 400 ms interval
            time.sleep(0.2)
            screen.key(main, "Return")

        # 2. Switch to the stuck model: its first preview goes to the same worker, which then computes for ever.
        use_model("stuck")
        cpu = _cpu_seconds(first)
        busy = _wait_for(lambda: (_cpu_seconds(first) or 0) - (cpu or 0) > 1.0, 60, 0.2)
        assert busy, "the worker did not start computing the stuck model's forward within 60 s" + app_log()
        assert _workers(app.pid) == [first], "the stuck model runs in the same worker"
        assert _wait_for(lambda: "*" in screen.title(main), 5), "using another model modifies the document"
        title, where = screen.title(main), screen.xdotool("getwindowgeometry", main)
        stuck = settled_shot()
        Image.fromarray(stuck).save(tmp_path / "sandbox-stuck.png")

        # 3. Esc (the Cancel Render action): the worker process ends; the app, its window and document stay.
        pressed = time.monotonic()
        screen.key(main, "Escape")
        gone = _wait_for(lambda: _stat(first) is None, BOUND, 0.05)
        took = time.monotonic() - pressed
        print(f"\nEsc to the stuck worker (pid {first}) gone: {took:.2f} s")
        assert gone, (f"the stuck worker {first} still runs {BOUND} s after Esc (state {(_stat(first) or ['gone'])[0]})"
                      + app_log())
        time.sleep(1.0)  # let anything that would follow the cancel (a message, a model put back) happen
        cancelled = screen.shot(tmp_path / "sandbox-cancelled.png")
        assert app.poll() is None, "the app ended on Esc" + app_log()
        assert screen.windows("^Latent Studio") == [main], "the main window is not the same one after Esc"
        assert screen.title(main) == title, f"Esc changed the document: {title!r} → {screen.title(main)!r}"
        assert screen.xdotool("getwindowgeometry", main) == where, "the window moved or resized on Esc"
        assert mad(crop(stuck, preview), crop(cancelled, preview)) == 0, "Esc changed the preview"
        assert _workers(app.pid) == [], "no worker runs between requests after a cancel"

        # 4. Back to the normal model: a fresh worker renders it, the very picture of the start.
        use_model("scripted")
        fresh = _wait_for(lambda: _workers(app.pid), 60, 0.1)
        assert fresh and fresh[0] != first, f"a fresh worker process: {fresh} (the stuck one was {first})" + app_log()
        same = _wait_for(lambda: mad(crop(screen.shot(), preview), crop(start, preview)) == 0, 60, 0.2)
        back = screen.shot(tmp_path / "sandbox-back.png")
        diff = mad(crop(back, preview), crop(start, preview))
        assert same, f"the normal model's picture did not come back (diff {diff:.2f})" + app_log()
        # and it keeps rendering: Ctrl+R (a random seed) shows another picture, from the same fresh worker
        screen.key(main, "ctrl+r")
        changed = _wait_for(lambda: mad(crop(screen.shot(), preview), crop(start, preview)) > PREVIEW_CHANGED, 60,
                            0.2)
        assert changed, "Ctrl+R did not render another picture after the cancel" + app_log()
        Image.fromarray(settled_shot()).save(tmp_path / "sandbox-next.png")
        assert _workers(app.pid) == fresh
        names = ("start", "stuck", "cancelled", "back", "next")
        print("screenshots:", *(tmp_path / f"sandbox-{name}.png" for name in names))

        # 5. Quit, discarding the changes: a clean exit that ends the worker too.
        screen.key(main, "ctrl+q")
        dialogs = _wait_for(lambda: screen.windows("^Unsaved Changes$"), 10)
        assert dialogs, "Ctrl+Q on a modified document did not ask about unsaved changes" + app_log()
        time.sleep(0.3)
        screen.key(dialogs[0], "Tab", "space")
        try:
            code = app.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not exit within 20 s of Discard" + app_log())
        assert code == 0, f"exit code {code}" + app_log()
        assert _stat(fresh[0]) is None, "the worker outlived the app"
        assert "Traceback" not in log_err.read_text(errors="replace"), "the app printed a traceback" + app_log()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
