"""How many torch threads the headless verbs render on: torch's own default (no core kept for a GUI), or --threads."""

from __future__ import annotations

import os

import pytest
import torch

import studio.engine
import studio.engine.device as device
from studio.cli import main


@pytest.fixture
def engine_threads(monkeypatch):
    """The `threads` each Engine the CLI makes is given, and the torch thread count its worker then renders on."""
    seen: list[tuple[int | None, int]] = []
    real = studio.engine.Engine

    class Spy(real):
        def __init__(self, *args, threads=None, **kwargs):
            super().__init__(*args, threads=threads, **kwargs)
            seen.append((threads, self.threads))

    monkeypatch.setattr(studio.engine, "Engine", Spy)
    saved = torch.get_num_threads()
    yield seen
    torch.set_num_threads(saved)


def test_render_takes_torchs_default_thread_count(capsys, models_dir, tmp_path, engine_threads, monkeypatch):
    monkeypatch.setattr(device, "_TORCH_THREADS", 5)
    monkeypatch.setattr(device, "usable_cores", lambda: 3)  # a 3-core share of a bigger machine: 3, not 5
    out = tmp_path / "x.png"
    assert main(["render", "--models-dir", str(models_dir), "--model", "tiny", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    assert engine_threads == [(3, 3)] and out.is_file()
    monkeypatch.setattr(device, "usable_cores", lambda: 8)
    assert device.headless_threads() == 5 and device.default_threads() == 7  # the window keeps a core for the GUI


def test_threads_option_wins_and_is_checked(capsys, models_dir, tmp_path, engine_threads):
    out = tmp_path / "x.png"
    assert main(["render", "--models-dir", str(models_dir), "--model", "tiny", "--threads", "1",
                 "--out", str(out)]) == 0
    assert engine_threads == [(1, 1)]
    assert main(["sheet", "--models-dir", str(models_dir), "--model", "tiny", "--rows", "2", "--threads", "2",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert engine_threads[-1] == (2, 2)
    capsys.readouterr()
    assert main(["render", "--models-dir", str(models_dir), "--model", "tiny", "--threads", "0",
                 "--out", str(out)]) != 0
    assert "--threads must be 1 or more, got 0" in capsys.readouterr().err


def test_usable_cores_follows_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this OS")
    assert device.usable_cores() == len(os.sched_getaffinity(0))
