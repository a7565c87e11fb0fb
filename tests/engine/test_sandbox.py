"""Code-bearing models (TorchScript) run in the engine's worker process: the same pixels and events as in-process,
a cancel ends a stuck forward by ending the process, a killed worker is a clear error, the next render works, the
worker is closed in, and what it sends is checked frame by frame (never unpickled)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from torch import nn

from studio.engine.engine import Engine
from studio.engine.frames import FrameError, FrameReader, encode
from studio.engine.sandbox import InWorker, Sandbox
from studio.engine.scheduler import Cancelled
from studio.errors import ManifestError, StudioError
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.steps import run_steps

WAIT = 60  # s: generous bounds for a loaded machine (a worker imports torch when it starts)


class Generator(nn.Module):
    def __init__(self, latent: int = 4, size: int = 8):
        super().__init__()
        self.size = size
        self.fc = nn.Linear(latent, 3 * size * size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).reshape(-1, 3, self.size, self.size)


class Stuck(nn.Module):
    """A forward that never ends (tensor ops in an endless loop)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        while bool(x.sum() < 1e30):
            x = x * 1.0 + 0.0
        return x.new_zeros(1, 3, 8, 8)


class WritesAFile(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.from_file("planted.bin", shared=True, size=4096, dtype=torch.uint8)
        return z.new_zeros(1, 3, 8, 8) + t.float().sum()


def make_package(folder: Path, module: nn.Module) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(module), str(folder / "generator.pt"))
    manifest = {
        "format": 1, "id": folder.name, "name": folder.name, "family": "torchscript", "version": "1.0",
        "license": "MIT", "weights": "generator.pt", "output": {"kind": "image", "width": 8, "height": 8, "channels": 3},
        "latent": {"shape": [4], "prior": "normal"}, "conditions": {"kind": "none"}, "architecture": {"range": "-1..1"},
    }
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sandbox-models")
    make_package(root / "scripted", Generator())
    make_package(root / "stuck", Stuck())
    make_package(root / "writer", WritesAFile())
    return root


@pytest.fixture(scope="module")
def engine(models):
    with Engine(device="cpu", roots=[models], threads=1) as engine:
        yield engine
        pid = engine.renderer.sandbox.pid
    assert engine.renderer.sandbox.pid is None  # shutdown ended the worker
    if pid is not None:
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _started(engine: Engine, model_id: str) -> tuple:
    """Submit a render of `model_id` and wait until the worker is in its forward; (job, the worker's pid)."""
    generating = threading.Event()
    job = engine.submit(RenderRequest(model_id), on_event=lambda e: e.message == "generating" and generating.set())
    assert generating.wait(WAIT), job
    pid = engine.renderer.sandbox.pid
    assert pid is not None and pid != os.getpid()
    return job, pid


def test_the_worker_renders_the_same_pixels_and_events_as_in_process(engine, models, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the app loaded a TorchScript module")

    monkeypatch.setattr(torch.jit, "load", never)  # in this process: the worker is another one
    events = []
    job = engine.submit(RenderRequest("scripted", seed=3), on_event=events.append)
    output = job.wait(WAIT)
    monkeypatch.undo()
    assert [e.kind for e in events] == ["queued", "started", "progress", "progress", "finished"]
    assert [e.message for e in events if e.kind == "progress"] == ["generating", "done"]
    model = load_model(resolve(str(models / "scripted")))
    expected = run_steps(model.family.render(model, RenderRequest("scripted", seed=3)))
    assert output.kind == "image" and output.data.dtype == np.uint8 and output.data.shape == (8, 8, 3)
    assert np.array_equal(output.data, expected.data)
    assert job.info["model_sha256"] == model.sha256 and job.info["device"] == "cpu" and job.info["dtype"] == "float32"
    assert output.info["model_sha256"] == model.sha256
    # the app holds a stand-in for the network; the worker keeps the module loaded between requests
    cached = engine.renderer._model(RenderRequest("scripted"), torch.device("cpu"), torch.float32)
    assert isinstance(cached.network, InWorker) and cached.nbytes() == 0
    pid = engine.renderer.sandbox.pid
    again = engine.submit(RenderRequest("scripted", seed=4)).wait(WAIT)
    assert engine.renderer.sandbox.pid == pid and not np.array_equal(again.data, output.data)
    latent = engine.latent(RenderRequest("scripted", seed=3)).wait(WAIT)  # seeds and edits: computed here
    assert np.allclose(latent.data, model.family.latent(model, RenderRequest("scripted", seed=3)).numpy())


def test_an_onnx_generator_renders_in_the_worker_too(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder = tmp_path / "models" / "onnx-gen"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.onnx.export(Generator().eval(), (torch.zeros(1, 4),), str(folder / "generator.onnx"),
                      input_names=["latent"], output_names=["image"], dynamo=False)
    manifest = {"format": 1, "id": "onnx-gen", "name": "ONNX", "family": "onnx", "version": "1.0", "license": "MIT",
                "weights": "generator.onnx", "output": {"kind": "image", "width": 8, "height": 8, "channels": 3},
                "latent": {"shape": [4], "prior": "normal"}, "conditions": {"kind": "none"},
                "architecture": {"range": "-1..1"}}
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    with Engine(device="cpu", roots=[tmp_path / "models"], threads=1) as engine:
        output = engine.submit(RenderRequest("onnx-gen", seed=5)).wait(WAIT)
        assert engine.renderer.sandbox.pid is not None
    model = load_model(resolve(str(folder)))
    assert np.array_equal(output.data, run_steps(model.family.render(model, RenderRequest("onnx-gen", seed=5))).data)


def test_work_runs_here_and_only_the_render_in_the_worker(engine, tmp_path):
    """An export's work (writing the file) is the app's; the worker, which may write nothing, only renders."""
    from studio.engine.work import render_to_file, submit

    target = tmp_path / "out.png"
    output = submit(engine, RenderRequest("scripted", seed=3), render_to_file, path=target).wait(WAIT)
    assert target.is_file() and output.info["path"] == str(target) and output.data.shape == (8, 8, 3)


def test_out_of_memory_in_the_worker_is_what_the_fallback_recognises():
    from studio.engine.device import is_out_of_memory
    from studio.engine.frames import Frame
    from studio.engine.sandbox import _error

    error = _error(Frame({"type": "error", "oom": True, "message": "CUDA out of memory"}), "g.pt", "TorchScript module")
    assert isinstance(error, RuntimeError) and is_out_of_memory(error)
    plain = _error(Frame({"type": "error", "oom": False, "message": "ValueError: bad\nmore"}), "g.pt", "module")
    assert isinstance(plain, StudioError) and str(plain) == "g.pt: the module failed: ValueError: bad"
    forged = _error(Frame({"type": "error", "oom": False, "class": "SystemExit", "problem": "x", "message": "m"}),
                    "g.pt", "module")
    assert type(forged) is StudioError and "g.pt" in str(forged)  # only StudioError classes are rebuilt


def test_cancel_ends_a_stuck_torchscript_forward_and_the_next_render_works(engine):
    job, pid = _started(engine, "stuck")
    job.cancel()
    with pytest.raises(Cancelled):
        job.wait(10)  # generous: the worker is ended (SIGTERM, then SIGKILL after 0.3 s) at the next cancel point
    assert job.state == "cancelled"
    assert not _alive(pid)
    assert engine.submit(RenderRequest("scripted", seed=1)).wait(WAIT).data.shape == (8, 8, 3)
    assert engine.renderer.sandbox.pid not in (None, pid)  # a fresh worker


def test_cancel_all_ends_the_worker(engine):
    job, pid = _started(engine, "stuck")
    engine.cancel_all()
    with pytest.raises(Cancelled):
        job.wait(10)
    assert not _alive(pid)
    assert engine.submit(RenderRequest("scripted")).wait(WAIT).kind == "image"


def test_a_worker_killed_mid_render_is_a_clear_error_and_the_next_render_works(engine, models):
    job, pid = _started(engine, "stuck")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(StudioError) as info:
        job.wait(10)
    message = str(info.value)
    assert "stopped the worker process" in message and "exit code -9" in message, message
    assert str(models / "stuck" / "generator.pt") in message and "TorchScript" in message
    assert job.state == "error"
    assert engine.submit(RenderRequest("scripted", seed=2)).wait(WAIT).data.shape == (8, 8, 3)
    idle = engine.renderer.sandbox.pid  # a worker killed between requests is replaced too
    os.kill(idle, signal.SIGKILL)
    while _alive(idle) and engine.renderer.sandbox.pid == idle:
        time.sleep(0.05)
    assert engine.submit(RenderRequest("scripted", seed=2)).wait(WAIT).data.shape == (8, 8, 3)
    assert engine.renderer.sandbox.pid not in (None, idle)


def test_the_worker_is_closed_in(engine, models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    about = engine.renderer.sandbox.start()
    folder = about["cwd"]
    assert folder != str(tmp_path) and Path(folder).name.startswith("latent-studio-worker-")
    assert about["home"] == folder and about["tmpdir"] == folder
    if "fsize" in about:  # POSIX
        assert about["fsize"] == 0 and about["core"] == 0 and about["nofile"] <= 256
    if "fds" in about:  # Linux: the pipes, standard error (here /dev/null), and files in its own folder only
        fds = dict(about["fds"])
        assert fds[0].startswith("pipe:") and fds[3].startswith("pipe:")
        for fd, target in fds.items():
            assert fd <= 3 or target.startswith(folder) or target.startswith(("pipe:", "anon_inode:")), (fd, target)
    # a module that writes a file is refused by the operator check (or, were it let through, its write fails under
    # RLIMIT_FSIZE 0, asserted above): a message naming its file, and nothing written
    with pytest.raises(StudioError) as info:
        engine.submit(RenderRequest("writer")).wait(WAIT)
    assert "generator.pt" in str(info.value) and ("failed" in str(info.value) or "refused" in str(info.value))
    assert not list(Path(folder).glob("planted.bin")) or Path(folder, "planted.bin").stat().st_size == 0
    assert not (tmp_path / "planted.bin").exists() and not (models / "writer" / "planted.bin").exists()


def test_a_request_error_in_the_worker_keeps_its_class_file_and_field(tmp_path):
    folder = tmp_path / "wrong"
    make_package(folder, Generator(size=4))  # returns 4×4 where model.toml says 8×8
    sandbox = Sandbox()
    try:
        model = sandbox.model(resolve(str(folder)), torch.device("cpu"), torch.float32)
        with pytest.raises(ManifestError) as info:
            run_steps(model.family.render(model, RenderRequest("wrong")))
        assert info.value.path == str(folder / "model.toml") and info.value.field == "output"
        assert "returned shape (1, 3, 4, 4)" in str(info.value)
        pid = sandbox.pid
        assert pid is not None  # an error in a request leaves the worker serving
    finally:
        sandbox.close()
    assert sandbox.pid is None and not _alive(pid)


def test_wrap_ends_an_endless_trial_render_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from studio import limits
    from studio.cli import main

    module = tmp_path / "endless.pt"
    torch.jit.save(torch.jit.script(Stuck()), str(module))
    monkeypatch.setattr(limits, "MAX_TRIAL_SECONDS", 1.0)
    out = tmp_path / "pkg"
    started = time.monotonic()
    assert main(["wrap", str(module), "--latent", "4", "--image", "8x8x3", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "did not finish a render within 1 s" in err and "endless.pt" in err, err  # the file the user gave
    assert time.monotonic() - started < WAIT
    assert not out.exists() and not out.with_name("pkg.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endless.pt"]


# --- the frames: checked before anything is kept, never unpickled ----------------------------------------------------


def _frame(header: dict, arrays=()) -> bytes:
    return b"".join(bytes(part) for part in encode(header, arrays))


def _read(data: bytes, max_header: int = 1 << 20, max_bytes: int = 1 << 20, piece: int = 7):
    reader = FrameReader(max_header, max_bytes)
    frames = []
    for i in range(0, len(data), piece):
        reader.feed(data[i:i + piece])
        while (frame := reader.next()) is not None:
            frames.append(frame)
    return frames


def test_frames_carry_json_and_arrays_in_pieces():
    picture = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    sound = np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2)
    data = _frame({"type": "progress", "step": 1, "total": 2}) + _frame({"type": "output"}, [picture, sound])
    first, second = _read(data)
    assert first.header == {"type": "progress", "step": 1, "total": 2} and first.arrays == []
    assert second.type == "output" and np.array_equal(second.arrays[0], picture)
    assert second.arrays[1].dtype == np.float32 and np.array_equal(second.arrays[1], sound)
    second.arrays[0][0, 0, 0] = 9  # the reader's arrays are its own


@pytest.mark.parametrize("data, words", [
    ((1 << 30).to_bytes(4, "big") + b"{", "header of 1,073,741,824 bytes is over the limit"),
    (len(b"not json").to_bytes(4, "big") + b"not json", "not JSON"),
    (pickle.dumps({"type": "output"}), "over the limit"),  # a pickle is not a frame: never loaded
    (_frame({"type": "x", "deep": json.loads("[" * 100 + "]" * 100)}), "nests deeper"),
    (len(b"[1]").to_bytes(4, "big") + b"[1]", "JSON object with a type"),
])
def test_malformed_frames_are_refused(data, words):
    with pytest.raises(FrameError, match=words):
        _read(data)


@pytest.mark.parametrize("spec, words", [
    ({"dtype": "uint8", "shape": [1 << 20, 1 << 20]}, "over the limit"),
    ({"dtype": "object", "shape": [1]}, "not accepted"),
    ({"dtype": "float32", "shape": [-1]}, "whole numbers"),
    ({"dtype": "float32", "shape": [True]}, "whole numbers"),
    ({"dtype": "float32", "shape": [1] * 9}, "whole numbers"),
    ({"dtype": "uint8", "shape": [4], "offset": 9}, "dtype and shape"),
])
def test_array_headers_are_checked_before_their_bytes_are_kept(spec, words):
    text = json.dumps({"type": "output", "arrays": [spec]}).encode()
    reader = FrameReader(1 << 20, 1 << 20)
    reader.feed(len(text).to_bytes(4, "big") + text)
    with pytest.raises(FrameError, match=words):
        reader.next()


def test_arrays_over_the_callers_bound_are_refused_before_they_are_read():
    reader = FrameReader(1 << 20, max_array_bytes=100)
    data = _frame({"type": "output"}, [np.zeros(200, np.uint8)])
    reader.feed(data[:-150])  # the header and a few bytes: refused before the rest is asked for
    with pytest.raises(FrameError, match="over the limit of 100"):
        reader.next()


def test_the_frames_and_the_scheduler_import_no_torch():
    code = ("import sys; import studio.engine.frames, studio.engine.scheduler, studio.engine.api; "
            "sys.exit('torch' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=WAIT).returncode == 0


def test_a_worker_that_cannot_start_is_an_error_not_a_hang(monkeypatch, models):
    import studio.engine.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "_command", lambda: [sys.executable, "-c", "import sys; sys.exit(3)"])
    sandbox = Sandbox()
    try:
        with pytest.raises(StudioError, match=r"did not start: .*exit code 3"):
            sandbox.start(timeout=WAIT)
        model = sandbox.model(resolve(str(models / "scripted")), torch.device("cpu"), torch.float32)
        with pytest.raises(StudioError, match=r"generator.pt: the TorchScript module stopped the worker process "
                                              r"\(exit code 3\)"):
            run_steps(model.family.render(model, RenderRequest("scripted")))
    finally:
        sandbox.close()


def test_a_changed_model_toml_is_read_again_by_the_worker(tmp_path):
    folder = make_package(tmp_path / "changing", Generator())
    sandbox = Sandbox()
    try:
        model = sandbox.model(resolve(str(folder)), torch.device("cpu"), torch.float32)
        assert run_steps(model.family.render(model, RenderRequest("changing"))).data.shape == (8, 8, 3)
        toml = folder / "model.toml"
        toml.write_text(toml.read_text().replace("width = 8", "width = 4").replace("height = 8", "height = 4"))
        os.utime(toml, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        model = sandbox.model(resolve(str(folder)), torch.device("cpu"), torch.float32)
        with pytest.raises(ManifestError, match=r"returned shape \(1, 3, 8, 8\) but model.toml says \(1, 3, 4, 4\)"):
            run_steps(model.family.render(model, RenderRequest("changing")))
    finally:
        sandbox.close()
