"""NVIDIA network pickles read without running anything: test pickles are built with the stand-ins of
tests/sg_pickles.py, which pickle the way NVIDIA's torch_utils.persistence does (a metadata dict with type, version,
module_src, class_name and state handed to torch_utils.persistence._reconstruct_persistent_obj), from
the fixtures' G_ema state dicts; the rebuilt generators must give NVIDIA's reference outputs."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sg_pickles import FIX, Persistent, fixture_snapshot, marking_source, nvidia_modules, tree
from studio.errors import WeightsError
from studio.io.nv_pickle import EasyDictRecord, PersistentRecord, extract_network, read_network_pickle
from studio.nets.stylegan_nv import build_nvidia_generator, load_nvidia_generator, z_from_seed



@pytest.fixture()
def nv_modules(tmp_path: Path) -> Iterator[types.SimpleNamespace]:
    """Stand-ins for torch_utils.persistence and dnnlib (tests/sg_pickles.py), registered so pickle writes their
    names; records built through it carry module_src that would leave `marker` if anything ever ran it."""
    marker = tmp_path / "SOURCE_WAS_EXECUTED"
    src = marking_source(marker)
    with nvidia_modules():
        yield types.SimpleNamespace(
            Persistent=lambda class_name, state: Persistent(class_name, state, src),
            tree=lambda state_dict, init_kwargs: tree(state_dict, init_kwargs, src), marker=marker)


def snapshot(ns: types.SimpleNamespace, name: str, path: Path, protocol: int) -> Path:
    return fixture_snapshot(name, path, marker=ns.marker, protocol=protocol)


@pytest.mark.parametrize("name", ["sg2_uncond", "sg3t"])
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_snapshot_rebuilds_and_matches_nvidia(nv_modules, tmp_path: Path, name: str, protocol: int) -> None:
    path = snapshot(nv_modules, name, tmp_path / "network-snapshot-000000.pkl", protocol)
    for mod in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        del sys.modules[mod]  # the reader must not need (or import) NVIDIA's modules
    top = read_network_pickle(path)
    assert isinstance(top["G_ema"], PersistentRecord) and top["G_ema"].class_name == "Generator"
    assert isinstance(top["training_set_kwargs"], EasyDictRecord) and top["training_set_kwargs"]["resolution"] == 32
    assert top["D"].class_name == "Discriminator"
    assert "class Generator" in top["G_ema"].module_src
    assert isinstance(top["G_ema"].state["weight_gain"], np.floating)
    np.testing.assert_array_equal(top["G_ema"].state["size"], [36, 36])
    net = extract_network(path, obj=top)
    expected = json.loads((FIX / f"{name}.init_kwargs.json").read_text())["init_kwargs"]
    assert net.init_kwargs == expected and type(net.init_kwargs["mapping_kwargs"]) is dict
    state = load_file(FIX / f"{name}.G_ema.safetensors")
    assert net.tensors.keys() == state.keys()
    assert all(torch.equal(net.tensors[k], state[k]) for k in state)
    g = build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors)
    ref = np.load(FIX / f"{name}.reference.npz")
    for seed in (0, 1, 2):
        for psi in (1.0, 0.7):
            with torch.no_grad():
                w = g.mapping(z_from_seed(seed, g.z_dim), None, truncation_psi=psi)
                img = g.synthesis(w, noise_mode="const")
            for ours, key in ((w, f"w_seed{seed}_psi{psi:.1f}"), (img, f"img_seed{seed}_psi{psi:.1f}")):
                assert np.abs(ours.numpy() - ref[key]).max() <= 1e-4 * np.abs(ref[key]).max(), key
    assert not nv_modules.marker.exists(), "module_src was executed"
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


class _Reduce:
    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return (self.func, self.args)


def _hostile(tmp_path: Path, payload: Any) -> Path:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload}, protocol=2))
    return path


@pytest.mark.parametrize("make,named", [
    (lambda m: _Reduce(__import__("os").system, (f"touch {m}",)), ("os.system", "posix.system")),
    (lambda m: _Reduce(eval, (f"open({str(m)!r}, 'w')",)), ("builtins.eval",)),
    (lambda m: _Reduce(__import__("subprocess").Popen, (["touch", str(m)],)), ("subprocess.Popen",)),
    (lambda m: _Reduce(getattr, ("text", "upper")), ("builtins.getattr",)),
])
def test_hostile_globals_are_refused_by_name(tmp_path: Path, make: Any, named: tuple[str, ...]) -> None:
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path, make(marker))
    with pytest.raises(WeightsError) as err:
        read_network_pickle(path)
    msg = str(err.value)
    assert str(path) in msg and "refused" in msg and any(n in msg for n in named), msg
    assert not marker.exists()


def test_hand_written_os_system_opcodes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    with pytest.raises(WeightsError, match=r"os\.system"):
        read_network_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_object_arrays_nested_classes_and_bad_versions_are_refused(nv_modules, tmp_path: Path) -> None:
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"x": np.array([1, "a"], dtype=object)}, protocol=2))
    with pytest.raises(WeightsError, match="object dtype"):
        read_network_pickle(path)
    rec = nv_modules.Persistent("Generator", {})
    rec.meta["version"] = 99
    path.write_bytes(pickle.dumps({"G_ema": rec}, protocol=2))
    with pytest.raises(WeightsError, match="version 99"):
        read_network_pickle(path)
    rec = nv_modules.Persistent("Generator", {"_modules": {"m": torch.nn.Linear(2, 2)}})
    path.write_bytes(pickle.dumps({"G_ema": rec}, protocol=2))
    with pytest.raises(WeightsError, match=r"torch\.nn\.modules\.linear\.Linear"):
        read_network_pickle(path)


def test_not_a_snapshot_missing_network_and_wrong_class(nv_modules, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(WeightsError, match="junk.pkl.*not a readable"):
        read_network_pickle(junk)
    archive = tmp_path / "saved.pt"
    torch.save({"w": torch.zeros(2)}, archive)
    with pytest.raises(WeightsError, match="torch.save archive"):
        read_network_pickle(archive)
    path = tmp_path / "d_only.pkl"
    path.write_bytes(pickle.dumps({"D": nv_modules.Persistent("Discriminator", {})}, protocol=4))
    with pytest.raises(WeightsError, match="no network 'G_ema' \\(networks: D\\)"):
        extract_network(path)
    net = extract_network(path, key="D")
    with pytest.raises(WeightsError, match="Discriminator"):
        build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors)


def test_tensors_that_do_not_fit_the_kwargs_are_refused(nv_modules, tmp_path: Path) -> None:
    kwargs = json.loads((FIX / "sg2_uncond.init_kwargs.json").read_text())["init_kwargs"]
    kwargs["channel_max"] = 32
    path = tmp_path / "mismatch.pkl"
    path.write_bytes(pickle.dumps({"G_ema": nv_modules.tree(load_file(FIX / "sg2_uncond.G_ema.safetensors"),
                                                            kwargs)}))
    net = extract_network(path)
    with pytest.raises(WeightsError, match="do not fit"):
        build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors)
    with pytest.raises(WeightsError, match=r"mismatch\.pkl: G_ema: the Generator's tensors do not fit .*"
                       r"synthesis\.b4\.const is \[64, 4, 4\], the arguments give \[32, 4, 4\].*more\)$"):
        load_nvidia_generator(path)


def test_load_nvidia_generator_in_one_call(nv_modules, tmp_path: Path) -> None:
    path = snapshot(nv_modules, "sg2_uncond", tmp_path / "snap.pkl", 4)
    g = load_nvidia_generator(path)
    ref = np.load(FIX / "sg2_uncond.reference.npz")
    with torch.no_grad():
        img = g(z_from_seed(2, 64), None, truncation_psi=0.7, noise_mode="const")
    assert np.abs(img.numpy() - ref["img_seed2_psi0.7"]).max() <= 1e-4 * np.abs(ref["img_seed2_psi0.7"]).max()


def test_records_cannot_be_rewritten_and_tensor_types_are_not_instantiable(nv_modules, tmp_path: Path) -> None:
    rec = nv_modules.Persistent("Generator", {})
    body = pickle.dumps(rec, protocol=2)[:-1]  # drop STOP
    path = tmp_path / "build.pkl"
    # BUILD with a dict state on the record just made: must not overwrite its fields
    path.write_bytes(body + b"}q\x99(X\n\x00\x00\x00class_nameq\x9aX\x03\x00\x00\x00Badq\x9bub.")
    with pytest.raises(WeightsError, match="overwrite a network record"):
        read_network_pickle(path)
    path.write_bytes(b"\x80\x02ctorch\nTensor\nq\x00)\x81q\x01.")  # NEWOBJ torch.Tensor
    with pytest.raises(WeightsError, match="not a readable"):
        read_network_pickle(path)


def test_real_module_state_pickled_the_persistence_way(nv_modules, tmp_path: Path) -> None:
    """A real torch Module tree (ours, with NVIDIA's names) pickled as persistence does, so the state
    carries everything torch keeps in a Module's __dict__ (hook dicts, None buffers, numpy arrays)."""
    from studio.nets.stylegan_nv import StyleGAN3Generator

    reconstruct = sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj
    src = "raise SystemExit('module_src must never run')\n"
    made: dict[type, type] = {}

    def persistent(cls: type) -> type:
        if cls not in made:
            def __reduce__(self: Any) -> Any:
                state = object.__reduce__(self)[2]
                meta = dict(type="class", version=6, module_src=src, class_name=cls.__name__, state=state)
                return (reconstruct, (meta,))
            made[cls] = type(cls.__name__, (cls,), {"__reduce__": __reduce__})
        return made[cls]

    kwargs = json.loads((FIX / "sg3t.init_kwargs.json").read_text())["init_kwargs"]
    g = StyleGAN3Generator(**kwargs)
    g.load_state_dict(load_file(FIX / "sg3t.G_ema.safetensors"))
    for m in g.modules():
        m.__class__ = persistent(type(m))
    g._init_args, g._init_kwargs = (), kwargs
    path = tmp_path / "real.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": g}, f)
    for mod in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        del sys.modules[mod]
    net = extract_network(path)
    assert net.class_name == "StyleGAN3Generator" and net.init_kwargs == kwargs
    assert isinstance(read_network_pickle(path)["G_ema"].state["_modules"]["synthesis"]
                      .state["_modules"]["L0_36_64"].state["in_size"], np.ndarray)
    rebuilt = build_nvidia_generator("Generator", net.init_args, net.init_kwargs, net.tensors)
    ref = np.load(FIX / "sg3t.reference.npz")
    with torch.no_grad():
        img = rebuilt(z_from_seed(0, 64), None, truncation_psi=0.7)
    assert np.abs(img.numpy() - ref["img_seed0_psi0.7"]).max() <= 1e-4 * np.abs(ref["img_seed0_psi0.7"]).max()


# --- bombs: a network pickle needs no code to exhaust time or memory -------------------------------------------------

def _shared_tuples_bomb(levels: int) -> bytes:
    """A pickle of a few hundred bytes whose top tuple holds the one below twice, `levels` deep, through the memo:
    walked naively it is 2^levels visits."""
    out = bytearray(b"\x80\x02")
    out += b")"  # EMPTY_TUPLE
    out += b"q\x00"  # BINPUT 0
    for level in range(1, levels + 1):
        out += b"h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"\x86"  # BINGET, BINGET, TUPLE2
        out += b"q" + bytes([level])  # BINPUT level
    out += b"."
    return bytes(out)


def test_tuples_shared_through_the_memo_are_read_once(tmp_path: Path) -> None:
    # 2^60 visits if each shared tuple were walked per path; read once per object it is instant. Run in a child
    # process so that a regression fails on the generous time limit instead of hanging the suite.
    import subprocess

    path = tmp_path / "tuples.pkl"
    path.write_bytes(_shared_tuples_bomb(60))
    code = ("import sys; from studio.io.nv_pickle import read_network_pickle; t = read_network_pickle(sys.argv[1]); "
            "depth = 0\nwhile t: t = t[0]; depth += 1\nprint(depth)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "60"


def test_submodules_shared_along_many_paths_are_refused(nv_modules, tmp_path: Path) -> None:
    from sg_pickles import module_state

    with nvidia_modules():
        node = Persistent("Leaf", module_state({}, {"w": torch.nn.Parameter(torch.zeros(1))}, {}, {}), "")
        for level in range(40):  # each level holds the one below twice: 2^40 paths, 40 records
            node = Persistent(f"L{level}", module_state({}, {}, {}, {"a": node, "b": node}), "")
        path = tmp_path / "shared.pkl"
        with open(path, "wb") as f:
            pickle.dump({"G_ema": node}, f)
    with pytest.raises(WeightsError, match="more than 10,000 submodules"):
        extract_network(path)


def test_the_opcode_limit_applies_before_anything_is_built(nv_modules, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from sg_pickles import fixture_snapshot
    from studio import limits

    path = fixture_snapshot("sg2_uncond", tmp_path / "snap.pkl")
    assert extract_network(path).tensors  # within the limits as they are
    monkeypatch.setattr(limits, "MAX_PICKLE_OPCODES", 100)
    with pytest.raises(WeightsError, match="more than 100 opcodes") as info:
        read_network_pickle(path)
    assert str(info.value.path) == str(path)
