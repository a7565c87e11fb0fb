"""Bring-your-own generators, TorchScript (studio.families.generators.torchscript) and ONNX (studio.families.generators.onnx): a module
file and a small model.toml drive the same latent tools; a wrong output shape, wrong inputs, a file that is not a
module and a wrong manifest are named clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from torch import nn

from conftest import finish
from studio.engine.engine import Engine
from studio.errors import ManifestError, WeightsError
from studio.library import load_model, resolve, scan
from studio.request import CORE_FIELDS, RenderRequest


class Generator(nn.Module):
    def __init__(self, latent: int = 4, classes: int = 0, channels: int = 3, size: int = 8):
        super().__init__()
        self.channels, self.size = channels, size
        self.embed = nn.Embedding(max(classes, 1), latent)
        self.fc = nn.Linear(latent, channels * size * size)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if label is not None:
            z = z + self.embed(label)
        return torch.tanh(self.fc(z)).reshape(-1, self.channels, self.size, self.size)


def make_package(folder: Path, classes: int = 0, output: dict | None = None, module: nn.Module | None = None,
                 weights: str = "generator.pt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    scripted = torch.jit.script(module or Generator(classes=classes))
    torch.jit.save(scripted, str(folder / "generator.pt"))
    manifest = {
        "format": 1, "id": folder.name, "name": "Scripted", "family": "torchscript", "version": "1.0", "license": "MIT",
        "weights": weights,
        "output": output or {"kind": "image", "width": 8, "height": 8, "channels": 3},
        "latent": {"shape": [4], "prior": "normal"},
        "conditions": {"kind": "class", "labels": ["cat", "dog"], "default": "cat"} if classes else {"kind": "none"},
        "architecture": {"range": "-1..1"},
    }
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


def render(model, **fields):
    """Render with core fields by name and everything else as params."""
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return finish(model.family.render(model, RenderRequest(model.id, params=fields, **core)))[0]


def test_a_scripted_generator_renders_like_the_module(tmp_path):
    folder = make_package(tmp_path / "scripted")
    model = load_model(resolve(str(folder)))
    out = render(model, seed=3)
    assert out.kind == "image" and out.data.shape == (8, 8, 3) and out.data.dtype == np.uint8
    assert np.array_equal(out.data, render(model, seed=3).data)
    assert not np.array_equal(out.data, render(model, seed=4).data)
    z = model.family.latent(model, RenderRequest("scripted", seed=3))
    with torch.no_grad():
        expected = ((torch.jit.load(str(folder / "generator.pt"))(z[None]) + 1) / 2).clamp(0, 1)
    assert np.abs(out.data.astype(int) - (expected[0] * 255).round().permute(1, 2, 0).numpy()).max() <= 1
    assert len(model.sha256) == 64


def test_classes_are_passed_as_an_index(tmp_path):
    model = load_model(resolve(str(make_package(tmp_path / "classes", classes=2))))
    assert not np.array_equal(render(model, seed=1, label="cat").data, render(model, seed=1, label="dog").data)


def test_the_engine_renders_it(tmp_path):
    make_package(tmp_path / "models" / "scripted")
    with Engine(device="cpu", roots=[tmp_path / "models"]) as engine:
        assert engine.render(RenderRequest("scripted", seed=2)).data.shape == (8, 8, 3)


def test_a_wrong_output_shape_is_named(tmp_path):
    folder = make_package(tmp_path / "wrong", output={"kind": "image", "width": 16, "height": 16, "channels": 3})
    model = load_model(resolve(str(folder)))
    with pytest.raises(ManifestError, match=r"returned shape \(1, 3, 8, 8\).*\(1, 3, 16, 16\)"):
        render(model, seed=0)


def test_a_sound_generator(tmp_path):
    class Sound(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 64)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(z))  # (1, 64): mono

    folder = make_package(tmp_path / "sound", module=Sound(),
                          output={"kind": "audio", "sample_rate": 8000, "channels": 1, "length": 64})
    out = render(load_model(resolve(str(folder))), seed=1)
    assert out.kind == "audio" and out.data.shape == (64, 1) and out.info["sample_rate"] == 8000


def test_a_file_that_is_not_torchscript_is_named(tmp_path):
    folder = make_package(tmp_path / "broken")
    (folder / "generator.pt").write_bytes(b"not a module")
    with pytest.raises(WeightsError, match="not a TorchScript module") as info:
        load_model(resolve(str(folder)))
    assert "generator.pt" in str(info.value)


def test_a_manifest_naming_a_safetensors_file_for_torchscript_is_refused(tmp_path):
    make_package(tmp_path / "models" / "named", weights="weights.safetensors")
    entry = {e.id: e for e in scan([tmp_path / "models"])}["named"]
    assert not entry.ok and entry.error.field == "weights"


# --- ONNX ------------------------------------------------------------------------------------------------------------


def make_onnx_package(folder: Path, classes: int = 0, latent_shape=(4,), module: nn.Module | None = None) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = (module or Generator(classes=classes)).eval()
    z = torch.zeros(1, 4)
    args = (z, torch.zeros(1, dtype=torch.long)) if classes else (z,)
    names = ["latent", "label"][:len(args)]
    torch.onnx.export(net, args, str(folder / "generator.onnx"), input_names=names, output_names=["image"],
                      dynamo=False)
    manifest = {
        "format": 1, "id": folder.name, "name": "ONNX", "family": "onnx", "version": "1.0", "license": "MIT",
        "weights": "generator.onnx", "output": {"kind": "image", "width": 8, "height": 8, "channels": 3},
        "latent": {"shape": list(latent_shape), "prior": "normal"},
        "conditions": {"kind": "class", "labels": ["cat", "dog"], "default": "cat"} if classes else {"kind": "none"},
        "architecture": {"range": "-1..1"},
    }
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


def test_an_onnx_generator_renders_like_the_module(tmp_path):
    folder = make_onnx_package(tmp_path / "onnx-gen")
    model = load_model(resolve(str(folder)))
    out = render(model, seed=3)
    assert out.data.shape == (8, 8, 3) and np.array_equal(out.data, render(model, seed=3).data)
    torch.manual_seed(0)
    reference = Generator().eval()
    z = model.family.latent(model, RenderRequest("onnx-gen", seed=3))
    with torch.no_grad():
        expected = ((reference(z[None]) + 1) / 2).clamp(0, 1)
    assert np.abs(out.data.astype(int) - (expected[0] * 255).round().permute(1, 2, 0).numpy()).max() <= 1


def test_an_onnx_generator_with_classes(tmp_path):
    model = load_model(resolve(str(make_onnx_package(tmp_path / "onnx-classes", classes=2))))
    assert not np.array_equal(render(model, seed=1, label="cat").data, render(model, seed=1, label="dog").data)


def test_an_onnx_file_with_the_wrong_inputs_is_named(tmp_path):
    folder = make_onnx_package(tmp_path / "onnx-wrong", latent_shape=(6,))
    with pytest.raises(ManifestError, match=r"latent input 'latent' is shaped \[1, 4\].*\[1, 6\]") as info:
        load_model(resolve(str(folder)))
    assert info.value.field == "latent.shape"
    classes = make_onnx_package(tmp_path / "onnx-classes-missing")  # one input, but the manifest says classes
    text = (classes / "model.toml").read_text().replace('kind = "none"',
                                                          'kind = "class"\nlabels = ["a", "b"]')
    (classes / "model.toml").write_text(text)
    with pytest.raises(ManifestError, match="takes 1 input.*needs 2"):
        load_model(resolve(str(classes)))


def test_a_file_that_is_not_onnx_is_named(tmp_path):
    folder = make_onnx_package(tmp_path / "onnx-broken")
    (folder / "generator.onnx").write_bytes(b"not onnx")
    with pytest.raises(WeightsError, match="not a readable ONNX model") as info:
        load_model(resolve(str(folder)))
    assert "generator.onnx" in str(info.value)


def test_wrap_writes_the_sidecar_and_checks_the_generator(tmp_path, capsys):
    from studio.cli import main

    torch.manual_seed(0)
    module = tmp_path / "my gen.pt"
    torch.jit.save(torch.jit.script(Generator(classes=2)), str(module))
    out = tmp_path / "pkg"
    assert main(["wrap", str(module), "--latent", "4", "--image", "8x8x3", "--classes", "cat,dog",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    model = load_model(resolve(str(out)))
    assert model.manifest.family == "torchscript" and model.manifest.conditions.labels == ("cat", "dog")
    assert render(model, seed=1, label="dog").data.shape == (8, 8, 3)
    # a wrong output size is found when wrapping, and nothing is left behind
    bad = tmp_path / "bad"
    assert main(["wrap", str(module), "--latent", "4", "--image", "16x16x3", "--classes", "cat,dog",
                 "--out", str(bad)]) == 1
    assert "returned shape (1, 3, 8, 8)" in capsys.readouterr().err and not bad.exists()
    assert not (tmp_path / "bad.partial").exists()
    assert main(["wrap", str(module), "--latent", "4", "--out", str(tmp_path / "x")]) == 1
    assert "--image WxHxC" in capsys.readouterr().err
    assert main(["wrap", str(module), "--latent", "4", "--image", "8x8x3", "--out", str(out)]) == 1
    assert "already there" in capsys.readouterr().err
