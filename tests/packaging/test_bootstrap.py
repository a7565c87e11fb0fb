"""packaging/bootstrap.sh chooses the PyTorch build on purpose (--torch auto|cpu|cuda): its --print-plan says the
choice, why, and the pip commands it would run, without installing anything. A fake nvidia-smi on PATH stands for a
GPU; a local HTTP server (or a closed port) for the PyTorch CPU index being reachable (or not)."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "bootstrap.sh"
UNREACHABLE = "http://127.0.0.1:1/whl/cpu"  # a closed port: refused at once


@pytest.fixture(scope="module")
def cpu_index():
    """A stand-in for https://download.pytorch.org/whl/cpu that answers for /torch/."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            ok = self.path.rstrip("/").endswith("/torch")
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"<html><body>torch-2.13.0+cpu</body></html>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


def _bin(tmp_path: Path, **scripts: str) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name.replace("_", "-")
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
    return folder


def plan(*args: str, fake_bin: Path | None = None, index: str = UNREACHABLE) -> tuple[int, str, str]:
    # this machine's own nvidia-smi (if any) is taken off PATH: only the fake one counts
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()]
    if fake_bin is not None:
        path.insert(0, str(fake_bin))
    env = {**os.environ, "PATH": os.pathsep.join(path), "PYTHON": sys.executable,
           "LATENT_STUDIO_TORCH_CPU_INDEX": index}
    done = subprocess.run(["bash", str(SCRIPT), *args, "--print-plan"], env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout, done.stderr


def _line(out: str, start: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(start)]
    assert lines, out
    return lines[0]


def test_auto_takes_cuda_where_nvidia_smi_works(tmp_path, cpu_index):
    fake = _bin(tmp_path, nvidia_smi='echo "GPU 0: NVIDIA Fake (UUID: GPU-0)"')
    code, out, err = plan("--torch", "auto", fake_bin=fake, index=cpu_index)
    assert code == 0, err
    assert _line(out, "torch:").startswith("torch: cuda (nvidia-smi lists a GPU)")
    torch_run = _line(out, "run:")
    assert torch_run.endswith("-m pip install --disable-pip-version-check -c constraints.txt torch==2.13.0")
    assert "--index-url" not in torch_run  # the package index's Linux wheel is the CUDA build


def test_auto_takes_the_cpu_index_without_a_working_nvidia_smi(tmp_path, cpu_index):
    for fake in (None, _bin(tmp_path, nvidia_smi="echo 'NVIDIA-SMI has failed' >&2; exit 9")):
        code, out, err = plan(fake_bin=fake, index=cpu_index)  # auto is the default
        assert code == 0, err
        torch_line = _line(out, "torch:")
        assert torch_line.startswith("torch: cpu (" + ("no nvidia-smi" if fake is None else "nvidia-smi does not work"))
        assert f"the CPU build from the PyTorch CPU index {cpu_index}" in torch_line
        assert _line(out, "run:").endswith(f"-c constraints.txt --index-url {cpu_index} torch==2.13.0")


def test_cpu_falls_back_to_what_pip_resolves_when_the_cpu_index_cannot_be_reached(tmp_path):
    code, out, err = plan("--torch", "cpu")
    assert code == 0, err
    assert "cannot be reached: what pip resolves from its configured index" in _line(out, "torch:")
    assert "--index-url" not in _line(out, "run:")


def test_asked_for_builds_and_an_explicit_index(tmp_path, cpu_index):
    fake = _bin(tmp_path, nvidia_smi='echo "GPU 0: NVIDIA Fake"')
    code, out, _ = plan("--torch", "cpu", fake_bin=fake, index=cpu_index)  # a GPU, but CPU asked for
    assert _line(out, "torch:").startswith("torch: cpu (asked for)") and "--index-url" in _line(out, "run:")
    code, out, _ = plan("--torch=cuda", "--torch-index", "https://download.pytorch.org/whl/cu128")
    assert code == 0 and _line(out, "torch:").startswith("torch: cuda (asked for)")
    assert _line(out, "run:").endswith("--index-url https://download.pytorch.org/whl/cu128 torch==2.13.0")


def test_macos_takes_the_package_indexs_wheel(tmp_path, cpu_index):
    fake = _bin(tmp_path, uname="echo Darwin")
    code, out, err = plan(fake_bin=fake, index=cpu_index)
    assert code == 0, err
    assert _line(out, "torch:").startswith("torch: default (macOS")
    assert "--index-url" not in _line(out, "run:")
    assert "system packages: none needed on Darwin" in out


def test_the_app_and_its_extras_come_from_pyproject_by_name():
    runs = lambda out: [line for line in out.splitlines() if line.startswith("run:")]  # noqa: E731
    _, out, _ = plan()
    assert runs(out)[1].endswith("-m pip install --disable-pip-version-check -c constraints.txt -e .")
    _, out, _ = plan("--dev")
    assert runs(out)[1].endswith("-c constraints.txt -e .[dev]")
    _, out, _ = plan("--with", "diffusers,onnx")
    assert runs(out)[1].endswith("-e .[diffusers,onnx]")
    code, _, err = plan("--with", "cuda-magic")
    assert code == 2 and "no extra 'cuda-magic' in pyproject.toml" in err
    code, _, err = plan("--torch", "gpu")
    assert code == 2 and "--torch takes auto, cpu or cuda, not 'gpu'" in err


def test_the_pin_is_constraints_txts_and_the_extras_are_defined_once():
    import tomllib

    pin = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("torch==")]
    assert pin == ["torch==2.13.0"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert extras["dev"][0] == "latent-studio[diffusers,onnx,bundle]"
    flat = [req for reqs in extras.values() for req in reqs]
    assert len(flat) == len(set(flat))  # no requirement written in two extras
    assert project["requires-python"] == ">=3.10,<3.15"
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.10 to 3.14" in readme
    for text in ((ROOT / "packaging" / "build.sh").read_text(), readme):
        assert "pip install '.[" not in text and "pyinstaller>=" not in text.lower()


def test_the_readmes_apt_line_names_packages_the_window_check_knows():
    import re

    from studio import sysdeps

    readme = " ".join((ROOT / "README.md").read_text().split())
    line = re.search(r"the usual set is `sudo apt-get install ([^`]+)`", readme)
    assert line is not None
    named = line.group(1).split()
    assert set(named) <= set(sysdeps.PACKAGES.values())
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"} <= set(named)


def test_the_summary_says_which_torch_is_installed_and_its_size(tmp_path):
    """bootstrap's torch summary (its Python part, run on this interpreter): version, CPU or CUDA build, and the
    size on disk; a note when the build is not the one asked for."""
    import re

    import torch

    text = SCRIPT.read_text()
    start = text.index('"$VPY" - "$BUILD" <<\'EOF\' >&2\n') + len('"$VPY" - "$BUILD" <<\'EOF\' >&2\n')
    script = tmp_path / "summary.py"
    script.write_text(text[start:text.index("\nEOF\n", start)] + "\n")
    wrong = "cpu" if torch.version.cuda else "cuda"
    for asked in ("auto", wrong):
        done = subprocess.run([sys.executable, str(script), asked], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        build = f"the CUDA {torch.version.cuda} build" if torch.version.cuda else "the CPU build"
        first = done.stdout.splitlines()[0]
        assert first.startswith(f"bootstrap:       installed torch {torch.__version__}: {build}, CUDA available: ")
        size = re.search(r"; ([\d,]+) MB on disk \(torch", first)
        assert size is not None and int(size.group(1).replace(",", "")) > 50
        notes = done.stdout.splitlines()[1:]
        assert (len(notes) == 1 and "note: this is not" in notes[0]) if asked == wrong else notes == []
