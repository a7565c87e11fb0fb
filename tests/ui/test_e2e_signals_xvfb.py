"""Ctrl+C in the terminal (SIGINT) and SIGTERM quit the real app cleanly (studio.ui.signals): no traceback, exit code
128 + the signal, no "Unsaved Changes" question; unsaved edits stay in the autosave slot and the next start offers
them (a Ctrl+C at that question keeps them too); an unedited document leaves nothing, so the next start offers no
restore.

Real processes on a real X server (tests/ui/xharness.py)."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from xharness import App, Screen, wait_for, xdisplay  # noqa: F401 (a fixture)

AUTOSAVE_TICK_S = 17  # the window autosaves every 15 s (main_window.AUTOSAVE_MS): wait past one tick


def _stop_by(app: App, sig: int, timeout: float = 20) -> int:
    app.proc.send_signal(sig)
    try:
        code = app.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        app.kill()
        pytest.fail(f"the app did not exit within {timeout:.0f} s of {signal.Signals(sig).name}" + app.log())
    err = app.stderr.read_text(errors="replace")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, "the app printed a traceback" + app.log()
    assert code == 128 + sig, f"exit code {code}, expected {128 + sig}" + app.log()
    return code


def _slots(tmp) -> list[str]:
    folder = tmp / "data" / "autosave"
    return sorted(p.name for p in folder.glob("*.lstudio")) if folder.exists() else []


@pytest.mark.slow
def test_sigint_and_sigterm_quit_cleanly_keeping_only_edited_work(xdisplay, tmp_path):
    display = xdisplay(1280, 720)
    screen = Screen(display)
    run1, run2, run3 = (tmp_path / f"run{i}" for i in (1, 2, 3))
    for run in (run1, run2, run3):
        run.mkdir()
    env = {"LATENT_STUDIO_DATA": str(tmp_path / "data")}  # the three starts share one user data folder

    # 1. Nothing edited, past an autosave tick, then Ctrl+C: no autosave left behind.
    app = App.start(display, run1, env=env)
    try:
        app.geometry()
        window = app.main_window(screen)
        assert not screen.title(window).endswith("*"), screen.title(window)
        time.sleep(AUTOSAVE_TICK_S)
        assert app.proc.poll() is None, "the app exited by itself" + app.log()
        _stop_by(app, signal.SIGINT)
    finally:
        app.kill()
    assert _slots(tmp_path) == [], f"an unedited document was autosaved: {_slots(tmp_path)}"

    # 2. The next start offers no restore; an edit (Ctrl+R: a new seed), then SIGTERM: the edit is kept.
    app = App.start(display, run2, env=env)
    try:
        app.geometry()  # written once the first picture shows: after any recovery question
        assert not screen.windows("^Restore Unsaved Work$"), "a restore was offered after an unedited session"
        window = app.main_window(screen)
        screen.key(window, "ctrl+r")
        assert wait_for(lambda: screen.title(window).endswith("*"), 10), f"no edit: {screen.title(window)!r}"
        _stop_by(app, signal.SIGTERM)
        assert not screen.windows("^Unsaved Changes$")
    finally:
        app.kill()
    assert len(_slots(tmp_path)) == 1, f"the edit was not autosaved: {_slots(tmp_path)}"

    # 3. The next start offers it; Ctrl+C while the question is open is no answer: the autosave stays.
    asking = tmp_path / "asking"
    asking.mkdir()
    app = App.start(display, asking, env=env)
    try:
        asked = wait_for(lambda: screen.windows("^Restore Unsaved Work$") or app.proc.poll() is not None, 60)
        assert isinstance(asked, list) and asked, "no restore offered after SIGTERM with edits" + app.log()
        _stop_by(app, signal.SIGINT)
    finally:
        app.kill()
    assert len(_slots(tmp_path)) == 1, f"Ctrl+C at the restore question lost the autosave: {_slots(tmp_path)}"

    # 4. So the next start offers it again; Yes restores it (an edited, unsaved document).
    app = App.start(display, run3, env=env)
    try:
        asked = wait_for(lambda: screen.windows("^Restore Unsaved Work$") or app.proc.poll() is not None, 60)
        assert isinstance(asked, list) and asked, "no restore offered after SIGTERM with edits" + app.log()
        time.sleep(0.3)
        screen.key(asked[0], "Return")  # Yes is the default button
        app.geometry()
        window = app.main_window(screen)
        assert wait_for(lambda: screen.title(window).endswith("*"), 10), screen.title(window)
        app.quit(screen)
    finally:
        app.kill()
    assert _slots(tmp_path) == [], f"a clean quit left an autosave: {_slots(tmp_path)}"
