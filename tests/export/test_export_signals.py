"""An export ended by a signal leaves nothing partial (issue 16, point 8): SIGTERM or SIGHUP during `animate` end it
cleanly (exit 128 + the signal, one line, no hidden `.part` file beside the target), and the temporary a kill -9
leaves behind is swept by the next export into that folder.

The command runs in a subprocess on a tiny model and a long timeline; the signal is sent once its temporary file holds frames
(the export is under way). Nothing here measures time: the waits only bound a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_tiny_package
from studio.project import Document, save_document
from studio.project.timeline import Keyframe, Timeline
from studio.request import RenderRequest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def project(tmp_path) -> Path:
    make_tiny_package(tmp_path / "models" / "tiny")
    keys = tuple(Keyframe(RenderRequest("tiny", params={"prompt": "Ab"},
                                        latent=tuple(float((i + j) % 3 - 1) for j in range(8))), duration=60.0)
                 for i in range(3))
    doc = Document(request=keys[0].request, timeline=Timeline(keys, fps=30))  # 5400 frames: minutes of work
    (tmp_path / "out").mkdir()
    return save_document(doc, tmp_path / "walk.lstudio")


def start(project: Path, out: Path, *extra: str) -> subprocess.Popen:
    root = project.parent
    env = {**os.environ, "PYTHONPATH": str(REPO), "LATENT_STUDIO_DATA": str(root / "data"),
           "LATENT_STUDIO_CACHE": str(root / "cache"), "LATENT_STUDIO_SHIPPED_MODELS": str(root / "models"),
           "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen([sys.executable, "-m", "studio", "animate", str(project), "--models-dir",
                             str(root / "models"), "--out", str(out), *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def wait_for_temporary(proc: subprocess.Popen, target: Path, limit: float = 120.0) -> None:
    """Until the export's temporary file beside `target` holds frames, and is still there a moment later.

    An empty temporary is not enough: the export first opens and aborts a writer to check the target (before the
    model loads), so a temporary can appear and go again; a kill between the two would find nothing to leave."""
    end = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the export ended before its temporary appeared: {proc.returncode} {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("no temporary file with frames in it appeared")
        writing = [p for p in target.parent.glob(f".{target.name}.pid*") if _size(p) > 0]
        if writing:
            time.sleep(0.5)
            if all(p.exists() for p in writing):
                return
        time.sleep(0.05)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def finish(proc: subprocess.Popen, limit: float = 120.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the export did not end after the signal")
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)],
                         ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_the_export_cleanly(project, signum):
    out = project.parent / "out"
    proc = start(project, out / "walk.mp4", "--size", "128x128")
    wait_for_temporary(proc, out / "walk.mp4")
    proc.send_signal(signum)
    code, err = finish(proc)
    assert code == 128 + signum, err
    last = err.strip().splitlines()[-1]  # the progress bar may be above it
    assert last == f"latent-studio: stopped by {signal.Signals(signum).name}; nothing partial was written", err
    assert "Traceback" not in err
    assert os.listdir(out) == []  # no .part file, and no half video


def test_a_killed_exports_temporary_is_swept_by_the_next_export(project):
    out = project.parent / "out"
    (out / ".notes.chapter1.part").write_text("a user's file with a similar name")
    proc = start(project, out / "walk.mp4", "--size", "128x128")
    wait_for_temporary(proc, out / "walk.mp4")
    proc.kill()  # kill -9: no handler runs
    finish(proc)
    left = [name for name in hidden(out) if name.startswith(".walk.mp4.pid")]
    assert left, hidden(out)  # what a kill -9 leaves
    proc = start(project, out / "short.gif", "--fps", "0.1", "--size", "16x16")
    code, err = finish(proc)
    assert code == 0, err
    assert sorted(os.listdir(out)) == [".notes.chapter1.part", "short.gif"]
