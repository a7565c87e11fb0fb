"""TorchScript generators are checked before any of their code runs (studio/families/generators/torchscript.py and
allowlist.py): a module that reads or writes files, calls Python, uses a custom operator or C++ class, or hides such a
call in a nested block, a submodule, a second method, a class or `__setstate__`, is refused when it loads, naming the
operator and the method; nothing is written or read. Typical generators (linear, conv, upsampling, modulated conv,
sound) still load and render."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
import torch
import torch.nn.functional as F
from torch import nn

from conftest import finish
from studio.errors import WeightsError
from studio.families.generators import allowlist
from studio.families.generators.torchscript import check_graphs, load_checked
from studio.library import load_model, resolve
from studio.request import RenderRequest

SECRET = Path("/etc/passwd")


def save(module: nn.Module, folder: Path, output: dict | None = None, latent: int = 4, trace: bool = False) -> Path:
    """A torchscript package in `folder` holding `module` (scripted, or traced on a latent)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    module = module.eval()
    scripted = torch.jit.trace(module, (torch.randn(1, latent),)) if trace else torch.jit.script(module)
    torch.jit.save(scripted, str(folder / "generator.pt"))
    manifest = {
        "format": 1, "id": folder.name, "name": folder.name, "family": "torchscript", "version": "1.0",
        "license": "MIT", "weights": "generator.pt",
        "output": output or {"kind": "image", "width": 8, "height": 8, "channels": 3},
        "latent": {"shape": [latent], "prior": "normal"}, "conditions": {"kind": "none"},
        "architecture": {"range": "-1..1"},
    }
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


def refused(folder: Path, match: str) -> WeightsError:
    with pytest.raises(WeightsError, match=match) as info:
        load_model(resolve(str(folder)))
    message = str(info.value)
    assert "generator.pt" in message and "\n" not in message
    return info.value


# --- payloads ---------------------------------------------------------------------------------------------------------

class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3 * 8 * 8)

    def picture(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).reshape(-1, 3, 8, 8)


class WritesAFile(Base):
    """torch.from_file(shared=True) creates the file and writes through the mapping: the ~/.bashrc attack."""

    def __init__(self, target: str, shared: bool = True):
        super().__init__()
        self.target, self.shared = target, shared

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mapped = torch.from_file(self.target, shared=self.shared, size=16, dtype=torch.uint8)
        mapped.fill_(65)
        return self.picture(z) + mapped[:1].float() * 0


class ReadsAFile(Base):
    """The bytes of /etc/passwd come back as the picture's pixels."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        stolen = torch.from_file("/etc/passwd", shared=False, size=192, dtype=torch.uint8)
        return stolen.float().reshape(1, 3, 8, 8) / 127.5 - 1 + self.picture(z) * 0


class Saves(Base):
    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        torch.save(z, self.target)
        return self.picture(z)


class HiddenInBlocks(Base):
    """from_file only on a path through an If inside a Loop that a plain latent never takes."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.picture(z)
        for i in range(2):
            if bool(z.sum() > 1e9) or i == 1:
                out = out + torch.from_file(self.target, shared=True, size=1, dtype=torch.uint8).float() * 0
        return out


class Helper(nn.Module):
    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.from_file(self.target, shared=True, size=1, dtype=torch.uint8).float() * 0


class HiddenInASubmodule(Base):
    def __init__(self, target: str):
        super().__init__()
        self.post = Helper(target)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.post(self.picture(z))


class HiddenInAnotherMethod(Base):
    """forward is clean; an exported method nobody calls (yet) writes the file."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.picture(z)

    @torch.jit.export
    def plant(self, z: torch.Tensor) -> torch.Tensor:
        return z + torch.from_file(self.target, shared=True, size=1, dtype=torch.uint8).float() * 0


class HiddenInSetstate(nn.Module):
    """TorchScript runs __setstate__ while the file LOADS: it must be refused before torch parses it."""

    def __init__(self, target: str):
        super().__init__()
        self.target, self.weight = target, torch.zeros(4, 3 * 8 * 8)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.weight).reshape(-1, 3, 8, 8)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, torch.Tensor]:
        return self.target, self.training, self.weight

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, torch.Tensor]) -> None:
        self.target, self.training = state[0], state[1]
        mapped = torch.from_file(state[0], shared=True, size=16, dtype=torch.uint8)
        mapped.fill_(65)
        self.weight = state[2] + mapped[:1].float() * 0


@torch.jit.script
class Opener:
    def __init__(self, target: str):
        self.target = target
        self.mapped = torch.zeros(1)

    def __enter__(self):
        self.mapped = torch.from_file(self.target, shared=True, size=16, dtype=torch.uint8)
        self.mapped.fill_(65)

    def __exit__(self, kind: Any, value: Any, trace: Any):
        pass


class HiddenInAWithBlock(Base):
    """A scripted class's __enter__ runs implicitly at `with`: it is checked like any method."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with Opener(self.target):
            out = self.picture(z)
        return out


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "planted"
    yield path
    assert not path.exists(), "the model wrote a file"


def test_the_payloads_are_real_when_run_unchecked(tmp_path):
    """The modules below do what the tests say when torch.jit.load runs them without the check."""
    target = tmp_path / "planted-unchecked"
    folder = save(WritesAFile(str(target)), tmp_path / "writes")
    module = torch.jit.load(str(folder / "generator.pt"))
    module(torch.zeros(1, 4))
    assert target.read_bytes() == b"A" * 16
    if SECRET.is_file() and SECRET.stat().st_size >= 192:
        reader = torch.jit.load(str(save(ReadsAFile(), tmp_path / "reads") / "generator.pt"))
        pixels = ((reader(torch.zeros(1, 4)) + 1) * 127.5).round().to(torch.uint8).flatten().numpy().tobytes()
        assert pixels == SECRET.read_bytes()[:192]
    second = tmp_path / "planted-on-load"
    save(HiddenInSetstate(str(second)), tmp_path / "setstate")
    torch.jit.load(str(tmp_path / "setstate" / "generator.pt"))  # loading alone runs __setstate__
    assert second.exists()


@pytest.mark.parametrize("shared", [True, False])
def test_from_file_writing_is_refused_before_any_call(tmp_path, marker, shared):
    if not shared:  # without shared the mapping is private, but from_file still opens (and may create) the path
        marker.write_bytes(b"\0" * 16)
    error = refused(save(WritesAFile(str(marker), shared), tmp_path / "writes"),
                    r"method [\w.]*WritesAFile\.forward calls aten::from_file, which reads or writes files: refused")
    assert "allowlist" in str(error)
    if not shared:
        assert marker.read_bytes() == b"\0" * 16
        marker.unlink()


def test_from_file_reading_is_refused_and_nothing_is_read(tmp_path):
    folder = save(ReadsAFile(), tmp_path / "reads")
    refused(folder, r"ReadsAFile\.forward calls aten::from_file")
    with pytest.raises(WeightsError):  # the CLI and the window go through the same loader
        load_checked(folder / "generator.pt")


def test_the_check_refuses_before_the_engine_renders(tmp_path, marker):
    from studio.engine.engine import Engine
    save(WritesAFile(str(marker)), tmp_path / "models" / "writes")
    with Engine(device="cpu", roots=[tmp_path / "models"]) as engine:
        with pytest.raises(WeightsError, match="aten::from_file"):
            engine.render(RenderRequest("writes", seed=1))


def test_save_is_refused(tmp_path, marker):
    refused(save(Saves(str(marker)), tmp_path / "saves"),
            r"Saves\.forward calls aten::save, which reads or writes files")


def test_a_call_hidden_in_nested_if_and_loop_blocks_is_found(tmp_path, marker):
    refused(save(HiddenInBlocks(str(marker)), tmp_path / "nested"), r"HiddenInBlocks\.forward calls aten::from_file")


def test_a_call_hidden_in_a_submodule_is_found(tmp_path, marker):
    refused(save(HiddenInASubmodule(str(marker)), tmp_path / "sub"), r"Helper\.forward calls aten::from_file")


def test_a_call_hidden_in_a_second_exported_method_is_found(tmp_path, marker):
    refused(save(HiddenInAnotherMethod(str(marker)), tmp_path / "method"),
            r"HiddenInAnotherMethod\.plant calls aten::from_file")


def test_a_call_in_a_with_objects_enter_is_found(tmp_path, marker):
    refused(save(HiddenInAWithBlock(str(marker)), tmp_path / "with"), r"Opener\.__enter__ calls aten::from_file")


def test_setstate_is_refused_before_the_file_is_loaded(tmp_path, marker):
    refused(save(HiddenInSetstate(str(marker)), tmp_path / "setstate"), "defines __setstate__, which would run")


# A custom operator, registered by the test as a loaded library would register it: it reads a file.
LIBRARY = torch.library.Library("studio_test_evil", "DEF")
LIBRARY.define("read(Tensor x) -> Tensor")


@torch.library.impl(LIBRARY, "read", "CompositeExplicitAutograd")
def _read(x):
    return x + float(len(SECRET.read_bytes()) if SECRET.is_file() else 1)


class CustomOp(Base):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.ops.studio_test_evil.read(self.picture(z))


def test_an_operator_from_a_custom_namespace_is_refused(tmp_path, monkeypatch):
    calls: list[int] = []
    folder = save(CustomOp(), tmp_path / "custom")
    monkeypatch.setattr(SECRET.__class__, "read_bytes", lambda self: calls.append(1) or b"")
    refused(folder, r"CustomOp\.forward calls studio_test_evil::read, which is from the operator namespace "
                    r"'studio_test_evil'")
    assert calls == []


def test_a_custom_cpp_class_is_refused_before_loading(tmp_path):
    """torch.classes objects (here the quantized linear layer's packed weights) restore themselves in C++ while
    loading: refused from the archive, before torch parses it."""
    try:
        module = torch.ao.nn.quantized.Linear(4, 3 * 8 * 8)
        scripted = torch.jit.script(module)
    except Exception:  # a torch build without the quantized engines
        pytest.skip("no quantized linear in this torch build")
    folder = tmp_path / "packed"
    save(nn.Linear(4, 4), folder)  # the manifest; the module file is replaced below
    torch.jit.save(scripted, str(folder / "generator.pt"))
    refused(folder, r"(uses a custom C\+\+ class \(torch\.classes\)|defines __setstate__)")


@torch.jit.ignore
def shell(x):  # would run any Python (unannotated: TorchScript takes Tensor -> Tensor)
    return x


class CallsPython(Base):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return shell(self.picture(z))


def test_a_python_call_is_refused():
    """A @torch.jit.ignore'd Python function is a prim::PythonOp. torch.jit.save refuses to write one (so no file can
    carry it today), but the graph check names it if a future format could."""
    scripted = torch.jit.script(CallsPython())
    with pytest.raises(WeightsError, match=r"method forward calls prim::PythonOp, which calls into Python"):
        check_graphs([("forward", scripted.forward.graph)], Path("generator.pt"))


def test_an_archive_with_two_members_of_one_name_is_refused(tmp_path):
    folder = tmp_path / "dupes"
    save(_Clean(), folder)
    path = folder / "generator.pt"
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if "/code/" in n and n.endswith(".py"))
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, "def forward(self):\n  return torch.from_file('/etc/passwd')\n")
    refused(folder, "two members of the same name")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    folder = save(_Clean(), tmp_path / "flat")
    (folder / "generator.pt").write_bytes(b"\x00" * 4 + b"PTMF" + b"\x00" * 64)  # a flatbuffer-like header
    refused(folder, "not a zip archive")


# --- generators that must pass ----------------------------------------------------------------------------------------

class _Clean(Base):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.picture(z)


class ConvGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 16 * 2 * 2)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(16, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 8, 3, padding=1, padding_mode="reflect"),
            nn.GroupNorm(4, 8), nn.SiLU(), nn.Conv2d(8, 3, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 16, 2, 2))


class ModulatedConv(nn.Module):
    def __init__(self, cin: int, cout: int, w: int, up: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, 3, 3))
        self.affine = nn.Linear(w, cin)
        self.up = up
        self.noise_strength = nn.Parameter(torch.tensor(0.1))
        self.register_buffer("noise", torch.randn(1, 1, 8, 8))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, c, h, wd = x.shape
        style = self.affine(w).view(b, 1, -1, 1, 1) + 1
        weight = self.weight * style / math.sqrt(c * 9)
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            h, wd = h * 2, wd * 2
        out = F.conv2d(x.reshape(1, -1, h, wd), weight.view(-1, c, 3, 3), padding=1, groups=b).view(b, -1, h, wd)
        out = out + F.interpolate(self.noise, size=(h, wd), mode="nearest") * self.noise_strength
        return F.leaky_relu(out, 0.2) * math.sqrt(2)


class StyleLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.mapping = nn.ModuleList([nn.Linear(4, 16), nn.Linear(16, 16)])
        self.const = nn.Parameter(torch.randn(1, 8, 4, 4))
        self.convs = nn.ModuleList([ModulatedConv(8, 8, 16, False), ModulatedConv(8, 3, 16, True)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.mapping:
            w = F.leaky_relu(layer(w), 0.2)
        x = self.const.expand(z.shape[0], -1, -1, -1)
        for conv in self.convs:
            x = conv(x, w)
        return torch.clamp(x, -1.0, 1.0)


class SoundGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8 * 16)
        self.net = nn.Sequential(nn.ConvTranspose1d(8, 4, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Upsample(scale_factor=2.0, mode="linear"), nn.Conv1d(4, 1, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(self.fc(z).view(-1, 8, 16)).squeeze(1)
        t = torch.arange(out.shape[-1], dtype=torch.float32) / 8000.0
        return torch.tanh(out + 0.1 * torch.sin(2 * math.pi * 440.0 * t))


SOUND = {"kind": "audio", "sample_rate": 8000, "channels": 1, "length": 64}


@pytest.mark.parametrize("module, output, trace", [
    (_Clean(), None, False),
    (ConvGenerator(), None, False),
    (ConvGenerator(), None, True),
    (StyleLike(), None, False),
    (StyleLike(), None, True),
    (SoundGenerator(), SOUND, False),
    (SoundGenerator(), SOUND, True),
], ids=["linear", "conv", "conv-traced", "modulated", "modulated-traced", "sound", "sound-traced"])
def test_typical_generators_pass_and_render(tmp_path, module, output, trace):
    folder = save(module, tmp_path / "ok", output=output, trace=trace)
    model = load_model(resolve(str(folder)))
    out = finish(model.family.render(model, RenderRequest(model.id, seed=3)))[0]
    assert np.isfinite(out.data.astype(np.float32)).all()
    assert out.kind == ("audio" if output else "image")


class NoGrad(Base):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.picture(z)
        return out


def test_with_no_grad_in_a_scripted_forward_passes(tmp_path):
        load_model(resolve(str(save(NoGrad(), tmp_path / "nograd"))))


# --- the list itself --------------------------------------------------------------------------------------------------

SCHEMAS = torch._C._jit_get_all_schemas()
STRUCTURAL = {"prim::Constant", "prim::If", "prim::Loop", "prim::GetAttr", "prim::SetAttr", "prim::CreateObject",
              "prim::Enter", "prim::Exit", "prim::ListConstruct", "prim::ListUnpack", "prim::TupleConstruct",
              "prim::DictConstruct", "prim::isinstance"}  # graph nodes with no operator schema


def test_every_allowed_name_is_a_real_operator_of_an_allowed_namespace():
    names = {schema.name for schema in SCHEMAS}
    assert not {kind for kind in allowlist.ALLOWED if kind not in names} - STRUCTURAL
    assert {kind.split("::")[0] for kind in allowlist.ALLOWED} == {"aten", "prim"}


def test_no_denied_operator_is_allowed():
    assert not set(allowlist.DENIED) & allowlist.ALLOWED
    for kind, reason in allowlist.DENIED.items():
        assert allowlist.refusal(kind) == reason
    assert allowlist.refusal("aten::some_future_op") == "is not a reviewed tensor operator"
    assert "namespace 'quantized'" in allowlist.refusal("quantized::linear")
    assert allowlist.refusal("c10d::broadcast_") == allowlist.PROCESS


def test_no_allowed_operator_takes_a_file_a_storage_or_an_object():
    """Walk every registered operator schema: whatever takes a file name, a storage, a Python object, a custom class
    or a capsule is not allowed (einsum's `path` is a contraction order, a list of ints)."""
    for schema in SCHEMAS:
        risky = [arg for arg in (*schema.arguments, *schema.returns)
                 if any(word in str(arg.type) for word in ("Storage", "PyObject", "Capsule", "torch.classes"))
                 or (arg.name in ("filename", "file", "path", "fd", "url") and "str" in str(arg.type))]
        if risky:
            assert schema.name not in allowlist.ALLOWED, (schema.name, [a.name for a in risky])


def test_the_file_operators_of_this_torch_are_all_refused():
    """The operators whose names say file, save, load, storage, shared memory, rpc, print, seed or profile."""
    words = ("file", "save", "load", "storage", "shared", "mmap", "rpc", "print", "seed", "profil", "pin_memory",
             "_unsafe", "ipc", "set_data", "as_strided")
    for schema in SCHEMAS:
        if any(word in schema.name.split("::")[-1] for word in words):
            assert allowlist.refusal(schema.name) is not None, schema.name
