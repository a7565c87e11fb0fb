"""GUI responsiveness: the real main window (real Engine, real Session) while the preview renders.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_gui.py [--model glyphs] [--models-dir DIR]
        [--device cpu] [--seconds 5] [--moves 100] [--repeats 5]

It builds the window as the app does (themed QApplication, Engine, Session, MainWindow shown — offscreen when there
is no display — with its settings in a temporary INI and LATENT_STUDIO_DATA / LATENT_STUDIO_CACHE pointed at a
temporary folder, so no user file is read or written) and measures, in one run:

1. GUI-thread stall while the preview renders continuously: every finished preview moves the first principal
   direction slider (QSlider.setValue on the GUI thread, sweeping back and forth), so the worker never rests, for
   --seconds; meanwhile a 1 ms precise QTimer on the GUI thread stamps its callbacks. A stall is the gap between two
   callbacks minus the 1 ms period; it prints the longest, the 99th percentile and the median, the frames rendered
   and the canvas paints, and the same figures for an idle baseline (same window, nothing rendering).
   Design budget: longest stall <= 16 ms (one 60 Hz frame).
2. Slider burst -> final frame: one forward is the median render time on the worker (job.seconds) of isolated
   slider moves; a burst is --moves slider moves with distinct values, 2 ms of event loop between moves (like a
   drag; the worker stays busy), and the figure is the time from the last move to the `rendered` signal of the
   session's final request, as a multiple of one forward. Design budget: <= 2 forwards (the one in flight, then the
   newest). It also prints the frames rendered during each burst (far fewer than the moves: no backlog) and the
   stale frames the bridge dropped; --repeats bursts, median and worst.

The render worker runs with --threads torch threads (default 1: the GUI thread needs the other core on a small
machine). It reports; it never fails on a timing (exit 2 only when the model cannot be found or loaded).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "benchmarks"):  # run as a plain script from anywhere: the app, bench_common
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_common import finish_main, model_arguments, stall_stats, user_folders  # noqa: E402

if not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

STALL_BUDGET_MS = 16.0  # the GUI thread may stall at most one 60 Hz frame
BURST_BUDGET = 2.0  # the final frame of a burst comes at most two forwards after the last move
TIMER_MS = 1  # period of the GUI-thread probe timer
PAUSE_MS = 2  # event loop between two slider moves of a burst
FORWARDS = 15  # isolated moves timed for "one forward"
SLIDER = "d0"  # the first principal direction
TIMEOUT_S = 120.0  # longest wait for one render (the first one loads the model)


def _check_binding() -> None:
    """Refuse a PySide6 build that corrupts reference counts (seen: 6.12.0's abi3 wheel on Python 3.11 drops a
    reference to None on every void C++ call; Python < 3.12 then aborts with "deallocating None" after a few seconds
    of continuous rendering). constraints.txt keeps it out; this says so clearly if it comes back."""
    if sys.version_info >= (3, 12):  # None is immortal there
        return
    import PySide6
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(200):
        probe.setObjectName("probe")  # returns void
    if before - sys.getrefcount(None) > 100:
        raise RuntimeError(f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} leaks references to "
                           "None on void calls; install the version constraints.txt allows")


def _quiet_qt_messages():
    """Drop the offscreen plugin's "does not support propagateSizeHints()" chatter; returns the previous handler."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    return qInstallMessageHandler(handler)


def _stats(stamps: list[float]) -> dict:
    return stall_stats(stamps, TIMER_MS, STALL_BUDGET_MS)


def _gc_in(runs: list[tuple[float, float]], start: float, end: float) -> tuple[int, float]:
    """Cyclic garbage collections (any thread; they hold the GIL) that began in [start, end]: count, longest ms."""
    inside = [ms for began, ms in runs if start <= began <= end]
    return len(inside), max(inside, default=0.0)


def _sweep(count: int, lo: int, hi: int, reverse: bool = False) -> list[int]:
    """`count` distinct slider positions from lo to hi (as far as the integer range allows)."""
    if count <= 1:
        return [lo if reverse else hi]
    values = [round(lo + k * (hi - lo) / (count - 1)) for k in range(count)]
    return values[::-1] if reverse else values


def measure(model: str | None = None, models_dirs=(), device: str = "auto", seconds: float = 5.0,
            moves: int = 100, repeats: int = 5, threads: int = 1, forwards: int = FORWARDS,
            pause_ms: int = PAUSE_MS) -> dict:
    """Run both measurements on the real main window; figures in ms (see the module docstring)."""
    with user_folders("bench_gui_") as tmp:
        return _measure(tmp, model, models_dirs, device, max(0.05, seconds), max(1, moves),
                        max(1, repeats), threads, max(1, forwards), max(0, pause_ms))


def _measure(tmp: Path, model, models_dirs, device, seconds, moves, repeats, threads, forwards, pause_ms) -> dict:
    from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QObject, QSettings, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from studio.engine import Engine
    from studio.library import DEFAULT_MODEL_ID, default_roots, resolve

    roots = default_roots(models_dirs)
    entry = resolve(model or DEFAULT_MODEL_ID, roots)  # a StudioError names what is missing
    app = QApplication.instance()
    if app is None:
        from studio.ui.app import make_application

        app = make_application()

    from PySide6.QtCore import qInstallMessageHandler

    from studio.ui.main_window import MainWindow
    from studio.ui.session import ERROR, Session

    _check_binding()
    previous_handler = _quiet_qt_messages()

    clock = time.perf_counter

    class Recorder(QObject):
        """Stamps every `rendered` signal of the session; can wait (in an event loop) for one request's."""

        def __init__(self):
            super().__init__()
            self.frames: list[tuple[object, float, float]] = []  # request, when, job seconds
            self.errors: list[str] = []
            self._want = None
            self._loop: QEventLoop | None = None

        def on_rendered(self, request, seconds, _info) -> None:
            self.frames.append((request, clock(), seconds))
            if self._loop is not None and request == self._want:
                self._loop.quit()

        def on_message(self, level, text, detail) -> None:
            if level == ERROR:
                self.errors.append(f"{text}: {detail}" if detail and detail != text else text)
                if self._loop is not None:
                    self._loop.quit()

        def find(self, request, start: int):
            for frame in self.frames[start:]:
                if frame[0] == request:
                    return frame
            return None

        def wait_for(self, request, start: int, timeout: float = TIMEOUT_S):
            """The (request, when, seconds) of the first frame of `request` at index >= start."""
            found = self.find(request, start)
            if found is None and not self.errors:
                self._want, self._loop = request, QEventLoop()
                QTimer.singleShot(int(timeout * 1000), self._loop.quit)
                self._loop.exec()
                self._want, self._loop = None, None
                found = self.find(request, start)
            if found is None:
                why = self.errors[-1] if self.errors else f"no frame within {timeout:.0f} s"
                raise RuntimeError(f"bench_gui: the preview of {request} did not arrive: {why}")
            return found

    class PaintCounter(QObject):
        def __init__(self):
            super().__init__()
            self.paints = 0

        def eventFilter(self, _obj, event) -> bool:
            if event.type() == QEvent.Type.Paint:
                self.paints += 1
            return False

    def spin(ms: float) -> None:
        """Run the event loop for `ms` milliseconds (as the app does between two user inputs)."""
        loop = QEventLoop()
        QTimer.singleShot(max(0, round(ms)), loop.quit)
        loop.exec()

    def wait_idle(timeout: float = TIMEOUT_S) -> None:
        """Spin the event loop until the bridge has no preview or task in flight."""
        deadline = clock() + timeout
        while session.bridge.busy and clock() < deadline:
            spin(5)

    engine = Engine(device=device, roots=roots, threads=threads)
    session = window = settings = None
    recorder, painter = Recorder(), PaintCounter()
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(TIMER_MS)
    stamps: list[float] = []
    probe.timeout.connect(lambda: stamps.append(clock()))
    driver = {"on": False, "k": 0}
    gc_runs: list[tuple[float, float]] = []  # start, ms
    gc_began = [0.0]

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            gc_began[0] = clock()
        else:
            gc_runs.append((gc_began[0], (clock() - gc_began[0]) * 1000.0))

    gc.callbacks.append(on_gc)
    try:
        session = Session(engine, roots=roots)
        session.rendered.connect(recorder.on_rendered)
        session.message.connect(recorder.on_message)
        session.refresh_models()
        if session.entry_for(entry.id) is None:  # a package folder outside the roots
            session.add_model_folder(entry.folder)
        settings = QSettings(str(tmp / "window.ini"), QSettings.Format.IniFormat)
        window = MainWindow(session, settings, autosave=None)
        window.show()
        QTest.qWaitForWindowExposed(window, 5000)
        session.start(entry.id)
        if session.request is None or session.request.model_id != entry.id:
            raise RuntimeError(f"bench_gui: the session did not start on {entry.id}: {recorder.errors}")
        if SLIDER not in window.latent.sliders:
            raise RuntimeError(f"bench_gui: model {entry.id} has no principal directions (no {SLIDER} slider)")
        slider = window.latent.sliders[SLIDER].slider
        lo, hi = slider.minimum(), slider.maximum()
        recorder.wait_for(session.request, 0)  # loads the model, warms the kernels
        canvas = window.canvas
        canvas.installEventFilter(painter)

        # --- 1. GUI-thread stall: idle baseline, then continuous rendering --------------------------------------
        spin(200)  # let the first paints settle
        stamps.clear()
        probe.start()
        spin(seconds * 1000)
        probe.stop()
        idle = _stats(stamps)
        idle_gc = _gc_in(gc_runs, stamps[0], stamps[-1]) if stamps else (0, 0.0)

        drag = _sweep(max(2, (hi - lo) // 10 + 1), lo, hi)
        drag = drag + drag[-2:0:-1]  # back and forth

        def drive(*_args) -> None:  # on every finished preview: the next slider position
            if driver["on"]:
                driver["k"] += 1
                slider.setValue(drag[driver["k"] % len(drag)])

        session.rendered.connect(drive)
        first, paints0 = len(recorder.frames), painter.paints
        stamps.clear()
        probe.start()
        t0 = clock()
        driver["on"] = True
        drive()
        spin(seconds * 1000)
        driver["on"] = False
        busy_s = clock() - t0
        probe.stop()
        busy = _stats(stamps)
        busy_gc = _gc_in(gc_runs, stamps[0], stamps[-1]) if stamps else (0, 0.0)
        frames = len(recorder.frames) - first
        paints = painter.paints - paints0
        session.rendered.disconnect(drive)
        wait_idle()  # the last one in flight

        # --- 2a. one forward, and the latency of one isolated move ------------------------------------------------
        job_seconds, latencies = [], []
        for value in _sweep(forwards + 1, lo // 2, hi // 2)[1:]:
            if value == slider.value():
                value += 1
            start = len(recorder.frames)
            t_move = clock()
            slider.setValue(value)
            _, t_frame, job_s = recorder.wait_for(session.request, start)
            latencies.append(t_frame - t_move)
            job_seconds.append(job_s)
        forward = statistics.median(job_seconds)

        # --- 2b. slider bursts -----------------------------------------------------------------------------------
        finals, burst_frames, burst_dropped, burst_job, burst_spans = [], [], [], [], []
        for _ in range(repeats):
            wait_idle()
            spin(50)
            values = _sweep(moves, lo, hi, reverse=(slider.value() > 0))
            start, dropped0 = len(recorder.frames), session.bridge.dropped_frames
            t_first = t_move = clock()
            for i, value in enumerate(values):
                t_move = clock()
                slider.setValue(value)
                if i < len(values) - 1:
                    spin(pause_ms)
            final = session.request
            _, t_frame, _ = recorder.wait_for(final, start)
            finals.append(t_frame - t_move)
            burst_spans.append(t_move - t_first)
            got = [f for f in recorder.frames[start:] if f[1] <= t_frame]
            burst_frames.append(len(got))
            burst_job.extend(f[2] for f in got)
            burst_dropped.append(session.bridge.dropped_frames - dropped0)
        spin(50)

        final_med = statistics.median(finals)
        return {
            "model": entry.id, "folder": str(entry.folder), "device": str(engine.device), "threads": engine.threads,
            "platform": app.platformName(), "seconds": seconds, "moves": moves, "repeats": repeats,
            "forwards": forwards, "pause_ms": pause_ms,
            "stall_max_ms": busy["max"], "stall_p99_ms": busy["p99"], "stall_median_ms": busy["median"],
            "stall_ticks": busy["ticks"], "stall_over": busy["over"], "gc_runs": busy_gc[0], "gc_max_ms": busy_gc[1],
            "stall_idle_max_ms": idle["max"], "stall_idle_p99_ms": idle["p99"],
            "stall_idle_median_ms": idle["median"], "stall_idle_ticks": idle["ticks"], "stall_idle_over": idle["over"],
            "gc_idle_runs": idle_gc[0], "gc_idle_max_ms": idle_gc[1],
            "frames": frames, "fps": frames / busy_s if busy_s > 0 else math.nan, "paints": paints,
            "forward_ms": forward * 1000.0, "move_latency_ms": statistics.median(latencies) * 1000.0,
            "burst_final_ms": final_med * 1000.0, "burst_final_worst_ms": max(finals) * 1000.0,
            "burst_ratio": final_med / forward, "burst_ratio_worst": max(finals) / forward,
            "burst_frames": statistics.median(burst_frames), "burst_frames_all": burst_frames,
            "burst_dropped": burst_dropped, "burst_span_ms": statistics.median(burst_spans) * 1000.0,
            "burst_forward_ms": statistics.median(burst_job) * 1000.0 if burst_job else math.nan,
            "dropped_frames": session.bridge.dropped_frames,
            "stall_budget_ms": STALL_BUDGET_MS, "burst_budget": BURST_BUDGET,
        }
    finally:
        gc.callbacks.remove(on_gc)
        driver["on"] = False
        probe.stop()
        if window is not None:
            window.canvas.removeEventFilter(painter)
            session.undo.setClean()  # no "save changes?" question on close
            window.close()
        if session is not None:
            session.shutdown()  # stops the engine's worker
        else:
            engine.shutdown()
        for obj in (window, session):
            if obj is not None:
                obj.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()
        if settings is not None:
            settings.sync()
        del settings
        qInstallMessageHandler(previous_handler)


def _verdict(value: float, budget: float) -> str:
    return "PASS" if value <= budget else "OVER"


def report(r: dict) -> str:
    frames = ", ".join(str(n) for n in r["burst_frames_all"])
    dropped = ", ".join(str(n) for n in r["burst_dropped"])
    return "\n".join([
        f"model {r['model']} ({r['folder']}) on {r['device']}, worker torch threads {r['threads']}, "
        f"main window shown on the {r['platform']} platform",
        f"1. GUI-thread stall ({r['seconds']:g} s each; {TIMER_MS} ms timer on the GUI thread; stall = gap - "
        f"{TIMER_MS} ms)",
        f"   rendering continuously : max {r['stall_max_ms']:.2f} ms, p99 {r['stall_p99_ms']:.2f} ms, "
        f"median {r['stall_median_ms']:.3f} ms  (budget ≤ {r['stall_budget_ms']:g} ms: "
        f"{_verdict(r['stall_max_ms'], r['stall_budget_ms'])})",
        f"   idle baseline          : max {r['stall_idle_max_ms']:.2f} ms, p99 {r['stall_idle_p99_ms']:.2f} ms, "
        f"median {r['stall_idle_median_ms']:.3f} ms",
        f"   frames rendered        : {r['frames']} ({r['fps']:.1f}/s), canvas paints {r['paints']}, "
        f"timer ticks {r['stall_ticks']} rendering / {r['stall_idle_ticks']} idle",
        f"   stalls over budget     : {r['stall_over']} rendering / {r['stall_idle_over']} idle; garbage "
        f"collections {r['gc_runs']} (longest {r['gc_max_ms']:.2f} ms) rendering / {r['gc_idle_runs']} "
        f"(longest {r['gc_idle_max_ms']:.2f} ms) idle",
        f"2. slider burst → final frame ({r['moves']} moves, {r['pause_ms']} ms apart, {r['repeats']} bursts)",
        f"   one forward            : {r['forward_ms']:.2f} ms (median job.seconds of {r['forwards']} isolated "
        f"moves); one move → its frame {r['move_latency_ms']:.2f} ms (median)",
        f"   last move → final frame: median {r['burst_final_ms']:.2f} ms = {r['burst_ratio']:.2f} forwards  "
        f"(budget ≤ {r['burst_budget']:g}: {_verdict(r['burst_ratio'], r['burst_budget'])})",
        f"   worst burst            : {r['burst_final_worst_ms']:.2f} ms = {r['burst_ratio_worst']:.2f} forwards  "
        f"(budget ≤ {r['burst_budget']:g}: {_verdict(r['burst_ratio_worst'], r['burst_budget'])})",
        f"   frames per burst       : {frames} for {r['moves']} moves each (median {r['burst_frames']:g}); "
        f"burst {r['burst_span_ms']:.0f} ms long; forward during bursts {r['burst_forward_ms']:.2f} ms (median)",
        f"   stale frames dropped   : {dropped} per burst (bridge.dropped_frames {r['dropped_frames']} in all)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(parser)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each stall measurement (default 5)")
    parser.add_argument("--moves", type=int, default=100, help="slider moves per burst (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="bursts (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the render worker (default 1)")
    parser.add_argument("--forwards", type=int, default=FORWARDS,
                        help=f"isolated moves timed for one forward (default {FORWARDS})")
    parser.add_argument("--pause-ms", type=int, default=PAUSE_MS,
                        help=f"event loop between two moves of a burst, in ms (default {PAUSE_MS})")
    args = parser.parse_args(argv)

    from studio.errors import StudioError

    def run() -> dict:
        return measure(args.model, args.models_dir, args.device, args.seconds, args.moves, args.repeats, args.threads,
                       args.forwards, args.pause_ms)

    return finish_main("bench_gui", run, report, errors=(StudioError,))  # nothing to measure: say why


if __name__ == "__main__":
    sys.exit(main())
