"""Shared fixtures: tiny seeded model packages built on the fly (no training), isolated user folders."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from pathlib import Path

import pytest
import torch

from studio.families.vae import SetVAE
from studio.latent.directions import principal_directions
from studio.train.fonts import CHARSET
from studio.train.package import write_package

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
