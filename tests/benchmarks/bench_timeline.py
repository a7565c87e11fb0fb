"""Timeline playback: the real main window (real Engine, real Session) playing a timeline through the preview lane.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_timeline.py [--model glyphs] [--models-dir DIR]
        [--device cpu] [--seconds 5] [--fps 24 --fps 60] [--sound-minutes 10] [--threads 1]

It builds the window as bench_gui.py does (settings in a temporary INI, user folders in a temporary folder, the
window shown — offscreen when there is no display), adds three keyframes of the model (seeds 1, 2, 3, their latents
computed on the worker as the Add Keyframe button does) and, for each --fps, plays the timeline with the Timeline
panel's own Play (a timer at that rate sends the frame due to the newest-wins preview lane) for --seconds, looping.
It first measures an idle baseline (the GUI thread's longest stall with nothing playing), then prints the frames
due, the frames shown (`Session.rendered` for the frames sent: studio.app.playback's
PlaybackMeter), the achieved fps and the GUI thread's longest stall meanwhile (a 1 ms timer; budget 16 ms).

With --sound-minutes N it then gives the timeline an N-minute WAV with an audio mapping and measures the GUI thread's
longest stall while the track's waveform and curve are computed (on a worker thread) and drawn.

It reports; it never fails on a timing (exit 2 only when the model cannot be found or loaded).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_common import finish_main, model_arguments, user_folders  # noqa: E402

if not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

STALL_BUDGET_MS = 16.0
TIMER_MS = 1
TIMEOUT_S = 120.0


def _longest(stamps: list[float]) -> float:
    return max((max(0.0, (b - a) * 1000.0 - TIMER_MS) for a, b in zip(stamps, stamps[1:])), default=math.nan)


def measure(model: str | None = None, models_dirs=(), device: str = "auto", seconds: float = 5.0,
            rates=(24.0,), sound_minutes: float = 0.0, threads: int = 1) -> dict:
    with user_folders("bench_timeline_") as tmp:
        return _measure(tmp, model, models_dirs, device, max(0.2, seconds), rates, sound_minutes, threads)


def _measure(tmp: Path, model, models_dirs, device, seconds, rates, sound_minutes, threads) -> dict:
    import numpy as np
    import soundfile as sf
    from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from studio.engine import Engine
    from studio.library import DEFAULT_MODEL_ID, default_roots, resolve

    roots = default_roots(models_dirs)
    entry = resolve(model or DEFAULT_MODEL_ID, roots)
    app = QApplication.instance()
    if app is None:
        from studio.ui.app import make_application

        app = make_application()
    from studio.ui.main_window import MainWindow
    from studio.ui.session import Session

    clock = time.perf_counter

    def spin(ms: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(max(0, round(ms)), loop.quit)
        loop.exec()

    def wait(predicate, what: str, timeout: float = TIMEOUT_S) -> None:
        deadline = clock() + timeout
        while not predicate():
            if clock() > deadline:
                raise RuntimeError(f"bench_timeline: {what} did not happen within {timeout:.0f} s")
            spin(5)

    gc_runs: list[tuple[float, float]] = []  # start, ms: a full collection of this process is a long stall
    gc_began = [0.0]

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            gc_began[0] = clock()
        else:
            gc_runs.append((gc_began[0], (clock() - gc_began[0]) * 1000.0))

    def longest_gc(start: float) -> float:
        return max((ms for began, ms in gc_runs if began >= start), default=0.0)

    gc.callbacks.append(on_gc)
    stamps: list[float] = []
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(TIMER_MS)
    probe.timeout.connect(lambda: stamps.append(clock()))
    engine = Engine(device=device, roots=roots, threads=threads)
    session = window = settings = None
    try:
        session = Session(engine, roots=roots)
        session.refresh_models()
        if session.entry_for(entry.id) is None:
            session.add_model_folder(entry.folder)
        settings = QSettings(str(tmp / "window.ini"), QSettings.Format.IniFormat)
        window = MainWindow(session, settings, autosave=None)
        window.resize(1280, 820)
        window.show()
        QTest.qWaitForWindowExposed(window, 5000)
        rendered = []
        session.rendered.connect(lambda *args: rendered.append(args))
        session.start(entry.id)
        wait(lambda: rendered, "the first render")
        panel = window.timeline
        for seed in (1, 2, 3):
            count = len(session.timeline.keyframes)
            session.change("Seed", seed=seed, latent=None)
            panel.add_at_playhead()
            wait(lambda: len(session.timeline.keyframes) == count + 1, f"keyframe {count + 1}")
        wait(lambda: not session.bridge.busy, "the engine going idle")
        spin(200)
        stamps.clear()
        probe.start()
        spin(seconds * 1000)  # the idle baseline: same window, nothing playing (what the machine itself costs)
        probe.stop()
        idle_ms = _longest(stamps)
        results = []
        for fps in rates:
            session.edit_timeline("Frame rate", fps=float(fps))
            panel.loop_play.setChecked(True)
            panel.track.set_playhead(0.0)
            stamps.clear()
            probe.start()
            dropped0 = session.bridge.dropped_frames
            panel.start_play()
            t0 = clock()
            spin(seconds * 1000)
            now = time.monotonic()
            shown, due = panel.meter.shown_total, panel.meter.due(now)
            elapsed = clock() - t0
            panel.stop()
            probe.stop()
            results.append({"fps": float(fps), "due": due, "shown": shown, "achieved": shown / elapsed,
                            "dropped": session.bridge.dropped_frames - dropped0, "stall_ms": _longest(stamps),
                            "seconds": elapsed, "gc_ms": longest_gc(t0)})
            wait(lambda: not session.bridge.busy, "the engine going idle")
        sound = None
        if sound_minutes > 0:
            rate = 44100
            n = int(sound_minutes * 60 * rate)
            t = np.arange(n, dtype=np.float32) / rate
            wave = 0.4 * np.sin(2 * np.pi * 110 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            path = tmp / "long.wav"
            sf.write(str(path), wave.astype(np.float32), rate)
            del wave, t
            stamps.clear()
            probe.start()
            t0 = clock()
            session.edit_timeline("Sound", audio=str(path))
            session.add_mapping("loudness", "d0")
            wait(lambda: panel.track.sketch is not None, "the waveform")
            peaks = clock() - t0
            wait(lambda: panel.track.sketch is not None and len(panel.track.sketch.curves) == 1, "the curve")
            ready = clock() - t0
            spin(300)  # its paints
            probe.stop()
            sound = {"minutes": sound_minutes, "peaks_s": peaks, "ready_s": ready, "stall_ms": _longest(stamps),
                     "gc_ms": longest_gc(t0)}
        return {"model": entry.id, "device": engine.device if hasattr(engine, "device") else device,
                "threads": threads, "platform": QApplication.platformName(), "runs": results, "sound": sound,
                "idle_ms": idle_ms, "seconds": seconds}
    finally:
        gc.callbacks.remove(on_gc)
        probe.stop()
        if window is not None and session is not None:
            session.undo.setClean()
            window.close()
        if session is not None:
            session.shutdown()
        else:
            engine.shutdown()
        for obj in (window, session):
            if obj is not None:
                obj.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()
        del settings


def report(r: dict) -> str:
    lines = [f"model {r['model']} on {r['device']}, worker torch threads {r['threads']}, main window shown on the "
             f"{r['platform']} platform; three keyframes, Loop Play",
             f"idle baseline ({r['seconds']:g} s, nothing playing): GUI stall max {r['idle_ms']:.1f} ms"]
    for run in r["runs"]:
        verdict = "PASS" if run["stall_ms"] <= STALL_BUDGET_MS else "OVER"
        lines.append(f"playing at {run['fps']:g} fps for {run['seconds']:.1f} s: {run['shown']} of {run['due']} frames "
                     f"shown = {run['achieved']:.1f} fps achieved ({run['dropped']} stale renders dropped by the "
                     f"preview lane); GUI stall max {run['stall_ms']:.1f} ms (budget ≤ {STALL_BUDGET_MS:g}: "
                     f"{verdict}; longest garbage collection meanwhile {run['gc_ms']:.1f} ms)")
    if r["sound"]:
        s = r["sound"]
        verdict = "PASS" if s["stall_ms"] <= STALL_BUDGET_MS else "OVER"
        lines.append(f"a {s['minutes']:g}-minute WAV with one mapping: waveform on the track after {s['peaks_s']:.2f} s, "
                     f"its curve after {s['ready_s']:.2f} s (worker thread); GUI stall max {s['stall_ms']:.1f} ms "
                     "meanwhile "
                     f"(budget ≤ {STALL_BUDGET_MS:g}: {verdict}; longest garbage collection meanwhile "
                     f"{s['gc_ms']:.1f} ms)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of play per rate (default 5)")
    parser.add_argument("--fps", type=float, action="append", help="frame rates to play at (default 24)")
    parser.add_argument("--sound-minutes", type=float, default=0.0,
                        help="also time the waveform of a sound this long (default: no sound)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the render worker (default 1)")
    args = parser.parse_args(argv)

    from studio.errors import StudioError

    def run() -> dict:
        return measure(args.model, args.models_dir, args.device, args.seconds, tuple(args.fps or (24.0,)),
                       args.sound_minutes, args.threads)

    return finish_main("bench_timeline", run, report, errors=(StudioError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
