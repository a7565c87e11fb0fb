"""A fork server for the hostile-input suite: imports the app once, then runs each case's command line in a forked
child, as `python -m studio ARGS` would, with the case's environment, working folder and output files.

Protocol (one JSON object a line): the suite writes {"argv", "env", "cwd", "stdout", "stderr"}; this answers
{"pid": N} at once (the child leads its own session, so the suite can end its whole process group on a timeout),
then {"rc": N} when the child ends (a signal gives -signum). EOF on stdin ends the server.

Forking keeps the per-case cost at milliseconds instead of the 2-3 s an interpreter takes to import torch; set
HOSTILE_SUBPROCESS=1 to run every case in a fresh `python -m studio` instead (slower, the same checks).
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _preload() -> None:
    """Import what the cases import anyway (never run anything: the children start clean). A module another branch
    renamed is skipped: this only saves time."""
    import importlib

    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401

    import studio.cli  # noqa: F401
    for name in ("studio.engine", "studio.engine.work", "studio.export", "studio.export.audio", "studio.export.video",
                 "studio.library", "studio.project", "studio.importers.checkpoint", "studio.families.registry",
                 "studio.families.vae.family", "studio.families.diffusion.family", "studio.families.gan.family",
                 "studio.families.audio_vae.family", "studio.families.generators.torchscript",
                 "studio.families.generators.onnx", "safetensors.torch", "soundfile", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _child(job: dict) -> None:
    os.setsid()
    try:  # die with the server: a case never outlives the suite
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    sys.argv = ["latent-studio", *job["argv"]]
    code = 1
    try:
        from studio.cli import main

        code = main(job["argv"])
    except SystemExit as exc:  # what `sys.exit(main())` and argparse do
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter would print for an exception that escapes main()
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)


def serve() -> None:
    _preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(job)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        print(json.dumps({"rc": rc}), flush=True)


if __name__ == "__main__":
    serve()
