"""The hostile-input suite's harness (not a conftest.py: tests/conftest.py is imported as `conftest` by other test
folders, and a second one would shadow it): every case runs the real command line (`main()` as `python -m studio`
runs it) in its own process, with its own HOME, data, cache and working folders, under a timeout that ends the
case's whole process group, and the outcome is checked from the outside:

- no hang (a timeout fails with the case's name), the expected exit code (1 for a refusal);
- stderr has no traceback and no "unexpected error", every line is short, the error names the file (and field);
- no payload marker (`PWNED…`) anywhere in the case's folder, no output holding the secret;
- nothing of the user's deleted or changed (sentinel files everywhere, and every file that was there before);
- no partial output: on a refusal no new file at all except the log and cache folders, on success only the output.

The commands run in children forked from one server that imported the app once (`_zygote.py`); set
HOSTILE_SUBPROCESS=1 to run each in a fresh `python -m studio` instead.
"""

from __future__ import annotations

import atexit
import fnmatch
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import pytest

import builders
from builders import MARKER, SECRET_TOKEN

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = float(os.environ.get("HOSTILE_TIMEOUT", "60"))  # s per case; a lower value finds hangs faster
MAX_LINE = 500
SENTINEL = b"the user's own file: must survive every case\n"
# the log and cache folders, temporaries, and the (empty) user models and runs folders themselves, never their contents
ALWAYS_ALLOWED = ("home/data/logs/*", "home/cache/*", "home/data/logs", "home/cache", "tmp/*", "home/data/models",
                  "home/data/runs")


# --- the shared corpus: valid packages each case copies and breaks -------------------------------------------------


class Corpus:
    """Valid things built once per session, lazily."""

    def __init__(self, root: Path):
        self.root = root

    @cached_property
    def tiny(self) -> Path:
        from conftest import make_tiny_package

        return make_tiny_package(self.root / "pkgs" / "tiny", "tiny")

    @cached_property
    def tiny_diffusion(self) -> Path:
        from conftest import make_tiny_diffusion_package

        return make_tiny_diffusion_package(self.root / "pkgs" / "tiny-diffusion")

    @cached_property
    def tiny_audio(self) -> Path:
        from conftest import make_tiny_audio_package

        return make_tiny_audio_package(self.root / "pkgs" / "tiny-audio")

    @cached_property
    def big_latent(self) -> Path:
        """A glyph VAE with a 20 000-number latent: its request (with explicit latent) is ~200 kB of JSON, past
        what EXIF holds."""
        from conftest import make_tiny_package

        return make_tiny_package(self.root / "pkgs" / "big-latent", "big-latent", latent=20_000)

    @cached_property
    def benign_ts(self) -> Path:
        return builders.torchscript("benign", self._files / "generator.pt")

    @cached_property
    def ts_package(self) -> Path:
        """A package wrapped from the benign TorchScript module by the real `wrap` verb (in this process)."""
        from studio.cli import main

        out = self.root / "pkgs" / "ts-gen"
        code = main(["wrap", str(self.benign_ts), "--latent", "8", "--image", "8x8x1", "--id", "ts-gen",
                     "--out", str(out)])
        assert code == 0, "wrapping the benign TorchScript module failed"
        return out

    @cached_property
    def benign_onnx(self) -> Path:
        pytest.importorskip("onnx")
        return builders.onnx_model("benign", self._files / "generator.onnx")

    @cached_property
    def onnx_package(self) -> Path:
        pytest.importorskip("onnxruntime")
        from studio.cli import main

        out = self.root / "pkgs" / "onnx-gen"
        code = main(["wrap", str(self.benign_onnx), "--latent", "8", "--image", "8x8x1", "--id", "onnx-gen",
                     "--out", str(out)])
        assert code == 0, "wrapping the benign ONNX model failed"
        return out

    @cached_property
    def sd_pipeline(self) -> Path:
        pytest.importorskip("diffusers")
        from sd_tiny import make_pipeline_folder

        return make_pipeline_folder(self.root / "pkgs" / "sd-tiny")

    @cached_property
    def _files(self) -> Path:
        folder = self.root / "files"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def request_json(self, **change) -> str:
        """A valid stored request for `tiny` (explicit latent), with fields replaced."""
        from studio.io.weights import sha256_file
        from studio.manifest import WEIGHTS_NAME

        data = {"dtype": "float32", "height": None, "width": None, "latent": [0.25] * 8,
                "model_hash": sha256_file(self.tiny / WEIGHTS_NAME), "model_id": "tiny",
                "params": {"prompt": "Ab"}, "seed": 3, "version": 2}
        data.update(change)
        return json.dumps(data)


_CORPUS: Corpus | None = None
_RUNNER: Runner | None = None


@pytest.fixture
def corpus(tmp_path_factory) -> Corpus:
    """One corpus for the whole session, shared by every test module (a module-level singleton: this fixture is
    imported by each module, and a session fixture defined in several modules would be built once per module)."""
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = Corpus(tmp_path_factory.mktemp("corpus"))
    return _CORPUS


# --- one case's folders ---------------------------------------------------------------------------------------------


class Ctx:
    """One case's folders: root/home (HOME, data, cache), root/work (the working folder), root/models (packages
    passed with --models-dir), root/victim (a folder of the user's), and sentinels in each."""

    def __init__(self, root: Path, corpus: Corpus):
        self.root = root
        self.corpus = corpus
        self.home = root / "home"
        self.data = self.home / "data"
        self.cache = self.home / "cache"
        self.work = root / "work"
        self.models = root / "models"
        self.victim = root / "victim"
        self.shipped = root / "shipped"
        for folder in (self.data, self.cache, self.work, self.models, self.victim, self.shipped, root / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        self.secret = root / "secret.txt"
        self.secret.write_bytes(SECRET_TOKEN)
        for folder in (self.home, self.work, self.victim, root):
            (folder / "precious.txt").write_bytes(SENTINEL)

    def pkg(self, source: Path | None = None, name: str | None = None, into: Path | None = None) -> Path:
        """A copy of a corpus package (default: tiny) in root/models (or `into`)."""
        source = source or self.corpus.tiny
        target = (into or self.models) / (name or source.name)
        shutil.copytree(source, target, symlinks=True)
        return target

    def marker(self, name: str) -> Path:
        return self.root / f"{MARKER}-{name}"

    def out(self, name: str = "out.png") -> Path:
        return self.work / name

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "USER": "hostile",
            "LANG": "C.UTF-8", "TMPDIR": str(self.root / "tmp"), "PYTHONPATH": str(REPO),
            "XDG_CONFIG_HOME": str(self.home / ".config"), "XDG_DATA_HOME": str(self.home / ".local/share"),
            "XDG_CACHE_HOME": str(self.home / ".cache"), "XDG_STATE_HOME": str(self.home / ".local/state"),
            "LATENT_STUDIO_DATA": str(self.data), "LATENT_STUDIO_CACHE": str(self.cache),
            "LATENT_STUDIO_SHIPPED_MODELS": str(self.shipped), "QT_QPA_PLATFORM": "offscreen",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }


@dataclass
class Spec:
    """What a case runs and what must hold afterwards."""

    argv: list
    rc: int | tuple = 1  # the exit code, or the codes allowed
    names: tuple = ()  # texts the message must hold (the file, the field); stdout too for `models`
    outputs: tuple = ()  # files the command may write (must not exist after a refusal; must exist after success)
    allow_new: tuple = ()  # globs (relative to the case folder) of other files that may appear
    allow_gone: tuple = ()  # globs of files that may disappear or change (e.g. a broken settings file set aside)
    says: tuple = ()  # texts stderr must hold whatever the exit code (a warning that names a file set aside)
    timeout: float = TIMEOUT
    check: Callable | None = None  # more checks: check(ctx, result)


@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float


# --- running ---------------------------------------------------------------------------------------------------------


class Runner:
    """Runs a command line in a fresh process with a case's environment; a timeout kills its process group."""

    def __init__(self):
        self.subprocess = os.environ.get("HOSTILE_SUBPROCESS") == "1"
        self.server: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen"}
        server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_zygote.py"))], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                  cwd=str(REPO))
        line = server.stdout.readline()
        assert json.loads(line).get("ready"), f"the fork server did not start: {line!r}"
        return server

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
            self.server = None

    def run(self, argv: list[str], ctx: Ctx, timeout: float) -> Result:
        out, err = ctx.root / "stdout.txt", ctx.root / "stderr.txt"
        start = time.monotonic()
        if self.subprocess:
            rc = self._run_subprocess(argv, ctx, timeout, out, err)
        else:
            rc = self._run_forked(argv, ctx, timeout, out, err)
        seconds = time.monotonic() - start
        text = [p.read_text(encoding="utf-8", errors="replace") for p in (out, err)]
        out.unlink()
        err.unlink()
        return Result(rc, text[0], text[1], seconds)

    def _run_subprocess(self, argv, ctx, timeout, out, err) -> int | None:
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen([sys.executable, "-m", "studio", *argv], cwd=ctx.work, env=ctx.env(),
                                    stdin=subprocess.DEVNULL, stdout=o, stderr=e, start_new_session=True)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                return None

    def _run_forked(self, argv, ctx, timeout, out, err) -> int | None:
        if self.server is None or self.server.poll() is not None:
            self.server = self._start()
        job = {"argv": argv, "env": ctx.env(), "cwd": str(ctx.work), "stdout": str(out), "stderr": str(err)}
        self.server.stdin.write(json.dumps(job) + "\n")
        self.server.stdin.flush()
        pid = json.loads(self.server.stdout.readline())["pid"]
        ready, _, _ = select.select([self.server.stdout], [], [], timeout)
        if not ready:
            _kill_group(pid)
            json.loads(self.server.stdout.readline())  # the server reaps it
            return None
        return json.loads(self.server.stdout.readline())["rc"]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def runner() -> Runner:
    """One fork server for the session (see `corpus`); it ends when the suite's process closes its stdin."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = Runner()
        atexit.register(_RUNNER.close)
    return _RUNNER


# --- checking --------------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed): relative path → (kind, size, mtime)."""
    seen: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            kind = "dir" if path.is_dir() and not path.is_symlink() else "link" if path.is_symlink() else "file"
            seen[str(path.relative_to(root))] = (kind, 0 if kind == "dir" else st.st_size,
                                                 0 if kind == "dir" else st.st_mtime_ns)
    return seen


def _matches(rel: str, globs) -> bool:
    return any(fnmatch.fnmatch(rel, g) or rel == g.rstrip("/") for g in globs)


def _holds_secret(path: Path) -> bool:
    """Whether an output holds the secret file's bytes: as they are, or as the pixels of a picture."""
    if not path.is_file() or path.is_symlink() or path.stat().st_size > 50 << 20:
        return False
    if SECRET_TOKEN[:24] in path.read_bytes():
        return True
    try:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.int16).ravel()
    except Exception:
        return False
    token = np.frombuffer(SECRET_TOKEN, dtype=np.uint8).astype(np.int16)
    n = min(len(pixels), len(token))
    return n >= 16 and float(np.abs(pixels[:n] - token[:n]).mean()) < 3


def check_case(name: str, spec: Spec, ctx: Ctx, before: dict, result: Result) -> None:
    assert result.rc is not None, f"{name}: HUNG (killed after {spec.timeout:.0f} s)\nstderr: {result.err[-2000:]}"
    # payloads
    markers = [str(p) for p in ctx.root.rglob(f"*{MARKER}*")]
    assert not markers, f"{name}: a payload ran: {markers}"
    for o in spec.outputs:
        assert not _holds_secret(Path(o)), f"{name}: a payload read the user's file: {o} holds its bytes"
    # the user's files
    after = snapshot(ctx.root)
    outputs = {str(Path(o).relative_to(ctx.root)) for o in spec.outputs}
    gone = [rel for rel, what in before.items()
            if (rel not in after or after[rel] != what) and not _matches(rel, spec.allow_gone)]
    assert not gone, f"{name}: the user's files were deleted or changed: {gone[:10]}"
    for folder in (ctx.home, ctx.work, ctx.victim, ctx.root):
        assert (folder / "precious.txt").read_bytes() == SENTINEL, f"{name}: a sentinel changed in {folder}"
    both = result.out + result.err
    assert "Traceback" not in both, f"{name}: traceback\n{result.err[-3000:]}"
    assert "unexpected error" not in both, f"{name}: 'unexpected error'\n{result.err[-1500:]}"
    for line in both.splitlines():
        assert len(line) <= MAX_LINE, f"{name}: a {len(line)}-character line: {line[:300]}…"
    allowed = spec.rc if isinstance(spec.rc, tuple) else (spec.rc,)
    assert result.rc in allowed, (f"{name}: exit code {result.rc}, expected {spec.rc}\nstdout: {result.out[-800:]}\n"
                                  f"stderr: {result.err[-1500:]}")
    if result.rc != 0:
        errors = [line for line in result.err.splitlines() if line.startswith("latent-studio: error:")]
        listing = spec.argv and spec.argv[0] == "models"
        assert errors or listing, f"{name}: refused without an error line\nstderr: {result.err[-1500:]}"
        assert len(result.err.splitlines()) <= 6, f"{name}: a long error report\n{result.err[-1500:]}"
        where = both if listing else result.err
        for text in spec.names:
            assert str(text) in where, f"{name}: the message does not name {str(text)!r}\n{where[-1500:]}"
    for text in spec.says:
        assert str(text) in result.err, f"{name}: stderr does not say {str(text)!r}\n{result.err[-1500:]}"
    new = [rel for rel in after if rel not in before and not _matches(rel, ALWAYS_ALLOWED)
           and not _matches(rel, spec.allow_new)
           and not (result.rc == 0 and any(rel == o or rel.startswith(o + "/") for o in outputs))]
    what = "stray or partial files" if result.rc == 0 else "files left by a refused command"
    assert not new, f"{name}: {what}: {sorted(new)[:12]}\nstderr: {result.err[-600:]}"
    if result.rc == 0:
        for o in spec.outputs:
            assert Path(o).exists(), f"{name}: exit 0 but no {o}"
    if spec.check:
        spec.check(ctx, result)


def run_case(name: str, build: Callable[[Ctx], Spec], tmp_path: Path, corpus: Corpus, runner: Runner) -> Result:
    ctx = Ctx(tmp_path, corpus)
    spec = build(ctx)
    before = snapshot(ctx.root)
    result = runner.run([str(a) for a in spec.argv], ctx, spec.timeout)
    check_case(name, spec, ctx, before, result)
    return result


class Cases:
    """A registry a test module fills with `@cases.add("id")` builders; `cases.params` for parametrize."""

    def __init__(self):
        self.builds: dict[str, Callable[[Ctx], Spec]] = {}

    def add(self, name: str, build: Callable[[Ctx], Spec] | None = None):
        def register(fn):
            assert name not in self.builds, name
            self.builds[name] = fn
            return fn

        return register(build) if build is not None else register

    @property
    def params(self):
        return [pytest.param(name, build, id=name) for name, build in self.builds.items()]
