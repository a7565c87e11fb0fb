"""Code-bearing models (TorchScript, ONNX: families with `runs_code`) run in a worker process the engine owns.

The renderer asks `Sandbox.model` for such a package and gets a `LoadedModel` whose network is not here: its family's
`render` and `encode` send the request to the worker process (`studio.engine.child`) and relay what comes back — the
same Progress, Preview and Output, so lanes, events and job.info are those of any model. This process never loads
the module file and never unpickles what the worker sends: replies are frames of JSON and raw array bytes
(`studio.engine.frames`), each checked against the model's manifest before it is kept.

While the worker computes, the family's generator yields None every POLL seconds: those are the scheduler's cancel
points. A job cancelled (Esc, a newer preview) closes the generator, and a generator closed before its reply ends
the worker process (SIGTERM, then SIGKILL after STOP_GRACE seconds): a stuck forward ends within a second, and the
next request starts a fresh worker. A worker that dies (a crash, kill -9, out of memory) is a StudioError naming the
model file, never a hang. Out of memory on an accelerator, the worker is ended (freeing what it held) and the error
is one `studio.engine.device.is_out_of_memory` recognises, so the renderer's fallback (retry, then the CPU) applies.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
import torch

from studio.engine.frames import CHUNK, Frame, FrameError, FrameReader, write_frame
from studio.errors import ExportError, ManifestError, RecipeError, RequestError, StudioError, WeightsError
from studio.families.base import Family, LoadedModel
from studio.limits import MAX_LATENT_SIZE, MAX_MANIFEST_BYTES, quote
from studio.request import RenderRequest
from studio.steps import Output, Preview, Progress, RenderSteps

log = logging.getLogger(__name__)

POLL = 0.03  # s between cancel points while the worker computes
STOP_GRACE = 0.3  # s between SIGTERM and SIGKILL when a worker is ended
START_TIMEOUT = 120.0  # s for a worker to import torch and answer (our code, not the model's)
MAX_REPLY_HEADER = MAX_MANIFEST_BYTES  # a reply's JSON header (progress, an error message)
QUEUED_CHUNKS = 16  # chunks of the worker's output read ahead of the frame reader (Windows)
READ_AHEAD = 1 << 16  # bytes read at once past what the frame being checked needs (POSIX)
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds the `studio` package
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from studio.engine.child import main; sys.exit(main())"
WORKER_FLAG = "--latent-studio-worker"  # the frozen app's launcher runs the worker when given this alone
_ERRORS: dict[str, type[StudioError]] = {cls.__name__: cls for cls in (
    StudioError, ManifestError, WeightsError, RequestError, ExportError, RecipeError)}
# environment variables the worker keeps (the rest are dropped; HOME and the temporary folders point at its own)
_KEPT_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "SYSTEMROOT", "WINDIR", "LD_LIBRARY_PATH", "LATENT_STUDIO_DEVICE")
_KEPT_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "PYTORCH_", "HIP_", "ROCM_")


class WorkerEnded(Exception):
    """The worker process ended (its pipe closed) while a reply was awaited."""

    def __init__(self, code: int | None):
        super().__init__(f"exit code {code}")
        self.code = code


def _worker_env(folder: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith(_KEPT_PREFIXES)}
    for name in ("HOME", "TMPDIR", "TMP", "TEMP", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TORCH_HOME",
                 "USERPROFILE"):
        env[name] = folder
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _widen(pipe: Any) -> None:
    """Make a pipe hold a megabyte (Linux; elsewhere, and when refused, it stays as it is)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except (ImportError, OSError, ValueError):
        pass


def _command() -> list[str]:
    """How to start a worker: this Python, isolated (no user site, no PYTHON* variables), importing this `studio`; in
    the frozen app, the app's own executable (packaging/launcher.py runs the worker when given WORKER_FLAG)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG]
    return [sys.executable, "-I", "-B", "-c", _BOOT, _ROOT]


def _end(proc: subprocess.Popen, folder: str, stopped: threading.Event) -> None:
    """End a worker process (SIGTERM, then SIGKILL) and remove its folder; safe to call twice. Its output pipe is
    closed by `WorkerProcess.stop` once no read is under way (closing it under a read could hand its number to
    another file)."""
    stopped.set()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


class WorkerProcess:
    """One worker process: its pipes (its output read with select, or by a thread on Windows) and its own empty
    folder."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="latent-studio-worker-")
        stderr = None if os.environ.get("LATENT_STUDIO_WORKER_STDERR") else subprocess.DEVNULL
        self.proc = subprocess.Popen(_command(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=stderr, cwd=self.folder,
                                     env=_worker_env(self.folder), close_fds=True, bufsize=0)
        _widen(self.proc.stdout)  # a 256² picture in one write
        self._fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.closed = False  # ended by Sandbox.close (the engine's shutdown), not by what it ran
        self._io = threading.Lock()  # held while this process's output is read (POSIX): it is closed outside
        self._stopped = threading.Event()
        # ended when dropped, and at exit: no worker outlives the app
        self._finalizer = weakref.finalize(self, _end, self.proc, self.folder, self._stopped)
        self._chunks: queue.Queue[bytes] | None = None
        if os.name == "nt":  # no select() on pipes: a thread reads ahead (at most QUEUED_CHUNKS chunks)
            self._chunks = queue.Queue(QUEUED_CHUNKS)
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._chunks, self._stopped), daemon=True,
                             name=f"worker-{self.proc.pid}-reader").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @staticmethod
    def _pump(pipe: Any, chunks: "queue.Queue[bytes]", stopped: threading.Event) -> None:
        fd = pipe.fileno()
        try:
            while True:
                try:
                    data = os.read(fd, CHUNK)
                except OSError:
                    data = b""
                while True:  # waits when the reader is far behind: what is read ahead stays bounded
                    try:
                        chunks.put(data, timeout=0.2)
                        break
                    except queue.Full:
                        if stopped.is_set():
                            return
                if not data:
                    return
        finally:
            pipe.close()

    def send(self, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
        assert self.proc.stdin is not None
        try:
            write_frame(self.proc.stdin.fileno(), header, arrays)
        except (OSError, ValueError):  # it ended: the reader will see its pipe close and say how
            pass

    def receive(self, reader: FrameReader, timeout: float) -> Frame | None:
        """The next whole frame within `timeout` seconds, or None; WorkerEnded when the process ended. What is read
        ahead of the frame being checked is at most READ_AHEAD bytes."""
        deadline = time.monotonic() + timeout
        while True:
            frame = reader.next()
            if frame is not None:
                return frame
            remaining = max(0.0, deadline - time.monotonic())
            if self._chunks is None:
                with self._io:
                    if self.proc.stdout is None or self.proc.stdout.closed:
                        data = b""
                    else:
                        try:
                            ready = select.select([self._fd], [], [], remaining)[0]
                        except (OSError, ValueError):  # closed: the read says so
                            ready = [self._fd]
                        if not ready:
                            return None
                        try:
                            data = os.read(self._fd, max(reader.want(), READ_AHEAD))
                        except OSError:
                            data = b""
            else:
                try:
                    data = self._chunks.get(timeout=remaining)
                except queue.Empty:
                    return None
                if not data:
                    self._chunks.put(b"")  # it stays ended for whoever asks next
            if not data:
                try:
                    code = self.proc.wait(2.0)
                except subprocess.TimeoutExpired:  # it closed its pipe but lives on: end it
                    self.stop()
                    code = self.proc.returncode
                raise WorkerEnded(code)
            reader.feed(data)

    def stop(self) -> None:
        self._finalizer()
        if self._chunks is None and self._io.acquire(timeout=2.0):  # not while a read is under way
            try:
                if self.proc.stdout is not None:
                    self.proc.stdout.close()
            finally:
                self._io.release()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Sandbox:
    """The engine's worker process for code-bearing models: one at a time, started when first needed, ended by
    `close` (the engine's shutdown), by a cancelled or failed request, or when this process exits."""

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when none is running)."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    def close(self) -> None:
        """End the worker process (the next request starts a fresh one)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.closed = True  # a render waiting on it says so, instead of blaming the model
            worker.stop()

    def _current(self) -> WorkerProcess:
        with self._lock:
            if self._worker is None or not self._worker.alive:
                if self._worker is not None:
                    self._worker.stop()
                self._worker = WorkerProcess()
            return self._worker

    def _drop(self, worker: WorkerProcess) -> None:
        with self._lock:
            if self._worker is worker:
                self._worker = None
        if worker.alive:
            log.info("ending worker process %d (a request was cancelled or failed)", worker.pid)
        worker.stop()

    def start(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Start the worker (when none runs) and wait until it answers: where it runs and under which limits."""
        steps = self.exchange({"type": "about"}, (), Path(_ROOT), "worker process")
        deadline = time.monotonic() + timeout
        try:
            while True:
                if time.monotonic() > deadline:
                    raise StudioError(f"the worker process that runs model files did not start within {timeout:g} s")
                try:
                    next(steps)
                except StopIteration as stop:
                    return dict(stop.value.header)
        except StudioError as exc:
            if "did not start" in exc.problem:
                raise
            raise StudioError(f"the worker process that runs model files did not start: {exc.problem}") from None
        finally:
            steps.close()

    def exchange(self, header: dict[str, Any], arrays: Sequence[np.ndarray], path: str | Path, what: str,
                 max_bytes: int = 0, check: Any = None) -> "Any":
        """Send one request and relay its replies: a generator that yields Progress / Preview (their pictures
        checked by `check(kind, array)`) and None while it waits, and returns the final "output" or "about" frame.
        Replies carry at most `max_bytes` of arrays. Closed before the reply, it ends the worker process."""
        worker = self._current()
        reader = FrameReader(MAX_REPLY_HEADER, max_bytes)
        keep = False  # whether the worker may serve the next request
        try:
            worker.send(header, arrays)
            while True:
                frame = worker.receive(reader, POLL)
                if frame is None:
                    yield None
                    continue
                kind = frame.type
                if kind == "progress":
                    yield Progress(*_step(frame))
                elif kind == "preview":
                    step, total, message = _step(frame)
                    if len(frame.arrays) != 1 or check is None:
                        raise FrameError("a preview carries one picture")
                    output_kind = str(frame.header.get("kind"))
                    yield Preview(step, total, message, Output(output_kind, check(output_kind, frame.arrays[0])))
                elif kind in ("output", "about") and kind == ("about" if header["type"] == "about" else "output"):
                    keep = True
                    return frame
                elif kind == "error":
                    error = _error(frame, path, what)
                    keep = not isinstance(error, RuntimeError)  # out of memory: a fresh worker frees its memory
                    raise error
                else:
                    raise FrameError(f"unexpected reply {quote(kind)}")
        except FrameError as exc:
            raise StudioError(f"the {what}'s worker process sent a malformed reply: {exc}", path) from None
        except WorkerEnded as exc:
            if worker.closed:
                raise StudioError(f"the worker process running the {what} was closed (the engine shut down)",
                                  path) from None
            if header["type"] == "about":
                raise StudioError(f"the worker process ended ({_ended(exc.code)})", path) from None
            raise StudioError(f"the {what} stopped the worker process ({_ended(exc.code)})", path) from None
        finally:
            if not keep:
                self._drop(worker)

    def inspect(self, family: str, path: str | Path, timeout: float) -> dict[str, Any]:
        """What family `family` reads from the model file at `path` (`inspect_file`), read in the worker process
        within `timeout` seconds (then the worker is ended and a StudioError names the file)."""
        what = f"{family} module"
        steps = self.exchange({"type": "inspect", "family": family, "path": str(Path(path).resolve()),
                               "threads": self.threads}, (), path, what)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if time.monotonic() > deadline:
                    raise StudioError(f"reading the {what} took over {timeout:g} s; its worker process was ended",
                                      path)
                try:
                    next(steps)
                except StopIteration as stop:
                    info = stop.value.header.get("info")
                    if stop.value.header.get("kind") != "inspect" or not isinstance(info, dict):
                        raise StudioError(f"the {what}'s worker process sent a malformed reply", path) from None
                    return info
        finally:
            steps.close()

    # --- models -----------------------------------------------------------------------------------------------------
    def model(self, entry: Any, device: torch.device, dtype: torch.dtype,
              expected_sha256: str | None = None) -> LoadedModel:
        """The package `entry` (a PackageEntry of a family that runs code) as a model whose network runs in the
        worker process. Only the manifest, the file's hash and the directions (safetensors) are read here."""
        manifest = entry.manifest
        family = entry.family
        if manifest is None or family is None:
            raise entry.error or StudioError("not a valid package", entry.folder)
        family.validate(manifest)
        sha = family.weights_sha256(manifest)
        entry._sha256 = sha
        if expected_sha256 and sha != expected_sha256:
            raise WeightsError(f"weights hash {sha[:12]}… differs from the requested {expected_sha256[:12]}…; the "
                               "installed model is not the one that made this request", manifest.weights_path)
        try:  # a changed model.toml is read again by the worker, as a changed weights file is
            st = manifest.path.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except (OSError, TypeError, AttributeError):
            stamp = ""
        spec = {"folder": str(Path(entry.folder).resolve()), "device": str(device),
                "dtype": str(dtype).replace("torch.", ""), "sha256": sha, "manifest": stamp}
        proxy = WorkerFamily(family, self, spec)
        return LoadedModel(manifest, cast(Family, proxy), InWorker(proxy.what, manifest.weights_path), sha,
                           torch.device(device), dtype, _directions(manifest))


class InWorker(torch.nn.Module):
    """Where a worker-run model's network would be: it has no weights here, and calling it is an error."""

    def __init__(self, what: str, path: Path):
        super().__init__()
        self.what, self.path = what, path

    def forward(self, *args: Any) -> torch.Tensor:
        raise StudioError(f"the {self.what} runs in the worker process, not in the app", self.path)


class WorkerFamily:
    """A code-bearing family as the app sees it: what it declares comes from the family itself; `render` and
    `encode` run in the worker process; `latent` (seeds and edits, no network) runs here."""

    def __init__(self, family: Family, sandbox: Sandbox, spec: dict[str, Any]):
        self._family, self._sandbox, self._spec = family, sandbox, spec
        self.what = f"{getattr(family, 'kind_name', '') or family.name} module"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._family, name)

    def latent(self, model: LoadedModel, request: RenderRequest) -> Any:
        """The request's latent: computed here, or for a family whose latent needs its network (`latent_runs_code`:
        an nn~ model's prior, an encoded sound) a generator that asks the worker (with cancel points) and returns it."""
        if not getattr(self._family, "latent_runs_code", False):
            return self._family.latent(model, request)
        return self._latent(model, request)

    def _latent(self, model: LoadedModel, request: RenderRequest) -> Any:
        header = {"type": "latent", "model": self._spec, "request": request.to_json(),
                  "threads": self._sandbox.threads}
        frame = yield from self._sandbox.exchange(header, (), model.manifest.weights_path, self.what,
                                                  model.manifest.latent.size * 4)
        return _latent_of(frame, model, self.what)

    def render(self, model: LoadedModel, request: RenderRequest) -> RenderSteps:
        out = model.manifest.output
        size = (out["width"] * out["height"] * out["channels"] if out.kind == "image"
                else out["length"] * out["channels"] * 4)
        header = {"type": "render", "model": self._spec, "request": request.to_json(),
                  "threads": self._sandbox.threads}
        frame = yield from self._sandbox.exchange(header, (), model.manifest.weights_path, self.what, size,
                                                  check=lambda kind, data: _checked(model, kind, data))
        if str(frame.header.get("kind")) != out.kind or len(frame.arrays) != 1:
            raise StudioError(f"the {self.what} returned {quote(frame.header.get('kind'))} output, not {out.kind}",
                              model.manifest.weights_path)
        data = _checked(model, out.kind, frame.arrays[0], exact=True)
        info = {"sample_rate": out["sample_rate"]} if out.kind == "audio" else {}
        return Output(out.kind, data, info)

    def encode(self, model: LoadedModel, images: np.ndarray, labels: list[str] | None = None) -> Any:
        return self._encode(model, np.ascontiguousarray(images), labels)

    def _encode(self, model: LoadedModel, images: np.ndarray, labels: list[str] | None) -> Any:
        count = int(images.shape[0]) if images.ndim else 1
        size = min(MAX_LATENT_SIZE, count * model.manifest.latent.size)
        header = {"type": "encode", "model": self._spec, "request": RenderRequest(model.id).to_json(),
                  "labels": labels, "threads": self._sandbox.threads}
        frame = yield from self._sandbox.exchange(header, (images,), model.manifest.weights_path, self.what, size * 4)
        return _latent_of(frame, model, self.what)


def _latent_of(frame: Frame, model: LoadedModel, what: str) -> torch.Tensor:
    """The latent in a worker's reply (checked to be a float32 array of the shape it says)."""
    shape = frame.header.get("shape")
    values = frame.arrays[0] if len(frame.arrays) == 1 else None
    if (values is None or values.dtype != np.float32 or values.ndim != 1 or not isinstance(shape, list)
            or any(type(n) is not int or n < 0 for n in shape) or int(np.prod(shape)) != values.size):
        raise StudioError(f"the {what} returned a malformed latent", model.manifest.weights_path)
    return torch.from_numpy(values.copy()).reshape(shape)


def _checked(model: LoadedModel, kind: str, data: np.ndarray, exact: bool = False) -> np.ndarray:
    """A picture or sound from the worker, if it is what the manifest says (previews: any picture within it)."""
    out = model.manifest.output
    path = model.manifest.weights_path
    if kind == "image":
        want: tuple[int, ...] = (out["height"], out["width"], out["channels"])
        ok = data.dtype == np.uint8 and (tuple(data.shape) == want if exact else data.ndim in (2, 3))
    elif kind == "audio":
        want = (out["length"], out["channels"])
        ok = data.dtype == np.float32 and tuple(data.shape) == want and bool(np.isfinite(data).all())
    else:
        raise StudioError(f"the module's worker sent {quote(kind)} output", path)
    if not ok:
        raise StudioError(f"the module's worker sent {kind} of {data.dtype} {tuple(data.shape)}, not {want}", path)
    return data


def _step(frame: Frame) -> tuple[int, int, str]:
    step, total, message = frame.header.get("step"), frame.header.get("total"), frame.header.get("message", "")
    if type(step) is not int or type(total) is not int or not isinstance(message, str):
        raise FrameError("a progress frame has a whole step and total and a message")
    return step, total, message[:200]


def _error(frame: Frame, path: str | Path, what: str) -> Exception:
    """The worker's error as this process raises it: its StudioError (of the same class, naming the same file and
    field), an out-of-memory RuntimeError, or a StudioError naming the model file."""
    header = frame.header
    message = str(header.get("message", ""))[:1000]
    if header.get("oom") is True:
        return RuntimeError(f"out of memory in the worker process: {message}")
    cls = _ERRORS.get(str(header.get("class")))
    problem, where, field = header.get("problem"), header.get("path"), header.get("field")
    if cls is not None and isinstance(problem, str) and isinstance(where, (str, type(None))) \
            and isinstance(field, (str, type(None))):
        return cls(problem[:1000], where[:1000] if where else None, field[:200] if field else None)
    first = message.strip().splitlines()[0] if message.strip() else "an error"
    return StudioError(f"the {what} failed: {first}", path)


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"exit code {code}, {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


def _directions(manifest: Any) -> Any:
    """The package's principal directions (safetensors, read here: the latent edits are computed in this process)."""
    if not manifest.directions_path.exists():
        return None
    from studio.io.weights import read_tensors
    from studio.latent.directions import Directions

    try:
        directions = Directions.from_tensors(read_tensors(manifest.directions_path))
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"not a valid directions file: {exc}", manifest.directions_path) from None
    if directions.vectors.shape[1] != manifest.latent.size:
        raise WeightsError(f"directions have {directions.vectors.shape[1]} dimensions but the latent has "
                           f"{manifest.latent.size}", manifest.directions_path)
    return directions


def trial_render(entry: Any, request: RenderRequest, timeout: float) -> Output:
    """Render `request` once with the package `entry` in a worker process of its own on the CPU, allowing the
    render `timeout` seconds once the worker runs; then the worker is ended and a StudioError names the file."""
    sandbox = Sandbox(threads=1)
    try:
        model = sandbox.model(entry, torch.device("cpu"), torch.float32)
        sandbox.start()
        steps = model.family.render(model, model.checked(request))
        deadline = time.monotonic() + timeout
        try:
            while True:
                if time.monotonic() > deadline:
                    what = cast(WorkerFamily, model.family).what
                    raise StudioError(f"the {what} did not finish a render within {timeout:g} s (the limit for a "
                                      "trial render); its worker process was ended", model.manifest.weights_path)
                try:
                    next(steps)
                except StopIteration as stop:
                    return stop.value
        finally:
            steps.close()
    finally:
        sandbox.close()
