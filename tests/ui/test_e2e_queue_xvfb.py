"""The render queue in the real window (tests/ui/xharness.py): Ctrl+Enter typed with the focus in the prompt field
queues a render and brings the Queue forward; the Count spin box, set with real keys, makes the next Generate a job
of that many renders; every file lands in the user data folder with its request. The screenshot's path is printed
(pytest -s) for looking at."""

from __future__ import annotations

from pathlib import Path

from studio.export import read_request

from xharness import App, Screen, wait_for, xdisplay  # noqa: F401 (a fixture)

SIZE = (1440, 900)


def _renders(tmp: Path) -> list[Path]:
    return sorted((tmp / "data" / "renders").rglob("*.png"))


def test_ctrl_enter_from_the_prompt_and_a_count_typed_in_the_queue_dock(xdisplay, tmp_path):
    display = xdisplay(*SIZE)
    screen = Screen(display)
    app = App.start(display, tmp_path)  # the shipped default model (Glyph Styles)
    try:
        app.geometry()
        window = app.main_window(screen)
        screen.click(*app.centre("promptEdit"))
        screen.key(window, "ctrl+Return")
        assert wait_for(lambda: len(_renders(tmp_path)) == 1, 60), "Ctrl+Enter wrote nothing" + app.log()
        report = app.geometry(again=True)
        assert "queueJobs" in report and "queueCount" in report, "the Queue did not come forward" + app.log()
        count = app.centre("queueCount")
        screen.click(*count)
        screen.key(window, "ctrl+a")
        screen.xdotool("type", "--delay", "50", "3")
        screen.key(window, "ctrl+Return")  # from the spin box: Generate, not the spin box's own Enter
        assert wait_for(lambda: len(_renders(tmp_path)) == 4, 90), "the job of 3 did not finish" + app.log()
        files = _renders(tmp_path)
        first = read_request(files[0])
        seeds = [read_request(f).seed for f in files[1:]]
        assert first.model_id == "glyphs" and len(set(seeds)) == 3, seeds  # three seeds, by the seed mode
        shot = tmp_path / "queue.png"
        screen.shot(shot)
        print("screenshot:", shot)
        app.quit(screen)
    finally:
        app.kill()
