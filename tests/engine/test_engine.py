"""The render engine: events, lanes, cancellation, errors, the model cache, devices and shutdown.

Most tests drive a controllable test family ('gate') whose render blocks on a threading.Event the test holds, so
that what is in flight and what waits is decided by the test, never by timing.
"""

from __future__ import annotations

import queue
import threading
import uuid

import numpy as np
import pytest
import torch
from torch import nn

import studio.engine.renderer as renderer_module
from studio.engine import EXPORT, PREVIEW, Cancelled, Engine
from studio.engine.api import EngineAPI
from studio.engine.cache import ModelCache
from studio.engine.device import is_out_of_memory, pick_device, resolve_dtype
from studio.engine.renderer import TorchRenderer
from studio.engine.scheduler import Scheduler
from studio.errors import RequestError, StudioError
from studio.families import register_family, unregister_family
from studio.families.base import Family
from studio.steps import Output, Progress
from studio.library import load_model, resolve
from studio.params import Kind, ParamSpec
from studio.request import RenderRequest
from studio.io.package import write_package

from conftest import Recorder

TIMEOUT = 10.0


# --- helpers --------------------------------------------------------------------------------------------------------


class GateFamily(Family):
    """A test family: its render yields, then blocks on `gate` until the test releases it.

    The request's prompt picks a behaviour: "" (block on the gate), "raise" (ValueError mid-render), "studio"
    (a RequestError mid-render), "oom" (out of memory on any device but the CPU), "oom-once" (out of memory once).
    """

    output_kinds = ("image",)

    def __init__(self, name: str):
        self.name = name
        self.gate = threading.Event()
        self.entered: queue.Queue[int] = queue.Queue()  # seeds whose render reached the gate
        self.calls: list[int] = []  # seeds whose render started
        self.closed: list[int] = []  # seeds whose render saw GeneratorExit
        self.completed: list[int] = []  # seeds whose render ran to its end
        self.oom_raised = 0

    def build(self, manifest):
        return nn.Linear(1, 1)

    def parameters(self, manifest):
        return (ParamSpec("prompt", Kind.TEXT, default=""),)  # how the test wants the render to go

    def render(self, model, request):
        self.calls.append(request.seed)
        mode = request.param("prompt", "")
        yield Progress(0, 2, "started")
        if mode == "raise":
            raise ValueError("kaboom in the network")
        if mode == "studio":
            raise RequestError("this prompt cannot be drawn", field="prompt")
        if mode == "oom" and model.device.type != "cpu":
            self.oom_raised += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if mode == "oom-once" and self.oom_raised == 0:
            self.oom_raised += 1
            raise RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)")
        try:
            self.entered.put(request.seed)
            assert self.gate.wait(TIMEOUT), "the test never released the gate"
            yield Progress(1, 2, "released")
        except GeneratorExit:
            self.closed.append(request.seed)
            raise
        self.completed.append(request.seed)
        return Output("image", np.full((2, 2, 1), request.seed % 256, np.uint8), {"device": model.device.type})

    def wait_entered(self, seed: int) -> None:
        got = self.entered.get(timeout=TIMEOUT)
        assert got == seed, f"render of seed {got} reached the gate, expected {seed}"


def gate_manifest(model_id: str, family: str) -> dict:
    return {
        "format": 1, "id": model_id, "name": "Gate test model", "family": family, "version": "0.0.1",
        "license": "CC0-1.0", "output": {"kind": "image", "width": 2, "height": 2, "channels": 1},
        "latent": {"shape": [1]}, "architecture": {"note": "a single linear layer"},
    }


@pytest.fixture
def gate(tmp_path):
    """(family, model id, engine): a fresh gate family, registered under a unique name, with a package using it."""
    suffix = uuid.uuid4().hex[:8]
    family = GateFamily(f"test-gate-{suffix}")
    register_family(family)
    model_id = f"gate-{suffix}"
    root = tmp_path / "gate-models"
    write_package(root / model_id, gate_manifest(model_id, family.name), nn.Linear(1, 1).state_dict())
    engine = Engine(device="cpu", roots=[root], threads=1)
    try:
        yield family, model_id, engine
    finally:
        family.gate.set()
        engine.shutdown()
        unregister_family(family.name)


@pytest.fixture
def tiny_engine(models_dir):
    engine = Engine(device="cpu", roots=[models_dir], threads=1)
    yield engine
    engine.shutdown()


def req(model_id: str, seed: int = 0, prompt: str = "", **kw) -> RenderRequest:
    return RenderRequest(model_id=model_id, seed=seed, params={"prompt": prompt} if prompt else {}, **kw)


# --- submit and events ----------------------------------------------------------------------------------------------


def test_events_arrive_in_order_and_output_is_reproducible(tiny_engine):
    request = req("tiny", seed=3, prompt="Ab")
    per_job, everything = Recorder(), Recorder()
    tiny_engine.subscribe(everything)
    job = tiny_engine.submit(request, PREVIEW, on_event=per_job)
    output = job.wait(TIMEOUT)
    assert per_job.wait_end(job) == "finished"
    kinds = per_job.kinds(job)
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "finished"
    assert set(kinds[2:-1]) == {"progress"} and len(kinds) >= 4
    finished = per_job.of(job, "finished")[0]
    assert finished.output is output
    everything.wait_end(job)
    assert everything.kinds(job) == kinds  # the listener saw the same events
    assert job.state == "finished" and job.info["device"] == "cpu" and len(job.info["model_sha256"]) == 64

    assert output.kind == "image" and output.data.dtype == np.uint8 and output.size == (32, 16)
    again = tiny_engine.submit(request, EXPORT).wait(TIMEOUT)
    assert np.array_equal(output.data, again.data)


def test_a_package_retrained_under_its_id_renders_its_new_weights(models_dir):
    """The app adds a package again after training it anew under the same id: the cached network is dropped."""
    from conftest import make_tiny_package

    engine = Engine(device="cpu", roots=[models_dir], threads=1)
    try:
        engine.add_package(resolve(str(models_dir / "tiny")))
        request = req("tiny", seed=3, prompt="Ab")
        before = engine.submit(request, EXPORT).wait(TIMEOUT)
        assert np.array_equal(engine.submit(request, EXPORT).wait(TIMEOUT).data, before.data)  # cached
        make_tiny_package(models_dir / "tiny", "tiny", seed=7)  # new weights, same id and folder
        engine.add_package(resolve(str(models_dir / "tiny")))
        after = engine.submit(request, EXPORT).wait(TIMEOUT)
        assert not np.array_equal(after.data, before.data)
        assert after.data.shape == before.data.shape
    finally:
        engine.shutdown()


def test_unsubscribe_stops_delivery(tiny_engine):
    seen = Recorder()
    unsubscribe = tiny_engine.subscribe(seen)
    first = tiny_engine.submit(req("tiny", 1, "A"))
    first.wait(TIMEOUT)
    seen.wait_end(first)
    unsubscribe()
    unsubscribe()  # twice is harmless
    own = Recorder()
    second = tiny_engine.submit(req("tiny", 2, "A"), on_event=own)
    second.wait(TIMEOUT)
    own.wait_end(second)
    assert seen.kinds(second) == []
    assert own.kinds(second)[-1] == "finished"


def test_the_engine_is_the_scheduler_with_the_torch_renderer(tiny_engine):
    assert isinstance(tiny_engine, Scheduler) and isinstance(tiny_engine.renderer, TorchRenderer)
    assert isinstance(tiny_engine, EngineAPI)
    assert tiny_engine.device is tiny_engine.renderer.device and tiny_engine.cache is tiny_engine.renderer.cache
    tiny_engine.oom_fallback = False  # the renderer's settings are read and written through the engine
    assert tiny_engine.renderer.oom_fallback is False


def test_unknown_lane_is_refused(tiny_engine):
    with pytest.raises(ValueError, match="lane"):
        tiny_engine.submit(req("tiny"), lane="background")


def test_queued_is_emitted_before_the_worker_can_start_the_job(tiny_engine):
    """Regression: `queued` was emitted after the job was visible to the worker. Force the thread switch that
    can happen by chance: hold the `queued` emit until the worker has started (a correct engine never does)."""
    started = threading.Event()
    original = tiny_engine._emit

    def emit(event):
        if event.kind == "queued":
            started.wait(0.5)  # a correct engine cannot start the job before `queued`: this wait times out
        if event.kind == "started":
            started.set()
        original(event)

    tiny_engine._emit = emit
    rec = Recorder()
    job = tiny_engine.submit(req("tiny", 1, "A"), on_event=rec)
    job.wait(TIMEOUT)
    rec.wait_end(job)
    assert rec.kinds(job)[:2] == ["queued", "started"]


# --- lanes ----------------------------------------------------------------------------------------------------------


def test_preview_lane_is_newest_wins(gate):
    family, model_id, engine = gate
    rec = Recorder()
    engine.subscribe(rec)
    first = engine.submit(req(model_id, 0), PREVIEW)
    family.wait_entered(0)  # job 1 is in flight, blocked on the gate
    burst = [engine.submit(req(model_id, seed), PREVIEW) for seed in range(1, 100)]  # 100 previews in all
    newest = burst[-1]
    superseded = burst[:-1]
    assert len(superseded) == 98
    for job in superseded:  # superseded at once, on the submitting thread
        assert job.state == "cancelled"
        with pytest.raises(Cancelled):
            job.wait(0)
        assert "superseded" in rec.of(job, "cancelled")[0].message
    family.gate.set()
    assert first.wait(TIMEOUT).data[0, 0, 0] == 0
    assert newest.wait(TIMEOUT).data[0, 0, 0] == 99
    rec.wait_end(newest)
    assert family.calls == [0, 99]  # exactly two renders: the one in flight and the newest
    assert all(rec.kinds(job) == ["queued", "cancelled"] for job in superseded)


def test_export_lane_is_fifo_and_never_superseded(gate):
    family, model_id, engine = gate
    finished = []
    engine.subscribe(lambda e: finished.append(e.job.request.seed) if e.kind == "finished" else None)
    blocker = engine.submit(req(model_id, 100), EXPORT)
    family.wait_entered(100)
    exports = [engine.submit(req(model_id, seed), EXPORT) for seed in range(1, 6)]
    assert all(job.state == "queued" for job in exports)
    family.gate.set()
    blocker.wait(TIMEOUT)
    outputs = [job.wait(TIMEOUT) for job in exports]
    assert [o.data[0, 0, 0] for o in outputs] == [1, 2, 3, 4, 5]
    assert family.calls == [100, 1, 2, 3, 4, 5]
    assert [s for s in family.completed] == [100, 1, 2, 3, 4, 5]
    assert all(job.state == "finished" for job in exports)


def test_preview_goes_before_waiting_exports(gate):
    family, model_id, engine = gate
    engine.submit(req(model_id, 50), EXPORT)
    family.wait_entered(50)
    export = engine.submit(req(model_id, 1), EXPORT)
    preview = engine.submit(req(model_id, 2), PREVIEW)
    family.gate.set()
    export.wait(TIMEOUT)
    preview.wait(TIMEOUT)
    assert family.calls == [50, 2, 1]  # interactive work first


# --- cancel ---------------------------------------------------------------------------------------------------------


def test_cancel_while_running_stops_at_the_next_yield(gate):
    family, model_id, engine = gate
    rec = Recorder()
    job = engine.submit(req(model_id, 7), EXPORT, on_event=rec)
    family.wait_entered(7)
    job.cancel()
    assert job.cancel_requested
    family.gate.set()  # the render yields once more: the engine must close it there
    with pytest.raises(Cancelled):
        job.wait(TIMEOUT)
    assert rec.wait_end(job) == "cancelled"
    assert job.state == "cancelled" and job.output is None
    assert family.closed == [7]  # the family saw GeneratorExit at its yield
    assert family.completed == []  # and never ran past it
    assert "finished" not in rec.kinds(job)
    # the worker carries on
    assert engine.submit(req(model_id, 8), EXPORT).wait(TIMEOUT).data[0, 0, 0] == 8


def test_cancel_before_start_never_calls_render(gate):
    family, model_id, engine = gate
    rec = Recorder()
    engine.subscribe(rec)
    running = engine.submit(req(model_id, 1), EXPORT)
    family.wait_entered(1)
    waiting = engine.submit(req(model_id, 2), EXPORT)
    after = engine.submit(req(model_id, 3), EXPORT)
    waiting.cancel()
    family.gate.set()
    running.wait(TIMEOUT)
    with pytest.raises(Cancelled):
        waiting.wait(TIMEOUT)
    after.wait(TIMEOUT)
    rec.wait_end(waiting)
    assert 2 not in family.calls and family.calls == [1, 3]
    assert rec.kinds(waiting) == ["queued", "cancelled"]  # never started


def test_cancel_while_the_model_loads_never_starts_the_render(gate, monkeypatch):
    family, model_id, engine = gate
    started = []
    engine.subscribe(lambda e: started.append(e.job) if e.kind == "started" else None)
    real = renderer_module.load_model

    def loading(entry, *args, **kwargs):
        started[-1].cancel()  # Esc while the model loads
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(renderer_module, "load_model", loading)
    job = engine.submit(req(model_id, 1), EXPORT)
    with pytest.raises(Cancelled):
        job.wait(TIMEOUT)
    assert job.info["device"] == "cpu"  # it was loaded
    assert family.calls == []  # and the renderer stopped at its cancel point before the family's first step


def test_cancel_all_cancels_waiting_and_running(gate):
    family, model_id, engine = gate
    running = engine.submit(req(model_id, 1), EXPORT)
    family.wait_entered(1)
    waiting = [engine.submit(req(model_id, s), EXPORT) for s in (2, 3)]
    preview = engine.submit(req(model_id, 4), PREVIEW)
    assert engine.busy
    engine.cancel_all()
    family.gate.set()
    for job in [running, *waiting, preview]:
        with pytest.raises(Cancelled):
            job.wait(TIMEOUT)
    assert family.calls == [1] and family.closed == [1]


# --- errors ---------------------------------------------------------------------------------------------------------


def test_error_mid_render_is_reported_and_the_worker_survives(gate):
    family, model_id, engine = gate
    family.gate.set()
    rec = Recorder()
    bad = engine.submit(req(model_id, 1, "raise"), EXPORT, on_event=rec)
    with pytest.raises(ValueError, match="kaboom in the network"):
        bad.wait(TIMEOUT)
    assert rec.wait_end(bad) == "error"
    event = rec.of(bad, "error")[0]
    assert "kaboom in the network" in event.message and "ValueError" in event.message
    assert isinstance(event.error, ValueError) and "Traceback" in event.detail
    assert bad.state == "error"
    # the SAME engine renders the next job fine
    good = engine.submit(req(model_id, 2), EXPORT)
    assert good.wait(TIMEOUT).data[0, 0, 0] == 2


def test_studio_error_message_passes_through_unchanged(gate):
    family, model_id, engine = gate
    rec = Recorder()
    job = engine.submit(req(model_id, 1, "studio"), EXPORT, on_event=rec)
    with pytest.raises(RequestError) as info:
        job.wait(TIMEOUT)
    rec.wait_end(job)
    assert str(info.value) == "prompt: this prompt cannot be drawn"
    assert rec.of(job, "error")[0].message == "prompt: this prompt cannot be drawn"


def test_raising_callbacks_do_not_stop_rendering(gate, caplog):
    family, model_id, engine = gate
    family.gate.set()

    def broken(event):
        raise RuntimeError(f"broken listener on {event.kind}")

    engine.subscribe(broken)
    rec = Recorder()
    engine.subscribe(rec)
    job = engine.submit(req(model_id, 5), EXPORT, on_event=broken)
    assert job.wait(TIMEOUT).data[0, 0, 0] == 5
    assert rec.wait_end(job) == "finished"  # listeners after the broken one still get every event
    assert rec.kinds(job)[:2] == ["queued", "started"]
    assert "event callback failed" in caplog.text


def test_unknown_model_is_an_error_event(tiny_engine):
    rec = Recorder()
    job = tiny_engine.submit(req("no-such-model"), EXPORT, on_event=rec)
    with pytest.raises(StudioError, match="no-such-model"):
        job.wait(TIMEOUT)
    assert rec.wait_end(job) == "error"
    assert "tiny" in rec.of(job, "error")[0].message  # names what is installed


# --- model cache ----------------------------------------------------------------------------------------------------


@pytest.fixture
def load_counter(monkeypatch):
    loads = []
    real = renderer_module.load_model

    def counting(entry, *args, **kwargs):
        loads.append(entry.id)
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(renderer_module, "load_model", counting)
    return loads


def test_same_model_is_loaded_once(tiny_engine, load_counter):
    tiny_engine.render(req("tiny", 1, "A"))
    tiny_engine.render(req("tiny", 2, "b"))
    tiny_engine.render(req("tiny", 3, "Ab"), lane=PREVIEW)
    assert load_counter == ["tiny"]
    tiny_engine.render(req("tiny-plain", 1))
    assert load_counter == ["tiny", "tiny-plain"]
    assert len(tiny_engine.cache) == 2


def test_tiny_cache_budget_keeps_only_the_newest_model(models_dir, load_counter):
    a = load_model(resolve(str(models_dir / "tiny")))
    b = load_model(resolve(str(models_dir / "tiny-plain")))
    cache = ModelCache(budget_bytes=1)
    assert cache.get("a", lambda: a) is a
    assert cache.get("b", lambda: b) is b
    assert len(cache) == 1 and "b" in cache and "a" not in cache
    assert cache.used == b.nbytes()
    roomy = ModelCache(budget_bytes=10 * (a.nbytes() + b.nbytes()))
    roomy.get("a", lambda: a)
    roomy.get("b", lambda: b)
    assert len(roomy) == 2
    roomy.drop("a")
    assert "a" not in roomy and len(roomy) == 1
    roomy.drop()
    assert len(roomy) == 0

    with Engine(device="cpu", roots=[models_dir], threads=1, cache_bytes=1) as engine:
        engine.render(req("tiny", 1, "A"))
        engine.render(req("tiny-plain", 1))
        assert len(engine.cache) == 1 and ("tiny-plain", torch.device("cpu"), torch.float32) in engine.cache
        engine.render(req("tiny", 2, "A"))  # evicted, so loaded again
    assert load_counter == ["tiny", "tiny-plain", "tiny"]


def test_wrong_model_hash_is_an_error_naming_the_hash(tiny_engine):
    wrong = "0123456789ab" + "f" * 52
    rec = Recorder()
    job = tiny_engine.submit(req("tiny", 1, "A", model_hash=wrong), EXPORT, on_event=rec)
    with pytest.raises(StudioError):
        job.wait(TIMEOUT)
    assert rec.wait_end(job) == "error"
    message = rec.of(job, "error")[0].message
    assert "hash" in message and wrong[:12] in message and "weights.safetensors" in message
    # the right hash renders
    sha = resolve(str(tiny_engine.roots[0] / "tiny")).sha256
    assert tiny_engine.render(req("tiny", 1, "A", model_hash=sha)).kind == "image"


def test_wrong_hash_after_a_cached_render_of_an_added_package(models_dir):
    """Regression: a hash mismatch forgot a package given to add_package ('no model with id', package lost)."""
    with Engine(device="cpu", roots=[], threads=1) as engine:  # knows the package only through add_package
        engine.add_package(resolve(str(models_dir / "tiny")))
        engine.render(req("tiny", 1, "A"))
        with pytest.raises(StudioError, match="hash"):
            engine.render(req("tiny", 1, "A", model_hash="0" * 64))
        assert engine.render(req("tiny", 1, "A")).kind == "image"  # and the package is still renderable


# --- out of memory --------------------------------------------------------------------------------------------------


def test_is_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9.00 GB)"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only torch's RuntimeErrors


def _as_if_on_gpu(engine: Engine) -> None:
    """Pretend the engine's device is an accelerator: the meta device places tensors nowhere and is not the CPU."""
    engine.device = torch.device("meta")


def test_out_of_memory_falls_back_to_the_cpu(gate, load_counter):
    family, model_id, engine = gate
    family.gate.set()
    _as_if_on_gpu(engine)
    job = engine.submit(req(model_id, 9, "oom"), EXPORT)
    output = job.wait(TIMEOUT)
    assert output.data[0, 0, 0] == 9 and output.info["device"] == "cpu"
    assert "out of memory" in job.info["fallback"] and job.info["device"] == "cpu"
    assert family.oom_raised == 2  # once, then once more after the cache was dropped
    assert load_counter == [model_id] * 3  # on the device, on the device after the drop, on the CPU


def test_out_of_memory_once_retries_on_the_same_device(gate, load_counter):
    family, model_id, engine = gate
    family.gate.set()
    _as_if_on_gpu(engine)
    rec = Recorder()
    job = engine.submit(req(model_id, 4, "oom-once"), EXPORT, on_event=rec)
    assert job.wait(TIMEOUT).info["device"] == "meta"
    assert "fallback" not in job.info and job.info["device"] == "meta"
    assert load_counter == [model_id, model_id]  # the cache was dropped and the model reloaded


def test_out_of_memory_without_fallback_is_an_error(gate):
    family, model_id, engine = gate
    _as_if_on_gpu(engine)
    engine.oom_fallback = False
    with pytest.raises(torch.cuda.OutOfMemoryError):
        engine.render(req(model_id, 1, "oom"))
    assert family.oom_raised == 1


def test_other_errors_on_an_accelerator_are_not_retried(gate):
    family, model_id, engine = gate
    _as_if_on_gpu(engine)
    with pytest.raises(ValueError):
        engine.render(req(model_id, 1, "raise"))
    assert family.calls == [1]


@pytest.mark.gpu
def test_gpu_render_matches_cpu(models_dir):
    request = req("tiny", 11, "Ab")
    with Engine(device="cpu", roots=[models_dir]) as cpu:
        expected = cpu.render(request)
    with Engine(device="auto", roots=[models_dir]) as gpu:
        assert gpu.device.type in ("cuda", "mps")
        job = gpu.submit(request, EXPORT)
        got = job.wait(60)
        assert job.info["device"].startswith(gpu.device.type) and "fallback" not in job.info
    assert got.data.shape == expected.data.shape
    assert np.abs(got.data.astype(int) - expected.data.astype(int)).max() <= 2


@pytest.mark.gpu
def test_gpu_render_in_float16(models_dir):
    request = req("tiny", 11, "Ab")
    with Engine(device="cpu", roots=[models_dir]) as cpu:
        expected = cpu.render(request)
    with Engine(device="auto", roots=[models_dir]) as gpu:
        job = gpu.submit(request.with_(dtype="float16"), EXPORT)
        got = job.wait(60)
        assert job.info["dtype"] == "float16" and "dtype_note" not in job.info
    assert got.data.dtype == np.uint8 and got.data.shape == expected.data.shape
    assert np.abs(got.data.astype(int) - expected.data.astype(int)).max() <= 4  # half precision: a little looser


# --- devices and dtypes ---------------------------------------------------------------------------------------------

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def test_pick_device_cpu():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA or HAS_MPS, reason="auto picks the GPU here")
def test_pick_device_auto_is_cpu_without_a_gpu():
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device(None) == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present")
def test_pick_device_cuda_without_cuda_is_a_studio_error(monkeypatch):
    with pytest.raises(StudioError, match="CUDA") as info:
        pick_device("cuda")
    assert info.value.field == "device"
    with pytest.raises(StudioError):
        pick_device("cuda:1")
    monkeypatch.setenv("LATENT_STUDIO_DEVICE", "cuda")  # the variable decides what 'auto' means
    with pytest.raises(StudioError, match="CUDA"):
        pick_device("auto")
    assert pick_device("cpu") == torch.device("cpu")  # an explicit choice wins over the variable


@pytest.mark.skipif(HAS_MPS, reason="MPS is present")
def test_pick_device_mps_without_mps_is_a_studio_error():
    with pytest.raises(StudioError, match="MPS"):
        pick_device("mps")


def test_pick_device_nonsense_is_a_studio_error():
    for name in ("gpu0", "meta"):
        with pytest.raises(StudioError) as info:
            pick_device(name)
        assert info.value.field == "device"


def test_environment_variable_cpu_is_respected_by_auto(monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_DEVICE", "cpu")
    assert pick_device("auto") == torch.device("cpu")
    assert Engine(device="auto").device == torch.device("cpu")


def test_resolve_dtype():
    cpu = torch.device("cpu")
    dtype, note = resolve_dtype("float16", cpu)
    assert dtype is torch.float32 and note and "float32" in note
    assert resolve_dtype("float32", cpu) == (torch.float32, None)
    assert resolve_dtype("bfloat16", cpu) == (torch.bfloat16, None)
    assert resolve_dtype("bfloat16", torch.device("mps"))[0] is torch.float16
    assert resolve_dtype("float16", torch.device("cuda")) == (torch.float16, None)


def test_float16_request_on_cpu_renders_in_float32_with_a_note(tiny_engine):
    request = req("tiny", 2, "Ab")
    job = tiny_engine.submit(request.with_(dtype="float16"), EXPORT)
    output = job.wait(TIMEOUT)
    assert job.info["dtype"] == "float32" and "float32" in job.info["dtype_note"]
    assert np.array_equal(output.data, tiny_engine.render(request).data)


# --- shutdown -------------------------------------------------------------------------------------------------------


def test_shutdown_joins_the_worker_and_refuses_new_work(models_dir):
    engine = Engine(device="cpu", roots=[models_dir], threads=1)
    engine.render(req("tiny", 1, "A"))
    worker = engine._thread
    assert worker is not None and worker.is_alive()
    engine.shutdown()
    assert not worker.is_alive()
    with pytest.raises(RuntimeError, match="shut down"):
        engine.submit(req("tiny", 1, "A"))
    engine.shutdown()  # twice is harmless


def test_shutdown_cancels_the_running_job(gate):
    family, model_id, engine = gate
    running = engine.submit(req(model_id, 1), EXPORT)
    family.wait_entered(1)
    waiting = engine.submit(req(model_id, 2), EXPORT)
    # shutdown flags the running job, then cancels the waiting one: open the gate then, so the render yields again
    engine.subscribe(lambda e: family.gate.set() if e.job is waiting and e.kind == "cancelled" else None)
    engine.shutdown()
    for job in (running, waiting):
        with pytest.raises(Cancelled):
            job.wait(TIMEOUT)
    assert family.calls == [1] and not engine._thread.is_alive()


def test_a_job_submitted_during_shutdown_is_refused_or_ends(gate):
    """Regression: shutdown cancelled before refusing new work, so a job submitted in between never ended."""
    family, model_id, engine = gate
    engine.submit(req(model_id, 1), EXPORT)
    family.wait_entered(1)
    waiting = engine.submit(req(model_id, 2), EXPORT)
    late = []

    def resubmit(event):
        if event.job is waiting and event.kind == "cancelled":
            family.gate.set()
            try:
                late.append(engine.submit(req(model_id, 3), EXPORT))
            except RuntimeError:
                late.append(None)  # refused: fine

    engine.subscribe(resubmit)
    engine.shutdown()
    assert late, "the waiting job was not cancelled"
    if late[0] is not None:
        assert late[0].done or late[0]._done.wait(1.0), "a job accepted during shutdown never ends"
