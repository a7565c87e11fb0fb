"""Shared fixtures: tiny seeded model packages built on the fly (no training), isolated user folders."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from pathlib import Path

import pytest
import torch

from studio.nets.setvae import SetVAE
from studio.latent.directions import principal_directions
from studio.train.fonts import CHARSET
from studio.io.package import write_package

TINY_ALPHABET = CHARSET


def tiny_manifest(model_id: str = "tiny", size: int = 16, latent: int = 8, conditional: bool = True) -> dict:
    return {
        "format": 1, "id": model_id, "name": f"Tiny {model_id}", "family": "vae", "version": "0.0.1",
        "license": "CC0-1.0", "description": "a tiny seeded test network",
        "output": {"kind": "image", "width": size, "height": size, "channels": 1},
        "latent": {"shape": [latent], "prior": "normal"},
        "conditions": ({"kind": "text", "alphabet": TINY_ALPHABET, "default": "Ab"} if conditional
                       else {"kind": "none"}),
        "architecture": {"image_size": size, "width": 4, "class_dim": 4, "hidden": 16, "ink_on_paper": True},
        "training": {"quality": {"note": "untrained"}},
    }


def make_tiny_package(folder: Path, model_id: str = "tiny", seed: int = 0, conditional: bool = True,
                      size: int = 16, latent: int = 8) -> Path:
    """A valid package with a seeded, untrained network and real principal directions."""
    torch.manual_seed(seed)
    net = SetVAE(image_size=size, channels=1, latent_dim=latent, num_classes=len(TINY_ALPHABET) if conditional else 0,
                 width=4, class_dim=4, hidden=16)
    gen = torch.Generator().manual_seed(seed)
    directions = principal_directions(torch.randn(64, latent, generator=gen) * torch.linspace(2, 0.5, latent), k=4)
    return write_package(folder, tiny_manifest(model_id, size, latent, conditional), net.state_dict(),
                         directions.to_tensors())


def finish(steps):
    """Drive a family's generator (render, projection) to its end: (its return value, what it yielded)."""
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            return stop.value, seen


def _randomise(net: torch.nn.Module, seed: int, std: float = 0.2) -> None:
    """Untrained nets start with zero output layers and zero noise strengths; tests need every part to matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight") and p.ndim > 1 or "noise_strength" in name or "bias" in name:
                p.add_(torch.randn(p.shape, generator=gen) * std)


def make_tiny_gan_package(folder: Path, model_id: str = "tiny-gan", seed: int = 0, size: int = 8,
                          latent: int = 8) -> Path:
    """A valid style-based GAN package: a seeded untrained generator (4 style layers at 8×8), w̄ and directions
    measured from its own mapping."""
    from studio.nets.stylegan import StyleGenerator

    torch.manual_seed(seed)
    widths = [8] * (int(size // 4).bit_length())
    net = StyleGenerator(size, 1, latent, latent, len(TINY_ALPHABET), 4, 2, tuple(widths))
    _randomise(net, seed)
    with torch.no_grad():
        w = net.map(torch.randn(256, latent, generator=torch.Generator().manual_seed(seed)))
        net.w_avg.copy_(w.mean(0))
    manifest = {
        "format": 1, "id": model_id, "name": f"Tiny {model_id}", "family": "gan", "version": "0.0.1",
        "license": "CC0-1.0", "description": "a tiny seeded test generator",
        "output": {"kind": "image", "width": size, "height": size, "channels": 1},
        "latent": {"shape": [latent], "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": TINY_ALPHABET, "default": "Ab"},
        "architecture": {"image_size": size, "widths": widths, "class_dim": 4, "mapping_layers": 2,
                         "ink_on_paper": True},
        "training": {"quality": {"note": "untrained"}},
    }
    return write_package(folder, manifest, net.state_dict(), principal_directions(w, k=4).to_tensors())


def make_tiny_diffusion_package(folder: Path, model_id: str = "tiny-diffusion", seed: int = 0, size: int = 8,
                                schedule: str = "cosine") -> Path:
    """A valid diffusion package: a seeded untrained UNet (8×8, two levels) with every layer made to matter."""
    from studio.nets.unet import UNet

    torch.manual_seed(seed)
    net = UNet(size, 1, 8, (1, 2), len(TINY_ALPHABET), 16, True)
    _randomise(net, seed, std=0.02)
    # A few dozen denoising steps on soft random blobs: an untrained ε-net sends x₀ far outside the pixel range,
    # and every sampler would then give the same all-black-or-white picture.
    from studio.nets.samplers import Schedule

    ac = Schedule.make(schedule).alphas_cumprod.float()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.enable_grad():
        for _ in range(40):
            x0 = torch.nn.functional.interpolate(torch.rand(32, 1, 2, 2, generator=gen) * 2 - 1, size=(size, size),
                                                 mode="bilinear", align_corners=False)
            t = torch.randint(0, 1000, (32,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            a = ac[t].reshape(-1, 1, 1, 1)
            loss = (net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t.float(),
                        torch.randint(0, len(TINY_ALPHABET) + 1, (32,), generator=gen)) - noise).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    manifest = {
        "format": 1, "id": model_id, "name": f"Tiny {model_id}", "family": "diffusion", "version": "0.0.1",
        "license": "CC0-1.0", "description": "a tiny seeded test UNet",
        "output": {"kind": "image", "width": size, "height": size, "channels": 1},
        "latent": {"shape": [1, size, size], "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": TINY_ALPHABET, "default": "Ab"},
        "architecture": {"base": 8, "mults": [1, 2], "emb_dim": 16, "attention": True, "schedule": schedule,
                         "train_timesteps": 1000, "ink_on_paper": True},
        "training": {"quality": {"note": "untrained"}},
    }
    return write_package(folder, manifest, net.state_dict(), None)


TINY_SOUNDS = ("kick", "snare", "pad")


def make_tiny_audio_package(folder: Path, model_id: str = "tiny-audio", seed: int = 0, sample_rate: int = 8000,
                            length: int = 1024, latent: int = 4) -> Path:
    """A valid audio VAE package: a seeded untrained spectrogram VAE (n_fft 64, hop 16: 32 bins × 65 frames) with
    three sound classes, every layer made to matter."""
    from studio.nets.spectrogram import SpecFormat, SpecVAE

    torch.manual_seed(seed)
    fmt = SpecFormat(64, 16, length)
    net = SpecVAE(fmt.bins, fmt.frames, latent, len(TINY_SOUNDS), width=4, levels=2, max_width=8, class_dim=4,
                  hidden=16, fitted_prior=True)
    _randomise(net, seed, std=0.1)
    gen = torch.Generator().manual_seed(seed)
    directions = principal_directions(torch.randn(64, latent, generator=gen) * torch.linspace(2, 0.5, latent), k=3)
    manifest = {
        "format": 1, "id": model_id, "name": f"Tiny {model_id}", "family": "audio-vae", "version": "0.0.1",
        "license": "CC0-1.0", "description": "a tiny seeded test network",
        "output": {"kind": "audio", "sample_rate": sample_rate, "channels": 1, "length": length},
        "latent": {"shape": [latent], "prior": "normal"},
        "conditions": {"kind": "class", "labels": list(TINY_SOUNDS), "default": "snare"},
        "architecture": {"width": 4, "levels": 2, "max_width": 8, "class_dim": 4, "hidden": 16, "n_fft": 64,
                         "hop": 16, "fitted_prior": True, "griffin_lim_iterations": 8},
        "training": {"quality": {"note": "untrained"}},
    }
    return write_package(folder, manifest, net.state_dict(), directions.to_tensors())


@pytest.fixture(autouse=True)
def _collect_qt_garbage_on_the_gui_thread(request):
    """Collect a Qt test's cyclic garbage (sessions, windows) on the main thread when it ends. Left to the cyclic GC,
    a session could be freed on whichever thread happens to trigger a collection, such as an engine worker. Qt
    cannot stop a QObject's timers from another thread, so a timer still running when it was freed later fires on
    freed memory."""
    yield
    if "qtbot" in request.fixturenames:
        import gc

        gc.collect()


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Never touch the real user data/cache folders; never see the shipped models unless a test asks."""
    base = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("LATENT_STUDIO_DATA", str(base / "data"))
    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(base / "cache"))
    monkeypatch.delenv("LATENT_STUDIO_DEVICE", raising=False)


@pytest.fixture
def models_dir(tmp_path) -> Path:
    """A folder holding two valid tiny packages: 'tiny' (text-conditional) and 'tiny-plain' (unconditional)."""
    root = tmp_path / "models"
    make_tiny_package(root / "tiny", "tiny", seed=0)
    make_tiny_package(root / "tiny-plain", "tiny-plain", seed=1, conditional=False)
    return root


@pytest.fixture
def tiny_package(models_dir) -> Path:
    return models_dir / "tiny"


@pytest.fixture
def engine():
    """The fake engine (tests/fake_engine.py) the UI tests drive the app with; shut down afterwards."""
    from fake_engine import FakeEngine

    fake = FakeEngine()
    yield fake
    fake.shutdown()


@pytest.fixture
def session(qtbot, engine, models_dir):
    """A Session over the fake engine, started on the tiny package with its first render done and its history
    settled; test files that need another session define their own."""
    from studio.ui.session import Session

    s = Session(engine, roots=[models_dir])
    s.refresh_models()
    with qtbot.waitSignal(s.rendered, timeout=5000):
        s.start("tiny")
    s.flush_history()
    yield s
    s.undo.clear()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    has_gpu = torch.cuda.is_available() or (getattr(torch.backends, "mps", None) is not None
                                            and torch.backends.mps.is_available())
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA or MPS device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --- engine events ------------------------------------------------------------------------------------------------

TERMINAL_EVENTS = ("finished", "cancelled", "error")
EVENT_TIMEOUT = 10.0


class Recorder:
    """An event callback that records events and lets a test wait for one, without sleeping."""

    def __init__(self):
        self.events = []
        self._cv = threading.Condition()

    def __call__(self, event):
        with self._cv:
            self.events.append(event)
            self._cv.notify_all()

    def wait_for(self, predicate, timeout: float = EVENT_TIMEOUT) -> None:
        with self._cv:
            assert self._cv.wait_for(lambda: predicate(self.events), timeout), \
                f"timed out; events so far: {[(e.job.stamp, e.kind) for e in self.events]}"

    def wait_end(self, job, timeout: float = EVENT_TIMEOUT) -> str:
        """The job's terminal event kind, once it has been delivered (Job.wait may return a moment earlier)."""
        self.wait_for(lambda evs: any(e.job is job and e.kind in TERMINAL_EVENTS for e in evs), timeout)
        return self.kinds(job)[-1]

    def kinds(self, job=None) -> list[str]:
        with self._cv:
            return [e.kind for e in self.events if job is None or e.job is job]

    def of(self, job, kind):
        with self._cv:
            return [e for e in self.events if e.job is job and e.kind == kind]
