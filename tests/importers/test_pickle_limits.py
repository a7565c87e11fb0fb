"""Pickled checkpoints cannot explode (issue 16, point 4): a few hundred bytes of pickle that describe a tree of 2⁴⁰
dicts ("billion laughs" through the memo) or a dict inside itself are refused quickly, naming the file, and a pickle
with too many opcodes or memo entries is refused by a scan that executes nothing, before torch builds anything.
A normal checkpoint still imports. The CLI cases run under a subprocess timeout: a hang fails the test instead of
hanging it."""

from __future__ import annotations

import os
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studio import limits
from studio.errors import WeightsError
from studio.io import checkpoints
from studio.io.checkpoints import check_pickle, read_checkpoint

REPO = Path(__file__).resolve().parents[2]


def laughs(levels: int = 40) -> dict:
    """A dict tree whose every level holds the one below twice: 2**levels leaves, a tiny pickle."""
    tree: dict = {"w": torch.zeros(2)}
    for _ in range(levels):
        tree = {"a": tree, "b": tree}
    return tree


def cli(tmp_path: Path, *argv) -> subprocess.CompletedProcess:
    (tmp_path / "shipped").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LATENT_STUDIO_DATA": str(tmp_path / "data"),
           "LATENT_STUDIO_CACHE": str(tmp_path / "cache"), "LATENT_STUDIO_SHIPPED_MODELS": str(tmp_path / "shipped")}
    return subprocess.run(["timeout", "60", sys.executable, "-m", "studio", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=90)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # 124 would be the timeout: a hang
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "unexpected error" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_billion_laughs_checkpoint_is_refused(tmp_path, zipped):
    path = tmp_path / "laughs.ckpt"
    torch.save(laughs(40), path, _use_new_zipfile_serialization=zipped)
    assert path.stat().st_size < 4096
    with pytest.raises(WeightsError, match=f"holds more than {limits.MAX_PICKLE_OBJECTS:,} objects") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_billion_laughs_checkpoint_does_not_hang_import(tmp_path):
    path = tmp_path / "laughs.ckpt"
    torch.save({"state_dict": laughs(40)}, path)
    one_line_error(cli(tmp_path, "import", path, "--sd", "--out", tmp_path / "out.safetensors"), str(path),
                   "holds more than")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("make", [
    lambda: (lambda d: (d.__setitem__("self", d), d)[1])({"w": torch.zeros(2)}),
    lambda: (lambda d: (d["inner"]["deeper"].__setitem__("up", d["inner"]), d)[1])(
        {"w": torch.zeros(1), "inner": {"deeper": {"v": torch.ones(1)}}}),
    lambda: (lambda d: (d.__setitem__("state_dict", d), d)[1])({}),
], ids=["itself", "an-ancestor", "under-a-wrapper-key"])
def test_a_self_referencing_checkpoint_is_refused(tmp_path, make):
    path = tmp_path / "loop.pt"
    torch.save(make(), path)
    with pytest.raises(WeightsError, match="refers to itself") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_self_referencing_checkpoint_is_one_line_from_import_sd(tmp_path):
    path = tmp_path / "loop.ckpt"
    sd: dict = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}
    sd["again"] = sd
    torch.save({"state_dict": sd}, path)
    one_line_error(cli(tmp_path, "import", path, "--sd", "--out", tmp_path / "o.safetensors"), str(path),
                   "refers to itself")


def test_shared_parts_are_counted_each_time_they_are_reached(tmp_path):
    path = tmp_path / "shared.pt"
    torch.save(laughs(10), path)  # 1024 leaves: fine, and each reached by its own dotted name
    tensors = read_checkpoint(path)
    assert len(tensors) == 1024 and "a.b.a.b.a.b.a.b.a.b.w" in tensors


def test_too_many_opcodes_or_memo_entries_are_refused_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "big.pt"
    torch.save({f"t{i}": torch.zeros(1) for i in range(200)}, path)
    loaded = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(a) or {})
    monkeypatch.setattr(limits, "MAX_PICKLE_OPCODES", 500)
    with pytest.raises(WeightsError, match="more than 500 opcodes"):
        read_checkpoint(path)
    monkeypatch.setattr(limits, "MAX_PICKLE_OPCODES", 10_000_000)
    monkeypatch.setattr(limits, "MAX_PICKLE_MEMO", 100)
    with pytest.raises(WeightsError, match="more than 100 objects to refer back to"):
        check_pickle(path)
    assert loaded == []  # refused by the scan: torch never saw it


def test_the_scan_never_unpickles(tmp_path, monkeypatch):
    """A pickle whose loading would run code is only walked as opcodes (torch's weights-only loader then refuses
    the global by name, as before)."""
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    path = tmp_path / "evil.pkl"
    data = pickle.dumps({"w": Boom()}, protocol=2)
    assert any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in pickletools.genops(data))
    path.write_bytes(data)
    check_pickle(path)  # walks it: nothing runs
    with pytest.raises(WeightsError):
        read_checkpoint(path)
    assert not (tmp_path / "ran").exists()


def test_a_data_pkl_over_the_byte_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(3)}, path)
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 16)
    with pytest.raises(WeightsError, match="data.pkl"):
        read_checkpoint(path)


def test_a_normal_checkpoint_still_reads_and_imports(tmp_path):
    from conftest import make_tiny_package
    from studio.io.weights import read_tensors

    models = tmp_path / "models"
    package = make_tiny_package(models / "tiny")
    weights = read_tensors(package / "weights.safetensors")
    path = tmp_path / "ft.ckpt"
    torch.save({"epoch": 3, "hparams": [1, 2, {"lr": 0.1}], "state_dict": {f"module.{k}": v for k, v in weights.items()}},
               path)
    tensors = read_checkpoint(path)
    assert set(tensors) == {f"module.{k}" for k in weights}
    assert list(tensors) == [f"module.{k}" for k in weights]  # in the file's order
    proc = cli(tmp_path, "import", path, "--like", "tiny", "--models-dir", models, "--out", tmp_path / "ft")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ft" / "model.toml").is_file()


def test_no_module_of_the_app_calls_pickle_load():
    # The one unpickler in the app is the network-pickle reader's: a subclass whose find_class resolves only its
    # allowlist (tests/io/test_nv_pickle.py refuses hostile globals through it), run after the opcode scan.
    restricted = REPO / "studio" / "io" / "nv_pickle.py"
    for source in (REPO / "studio").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for call in ("pickle.load(", "pickle.loads(", "Unpickler("):
            if source == restricted and call == "Unpickler(":
                continue
            assert call not in text, (source, call)
    text = restricted.read_text(encoding="utf-8")
    assert text.count("Unpickler(") == 2  # the class statement and its one use
    assert "class NetworkUnpickler(pickle.Unpickler):" in text and "def find_class" in text
    assert text.index("scan_pickle(f, p)") < text.index("NetworkUnpickler(f).load()")
    assert "pickletools.genops" in Path(checkpoints.__file__).read_text(encoding="utf-8")
