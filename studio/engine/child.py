"""The worker process that runs code-bearing models (TorchScript, ONNX): `studio.engine.sandbox` starts it.

It reads requests from its standard input and writes frames (`studio.engine.frames`: JSON headers and raw array
bytes, never pickles) to the pipe that was its standard output; anything else printed goes to its standard error.
Before it reads a request it closes itself in: it runs in a fresh empty folder (its working directory, HOME and TMPDIR),
no file may grow (RLIMIT_FSIZE 0, SIGXFSZ ignored: every write to a file fails), few files may be open, no core file is
written, and it ends with its parent (PR_SET_PDEATHSIG on Linux, a watchdog thread elsewhere).

Requests: {"type": "render" | "encode" | "latent", "model": {...}, "request": JSON} (an "encode" carries the images as
its array; "latent" is the seed's latent of a family that needs its network for it), {"type": "inspect", "family",
"path"} (what a family reads from a model file it is importing), "about" (where it runs and under which limits, for
tests), "exit". Replies: "progress" and "preview" frames,
then one "output" (with the result's array) or one "error".
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

MODELS_KEPT = 2  # loaded models the worker keeps between requests
MAX_REQUEST_HEADER = 1 << 30  # the parent is trusted: an explicit latent of MAX_LATENT_SIZE numbers fits
OPEN_FILES = 256  # RLIMIT_NOFILE once torch and the model's runtime are imported


def _confine() -> None:
    """Limits on what the process may do to the machine, set before any model file is read."""
    try:
        import resource
    except ImportError:  # Windows: the folder and environment are what is left
        return
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG instead of killing us
    for limit, value in ((resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, OPEN_FILES)):
        soft, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass


def _end_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
                if os.getppid() != parent:  # the parent ended before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class Worker:
    """Serves requests one at a time on the pipe `out_fd`, keeping the last MODELS_KEPT models loaded."""

    def __init__(self, out_fd: int):
        import torch

        from studio.engine.frames import FrameReader

        self.torch = torch
        self.out = out_fd
        self.reader = FrameReader(MAX_REQUEST_HEADER)
        self.models: OrderedDict[tuple, Any] = OrderedDict()

    def send(self, header: dict, arrays=()) -> None:
        from studio.engine.frames import write_frame

        write_frame(self.out, header, arrays)

    def read(self):
        while True:
            frame = self.reader.next()
            if frame is not None:
                return frame
            data = os.read(0, self.reader.want())
            if not data:
                return None
            self.reader.feed(data)

    def model(self, spec: dict):
        from studio.library import load_model, resolve

        key = tuple(sorted((str(k), str(v)) for k, v in spec.items()))  # the folder, its files' stamps, device…
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        while len(self.models) >= MODELS_KEPT:
            self.models.popitem(last=False)
        dtype = getattr(self.torch, spec["dtype"])
        model = load_model(resolve(spec["folder"]), self.torch.device(spec["device"]), dtype,
                           expected_sha256=spec["sha256"] or None)
        self.models[key] = model
        return model

    def serve(self) -> int:
        while True:
            frame = self.read()
            if frame is None or frame.type == "exit":
                return 0
            try:
                if frame.type == "about":
                    self.send(self.about())
                elif frame.type in ("render", "encode", "latent"):
                    self.run(frame)
                elif frame.type == "inspect":
                    self.send(self.inspect(frame))
                else:
                    raise ValueError(f"unknown request {frame.type!r}")
            except BaseException as exc:  # the job's failure, not the worker's
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise
                self.send(self.error(exc))

    def run(self, frame) -> None:
        import inspect

        import numpy as np

        from studio.request import RenderRequest

        self.torch.set_num_threads(int(frame.header.get("threads") or 1))
        model = self.model(frame.header["model"])
        request = RenderRequest.from_json(frame.header["request"])
        with self.torch.inference_mode():
            if frame.type in ("encode", "latent"):
                if frame.type == "latent":  # the seed's latent, when the family needs the network for it (a prior)
                    steps = model.family.latent(model, request)
                else:
                    images = frame.arrays[0]
                    labels = frame.header.get("labels")
                    steps = model.family.encode(model, images, labels)
                if not inspect.isgenerator(steps):
                    z = steps
                else:
                    z = yield_through(steps, self.send)
                z = z.detach().float().cpu()
                self.send({"type": "output", "kind": "latent", "shape": list(z.shape)},
                          [np.ascontiguousarray(z.reshape(-1).numpy(), dtype=np.float32)])
                return
            steps = model.family.render(model, request)
            output = yield_through(steps, self.send)
        if not hasattr(output, "kind"):
            raise TypeError(f"the render returned {type(output).__name__}, not an output")
        self.send({"type": "output", "kind": output.kind, "info": _plain(output.info)}, [np.asarray(output.data)])

    def inspect(self, frame) -> dict:
        """What a family reads from a model file before it has a model.toml (`Family.inspect_file`: an nn~ module's
        methods and attributes), loading the file here, where its code may run."""
        from pathlib import Path

        from studio.families import get_family

        family = get_family(str(frame.header["family"]))
        reader = getattr(family, "inspect_file", None)
        if reader is None:
            raise ValueError(f"family {family.name!r} does not inspect files")
        self.torch.set_num_threads(int(frame.header.get("threads") or 1))
        with self.torch.inference_mode():
            info = reader(Path(str(frame.header["path"])))
        return {"type": "output", "kind": "inspect", "info": info}

    def about(self) -> dict:
        info: dict[str, Any] = {"type": "about", "pid": os.getpid(), "cwd": os.getcwd(),
                                "home": os.environ.get("HOME"), "tmpdir": os.environ.get("TMPDIR")}
        try:
            import resource

            info["fsize"] = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            info["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            info["core"] = resource.getrlimit(resource.RLIMIT_CORE)[0]
        except ImportError:
            pass
        if os.path.isdir("/proc/self/fd"):
            fds = []
            for name in os.listdir("/proc/self/fd"):
                try:
                    fds.append([int(name), os.readlink(f"/proc/self/fd/{name}")])
                except OSError:
                    pass
            info["fds"] = fds
        return info

    def error(self, exc: BaseException) -> dict:
        from studio.engine.device import is_out_of_memory
        from studio.errors import StudioError

        header: dict[str, Any] = {"type": "error", "oom": bool(is_out_of_memory(exc)),
                                  "message": f"{type(exc).__name__}: {exc}"[:4000]}
        if isinstance(exc, StudioError):
            header.update({"class": type(exc).__name__, "problem": exc.problem[:4000], "path": exc.path,
                           "field": exc.field})
        return header


def yield_through(steps, send):
    """Drive a family's generator, sending each Progress (and Preview, with its picture) as a frame; its result."""
    import numpy as np

    from studio.steps import Preview, Progress

    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, Preview) and step.output is not None:
            send({"type": "preview", "step": int(step.step), "total": int(step.total), "message": str(step.message),
                  "kind": step.output.kind}, [np.asarray(step.output.data)])
        elif isinstance(step, Progress):
            send({"type": "progress", "step": int(step.step), "total": int(step.total), "message": str(step.message)})


def _plain(info: dict) -> dict:
    """The JSON-able part of an output's info (the parent keeps only what it knows anyway)."""
    out = {}
    for key, value in info.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[str(key)] = value
    return out


def main() -> int:
    parent = os.getppid()
    out_fd = os.dup(1)  # the frames' pipe: what the process prints goes to standard error from now on
    os.dup2(2, 1)
    _end_with_parent(parent)
    import torch  # noqa: F401  (before the limits: importing reads and maps many files)

    import studio.families  # noqa: F401
    from studio.engine.frames import write_frame
    from studio.library import load_model  # noqa: F401

    try:
        import onnxruntime  # noqa: F401  (the ONNX family's runtime, when installed)
    except ImportError:
        pass
    _confine()
    try:
        worker = Worker(out_fd)
    except BaseException as exc:
        write_frame(out_fd, {"type": "error", "oom": False, "message": f"{type(exc).__name__}: {exc}"[:4000]})
        return 1
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
