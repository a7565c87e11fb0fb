"""`latent-studio --self-test`: a quick check that an installed or frozen app works on this machine.

    code = run_self_test()            # prints one line per check and a summary; 0 when all passed, else 1

It runs offscreen (QT_QPA_PLATFORM=offscreen unless the caller chose a platform) with temporary user data and cache
folders, so the user's settings, autosaves and models are never touched, and it checks:

- the main window: built on the shipped models, shown offscreen until its first preview arrives, painted, closed;
- every shipped model package: valid, rendered on the export lane, its output shaped as its manifest says;
- every export format, written to a temporary folder and read back: PNG (the request in its metadata), WAV and FLAC
  (the request, and the right number of samples), MP4 and GIF (a few frames of an animation, counted and measured).

Every check is independent: a failure (or a crash) is reported on its line and the others still run. Nothing here
depends on the current directory or on the repository's folders, so it runs the same in a PyInstaller bundle.
Qt is imported only inside the window check, after the environment is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from studio import __version__
from studio.engine import EXPORT, Engine
from studio.steps import Output
from studio.library import DEFAULT_MODEL_ID, PackageEntry, scan
from studio.manifest import Manifest
from studio.paths import shipped_models_dir
from studio.request import RenderRequest

Out = Callable[[str], None]

WINDOW_TIMEOUT_S = 60.0  # the window's first preview (the default model, loaded and rendered on the CPU)
RENDER_TIMEOUT_S = 120.0  # one render, or one short animation, on the export lane
ANIMATION_SEEDS = (0, 1, 2, 3)  # the frames of the MP4 and GIF checks
ANIMATION_FPS = 8
ENVIRONMENT = ("QT_QPA_PLATFORM", "LATENT_STUDIO_DATA", "LATENT_STUDIO_CACHE")
# Harmless Qt chatter on a headless machine: the offscreen plugin's window hints, and no sound server to connect to.
QUIET_QT_MESSAGES = ("propagateSizeHints", "pa_context_connect")


class CheckFailed(Exception):
    """What a check found wrong (reported as its message alone; a crash is reported with its type)."""


@contextlib.contextmanager
def isolated_environment(folder: Path) -> Iterator[None]:
    """Offscreen Qt (unless a platform is set) and user data / cache folders under `folder`; restored afterwards."""
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["LATENT_STUDIO_DATA"] = str(folder / "data")
    os.environ["LATENT_STUDIO_CACHE"] = str(folder / "cache")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_self_test(out: Out = print, device: str = "cpu", debug: bool = False) -> int:
    """Run every check, print one line each and a summary; 0 when all passed, 1 otherwise. `debug` adds the
    traceback of each crash."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="latent-studio-self-test-", ignore_cleanup_errors=True) as tmp:
        with isolated_environment(Path(tmp)):
            test = _SelfTest(out, device, Path(tmp) / "exports", debug)
            test.run()
    seconds = time.perf_counter() - start
    if test.failed:
        out(f"self-test FAILED: {len(test.failed)} of {test.count} checks failed in {seconds:.1f} s: "
            + ", ".join(test.failed))
        return 1
    out(f"self-test passed: {test.count} checks in {seconds:.1f} s")
    return 0


class _SelfTest:
    def __init__(self, out: Out, device: str, folder: Path, debug: bool):
        self.out, self.device, self.folder, self.debug = out, device, folder, debug
        self.models = shipped_models_dir()
        self.failed: list[str] = []
        self.count = 0
        self.entries: list[PackageEntry] = []
        self.rendered: dict[str, tuple[PackageEntry, RenderRequest, Output]] = {}

    # --- running checks -------------------------------------------------------------------------------------------
    def check(self, name: str, body: Callable[[], str]) -> None:
        """Run one check: "ok   NAME (NOTE, N ms)" or "FAIL NAME: what went wrong"; never raises."""
        self.count += 1
        t0 = time.perf_counter()
        try:
            note = body()
        except Exception as exc:
            self.failed.append(name)
            self.out(f"FAIL {name}: {_describe(exc)}")
            if self.debug and not isinstance(exc, CheckFailed):
                self.out(traceback.format_exc().rstrip())
            return
        ms = (time.perf_counter() - t0) * 1000
        self.out(f"ok   {name} ({note + ', ' if note else ''}{ms:.0f} ms)")

    def run(self) -> None:
        import torch

        frozen = " (frozen)" if getattr(sys, "frozen", False) else ""
        self.out(f"latent-studio {__version__}{frozen} self-test: Python {platform.python_version()}, "
                 f"torch {torch.__version__}, device {self.device}, models in {self.models}")
        self.check("device", self._device)
        if self.failed:  # nothing renders without it
            return
        self.check("models", self._scan)
        self.check("window", self._window)
        with Engine(device=self.device, roots=[self.models]) as engine:
            for entry in self.entries:
                self.check(f"render {entry.id}", partial(self._render, engine, entry))
            images = [r for r in self.rendered.values() if r[2].kind == "image"]
            sounds = [r for r in self.rendered.values() if r[2].kind == "audio"]
            for entry, request, output in images:
                self.check(f"export PNG {entry.id}", partial(self._png, entry, request, output))
            for fmt in ("WAV", "FLAC"):
                if not sounds:
                    self.check(f"export {fmt}", _fails("no shipped model rendered a sound to export"))
                for entry, request, output in sounds:
                    self.check(f"export {fmt} {entry.id}", partial(self._sound, fmt, entry, request, output))
            animated = self._animation_model()
            for fmt in ("MP4", "GIF"):
                if animated is None:
                    self.check(f"export {fmt}", _fails("there is no valid image model to animate"))
                else:
                    self.check(f"export {fmt} {animated.id}", partial(self._animation, engine, animated, fmt))

    # --- the checks -------------------------------------------------------------------------------------------------
    def _device(self) -> str:
        from studio.engine.device import pick_device

        return str(pick_device(self.device))

    def _scan(self) -> str:
        if not self.models.is_dir():
            raise CheckFailed(f"the shipped models folder is missing: {self.models}")
        self.entries = scan([self.models])
        if not self.entries:
            raise CheckFailed(f"no model packages in {self.models}")
        invalid = sum(not e.ok for e in self.entries)
        return f"{len(self.entries)} packages" + (f", {invalid} invalid" if invalid else "")

    def _window(self) -> str:
        """The real main window offscreen on the shipped models: built, shown, first preview, painted, closed."""
        from PySide6.QtCore import qInstallMessageHandler

        def quiet(mode, context, message: str) -> None:
            if any(part in message for part in QUIET_QT_MESSAGES):
                return
            if previous is not None:
                previous(mode, context, message)
            else:
                print(message, file=sys.stderr)

        previous = qInstallMessageHandler(quiet)
        try:
            return self._open_window()
        finally:
            qInstallMessageHandler(previous)

    def _open_window(self) -> str:
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QTimer

        from studio.ui.app import make_application, settings

        app = make_application()  # first: it quiets Qt Multimedia's start-up chatter, which the window imports
        from studio.ui.main_window import MainWindow
        from studio.ui.session import ERROR, Session

        engine = Engine(device=self.device, roots=[self.models])
        session = window = None
        errors: list[str] = []
        rendered: list[RenderRequest] = []  # the first preview's request, once it arrives
        failed: list[str] = []  # or why it did not
        loop = QEventLoop()
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        try:
            session = Session(engine, roots=[self.models])
            session.message.connect(lambda level, text, detail: errors.append(text) if level == ERROR else None)

            def on_rendered(request: RenderRequest, seconds: float, info: dict) -> None:
                if not rendered:  # the first one counts
                    rendered.append(request)
                loop.quit()

            def on_failed(request: RenderRequest, text: str, detail: str) -> None:
                if not failed:  # the first one counts
                    failed.append(text)
                loop.quit()

            session.rendered.connect(on_rendered)
            session.bridge.failed.connect(on_failed)
            window = MainWindow(session, settings(), None)
            t0 = time.perf_counter()
            session.start()
            session.undo.setClean()
            window.show()
            if session.request is None:
                raise CheckFailed("the window opened, but no shipped model is usable to preview")
            if not rendered and not failed:
                timer.start(int(WINDOW_TIMEOUT_S * 1000))
                loop.exec()
                timer.stop()
            first = (time.perf_counter() - t0) * 1000
            if failed:
                raise CheckFailed(f"the first preview failed: {failed[0]}")
            if not rendered:
                raise CheckFailed(f"no preview within {WINDOW_TIMEOUT_S:g} s" +
                                  (f" ({'; '.join(errors)})" if errors else ""))
            if errors:
                raise CheckFailed("the window reported: " + "; ".join(errors))
            output = session.last_output
            if output is not None and output.kind == "image":
                shown = window.canvas.image()
                if shown is None or (shown.width(), shown.height()) != output.size:
                    raise CheckFailed("the preview canvas does not show the rendered image")
            if window.grab().isNull():
                raise CheckFailed("the window could not be painted")
            if not window.close():
                raise CheckFailed("the window refused to close")
            model = rendered[0].model_id
            return f"{model}, first preview after {first:.0f} ms, Qt {pyside_version} {app.platformName()}"
        finally:
            if session is not None:
                session.shutdown()
            else:
                engine.shutdown()
            for obj in (window, session, timer):
                if obj is not None:
                    obj.deleteLater()
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            app.processEvents()

    def _render(self, engine: Engine, entry: PackageEntry) -> str:
        if not entry.ok:
            raise CheckFailed(f"invalid package: {entry.error}")
        spec = _manifest(entry).output
        engine.add_package(entry)
        request = entry.default_request()
        job = engine.submit(request, EXPORT)
        output = job.wait(RENDER_TIMEOUT_S)
        data = output.data
        if output.kind != spec.kind:
            raise CheckFailed(f"made {output.kind} output; the manifest says {spec.kind}")
        if spec.kind == "image":
            cells = int(output.info.get("cells", 1))
            want: tuple[int, ...] = (spec["height"], spec["width"] * cells, spec["channels"])
            if data.dtype != np.uint8 or data.shape != want:
                raise CheckFailed(f"made a {data.dtype} image of shape {data.shape}; the manifest says uint8 {want}")
            shape = f"{data.shape[1]}x{data.shape[0]}x{data.shape[2]}"
        elif spec.kind == "audio":
            want = (spec["length"], spec["channels"])
            if data.dtype != np.float32 or data.shape != want:
                raise CheckFailed(f"made {data.dtype} samples of shape {data.shape}; the manifest says float32 {want}")
            if not np.isfinite(data).all():
                raise CheckFailed("made NaN or infinite samples")
            shape = f"{data.shape[0]} samples at {spec['sample_rate']} Hz"
        else:
            shape = f"{output.kind} {data.shape}"
        self.rendered[entry.id] = (entry, request.with_(model_hash=job.info.get("model_sha256", "")), output)
        return shape

    def _png(self, entry: PackageEntry, request: RenderRequest, output: Output) -> str:
        from PIL import Image

        from studio.export import read_request, save_output

        path = save_output(self.folder_for() / f"{entry.id}.png", output, request, model_name=_manifest(entry).name,
                           model_sha256=request.model_hash)
        _same_request(read_request(path), request)
        with Image.open(path) as image:
            pixels = np.asarray(image)
        if pixels.size != output.data.size or not np.array_equal(pixels.reshape(output.data.shape), output.data):
            raise CheckFailed(f"read back {pixels.shape} pixels that differ from the rendered {output.data.shape}")
        return f"{path.stat().st_size} bytes"

    def _sound(self, fmt: str, entry: PackageEntry, request: RenderRequest, output: Output) -> str:
        import soundfile

        from studio.export import read_any_request, save_output

        manifest = _manifest(entry)
        rate = int(output.info.get("sample_rate", manifest.output["sample_rate"]))
        path = save_output(self.folder_for() / f"{entry.id}.{fmt.lower()}", output, request,
                           model_name=manifest.name, model_sha256=request.model_hash, sample_rate=rate)
        _same_request(read_any_request(path), request)
        info = soundfile.info(str(path))
        if (info.frames, info.channels, info.samplerate) != (output.data.shape[0], output.data.shape[1], rate):
            raise CheckFailed(f"read back {info.frames} samples × {info.channels} channels at {info.samplerate} Hz; "
                              f"wrote {output.data.shape[0]} × {output.data.shape[1]} at {rate} Hz")
        return f"{info.frames} samples, {path.stat().st_size} bytes"

    def _animation_model(self) -> PackageEntry | None:
        """The model the videos animate: the default model when it is valid, else the first valid image model."""
        images = [e for e in self.entries if e.ok and e.manifest is not None and e.manifest.output.kind == "image"]
        preferred = [e for e in images if e.id == DEFAULT_MODEL_ID]
        candidates = preferred or images
        return candidates[0] if candidates else None

    def _animation(self, engine: Engine, entry: PackageEntry, fmt: str) -> str:
        from studio.engine.animate import export_animation
        from studio.export.video import read_video_metadata

        engine.add_package(entry)
        base = entry.default_request()
        frames = [base.with_(seed=seed) for seed in ANIMATION_SEEDS]
        path = self.folder_for() / f"{entry.id}.{fmt.lower()}"
        metadata = json.dumps({"self_test": [r.to_dict() for r in frames]})
        job = export_animation(engine, frames, path, ANIMATION_FPS, metadata=metadata)
        job.wait(RENDER_TIMEOUT_S)
        first = self.rendered.get(entry.id)  # the render check's output is the first frame's
        first_frame = first[2].data if first is not None else engine.submit(base, EXPORT).wait(RENDER_TIMEOUT_S).data
        height, width = first_frame.shape[:2]
        if fmt == "MP4":
            count, size = _decode_video(path)
            width, height = width + width % 2, height + height % 2  # yuv420p pads an odd size by one pixel
        else:
            count, size = _gif_frames(path)
        if count != len(frames) or size != (width, height):
            raise CheckFailed(f"read back {count} frames of {size[0]}x{size[1]}; wrote {len(frames)} of "
                              f"{width}x{height}")
        if read_video_metadata(path) != metadata:
            raise CheckFailed("the metadata stored in the file did not read back")
        return f"{count} frames of {width}x{height}, {path.stat().st_size} bytes"

    def folder_for(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder


def _manifest(entry: PackageEntry) -> Manifest:
    """The manifest of a package the checks use (a package without one is an invalid package)."""
    if entry.manifest is None:
        raise CheckFailed(f"invalid package: {entry.error}")
    return entry.manifest


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fails(message: str) -> Callable[[], str]:
    """A check that can only fail (what it would test is missing)."""
    def body() -> str:
        raise CheckFailed(message)
    return body


def _same_request(found: RenderRequest, wrote: RenderRequest) -> None:
    if found != wrote:
        raise CheckFailed(f"the request read back differs from the one written: {found.to_json()} != {wrote.to_json()}")


def _decode_video(path: Path) -> tuple[int, tuple[int, int]]:
    """Frames and (width, height) of a video, decoded by PyAV."""
    import av

    with av.open(str(path)) as container:
        frames = [frame for frame in container.decode(video=0)]
    if not frames:
        raise CheckFailed(f"{path.name} decodes to no frames")
    return len(frames), (frames[0].width, frames[0].height)


def _gif_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Frames and (width, height) of a GIF, opened by Pillow."""
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "GIF":
            raise CheckFailed(f"{path.name} is {image.format}, not a GIF")
        return int(getattr(image, "n_frames", 1)), image.size
