"""Importing pickle checkpoints: tensors only, never executed; keys and shapes checked before a package is written."""

from __future__ import annotations

import builtins
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import TINY_ALPHABET, finish, tiny_manifest

from studio.errors import WeightsError
from studio.nets.setvae import SetVAE
from studio.importers import import_checkpoint, read_checkpoint
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.io.weights import write_tensors


def tiny_net(seed: int = 0) -> SetVAE:
    torch.manual_seed(seed)
    return SetVAE(image_size=16, channels=1, latent_dim=8, num_classes=len(TINY_ALPHABET), width=4, class_dim=4,
                  hidden=16)


def render(model) -> torch.Tensor:
    return torch.as_tensor(finish(model.family.render(model, RenderRequest(model.id, seed=3, params={"prompt": "Ab"})))[0].data)


class Evil:
    """Unpickling this opens (creates) the marker file: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model-module"])
def test_import_renders_like_the_original(tmp_path, layout):
    net = tiny_net()
    sd = net.state_dict()
    data = {"plain": sd, "state_dict": {"state_dict": sd, "epoch": 3, "note": "x"},
            "model-module": {"model": {f"module.{k}": v for k, v in sd.items()}, "step": 10}}[layout]
    ckpt = tmp_path / "in.ckpt"
    torch.save(data, ckpt)
    out = import_checkpoint(ckpt, tiny_manifest("imported"), tmp_path / "pkg")
    model = load_model(resolve(str(out)))
    reference = tiny_net()  # the same seed: the original weights
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, reference.state_dict()[k]), k
    original = load_model(resolve(str(import_checkpoint(ckpt, tiny_manifest("again"), tmp_path / "again"))))
    original.network.load_state_dict(reference.state_dict())
    assert torch.equal(render(model), render(original))
    assert render(model).float().std() > 0


def test_explicit_prefix_and_nested_dicts(tmp_path):
    sd = tiny_net().state_dict()
    nested: dict = {}
    for k, v in sd.items():
        node = nested.setdefault("net", {})
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    torch.save({"state_dict": nested}, tmp_path / "n.pth")
    assert set(read_checkpoint(tmp_path / "n.pth")) == {f"net.{k}" for k in sd}
    import_checkpoint(tmp_path / "n.pth", tiny_manifest(), tmp_path / "pkg", strip_prefix="net.")
    assert (tmp_path / "pkg" / "weights.safetensors").exists()


def test_safetensors_is_read_as_safetensors(tmp_path):
    sd = tiny_net().state_dict()
    write_tensors(sd, tmp_path / "w.ckpt")  # a misnamed safetensors file
    got = read_checkpoint(tmp_path / "w.ckpt")
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.mark.parametrize("how", ["pickle-2", "pickle-5", "torch-zip"])
def test_malicious_pickle_is_never_executed(tmp_path, how):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    payload = {"x": Evil(marker), "state_dict": {"w": torch.zeros(2)}}  # the payload first: it is what is refused
    if how == "torch-zip":
        torch.save(payload, ckpt)
        assert zipfile.is_zipfile(ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    assert not marker.exists()
    with pytest.raises(WeightsError) as err:
        read_checkpoint(ckpt)
    msg = str(err.value)
    assert str(ckpt) in msg and "not executed" in msg and "needs code" in msg
    if how != "pickle-5":  # protocol 5 is refused at its first frame, before the global is seen
        assert "io.open" in msg
    assert not marker.exists()
    with pytest.raises(WeightsError):
        import_checkpoint(ckpt, tiny_manifest(), tmp_path / "pkg")
    assert not marker.exists() and not (tmp_path / "pkg").exists()


class Opaque:
    """An ordinary object: loading it would need this module's code."""


def test_a_class_instance_is_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}, "opt": Opaque()}, tmp_path / "c.pt")
    with pytest.raises(WeightsError, match="Opaque.*not executed"):
        read_checkpoint(tmp_path / "c.pt")


@pytest.mark.parametrize("kind", ["text", "empty", "truncated-zip", "truncated-pickle", "missing", "list"])
def test_not_a_checkpoint(tmp_path, kind):
    path = tmp_path / "bad.pt"
    good = tmp_path / "good.pt"
    torch.save(tiny_net().state_dict(), good)
    if kind == "text":
        path.write_text("hello, these are not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated-zip":
        path.write_bytes(good.read_bytes()[:300])
    elif kind == "truncated-pickle":
        path.write_bytes(pickle.dumps({"a": 1, "b": "text" * 50}, protocol=2)[:40])
    elif kind == "list":
        torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("problem", ["missing", "extra", "shape"])
def test_mismatches_are_listed_and_nothing_is_written(tmp_path, problem):
    sd = dict(tiny_net().state_dict())
    if problem == "missing":
        del sd["dec_out.bias"]
        expect = ["missing 1", "dec_out.bias"]
    elif problem == "extra":
        sd["head.extra.weight"] = torch.zeros(3)
        expect = ["unexpected 1", "head.extra.weight"]
    else:
        sd["enc_fc.weight"] = torch.zeros(5, 5)
        expect = ["wrong shape 1", "enc_fc.weight [5, 5]"]
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "m.pth")
    out = tmp_path / "out" / "pkg"
    with pytest.raises(WeightsError) as err:
        import_checkpoint(tmp_path / "m.pth", tiny_manifest(), out)
    msg = str(err.value)
    assert str(tmp_path / "m.pth") in msg and "'module.'" in msg
    for part in expect:
        assert part in msg
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
