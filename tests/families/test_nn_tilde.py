"""nn~ TorchScript models (studio.families.nn_tilde, studio.importers.nn_tilde): a RAVE-style file (random weights, built
by tests/nn_tilde_models.py following nn_tilde's conventions) is read in the worker process and imported as a
package; its trajectory latent comes from the prior, seeded noise or an encoded sound, is edited per channel, and is
decoded in chunks whose seams do not show; hostile and malformed files are refused naming the operator or the
attribute."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomli_w
import torch
from torch import nn

from conftest import finish
from nn_tilde_models import TinyCodec, package_of, tiny
from studio.engine.engine import Engine
from studio.errors import RequestError, StudioError, WeightsError
from studio.families import get_family
from studio.families.generators.torchscript import load_checked
from studio.importers.nn_tilde import import_nn_tilde
from studio.library import load_model, resolve
from studio.params import Kind
from studio.request import CORE_FIELDS, RenderRequest
from studio.steps import Progress

FAMILY = get_family("nn-tilde")


def package(tmp_path: Path, name: str = "tiny", seconds: float = 0.5, arch: dict | None = None, **kwargs) -> Path:
    """A package for a TinyCodec made the way the importer makes it, but reading the file in this process (fast;
    test_the_importer_reads_the_file_in_a_worker_and_writes_a_package covers the worker)."""
    return package_of(tiny(tmp_path / f"{name}.ts", **kwargs), tmp_path / "models" / name, seconds, arch)


def render(model, **fields):
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return finish(model.family.render(model, RenderRequest(model.id, params=fields, **core)))


def flac(wave: np.ndarray, rate: int) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), rate, format="FLAC")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.set_num_threads(1)
    return load_model(resolve(str(package(tmp_path_factory.mktemp("nn")))))


# --- reading and importing ------------------------------------------------------------------------------------------


def test_the_importer_reads_the_file_in_a_worker_and_writes_a_package(tmp_path):
    source = tiny(tmp_path / "rave.ts", latent=6, ratio=32, sr=22050, channels=2)
    folder = import_nn_tilde(source, tmp_path / "models" / "rave", seconds=1.0)
    manifest = resolve(str(folder)).manifest
    assert manifest.family == "nn-tilde" and manifest.weights_path.read_bytes() == source.read_bytes()
    assert (manifest.output["sample_rate"], manifest.output["channels"]) == (22050, 2)
    frames = round(22050 / 32)
    assert manifest.latent.shape == (6, frames) and manifest.output["length"] == frames * 32
    arch = manifest.architecture
    assert (arch["ratio"], arch["latent_channels"], arch["encode"], arch["prior"]) == (32, 6, True, True)
    assert arch["methods"] == ["encode", "decode", "forward", "prior"]
    with pytest.raises(StudioError, match="already there"):
        import_nn_tilde(source, folder)
    assert import_nn_tilde(source, folder, seconds=2.0, force=True) == folder
    assert resolve(str(folder)).manifest.latent.shape[1] == round(2 * 22050 / 32)


def test_rave_v1_sampling_rate_buffer_and_a_model_without_prior_or_encoder(tmp_path):
    class DecodeOnly(TinyCodec):
        def __init__(self):
            super().__init__(prior=False, sr_as_buffer=True, sr=48000)
            self._methods = ["decode"]
            del self.encode_params, self.forward_params

    torch.jit.save(torch.jit.script(DecodeOnly()), str(tmp_path / "d.ts"))
    info = FAMILY.inspect_file(tmp_path / "d.ts")  # type: ignore[attr-defined]
    assert info["sample_rate"] == 48000 and info["methods"] == ["decode"]
    assert not info["encode"] and not info["prior"]
    names = {spec.name for spec in FAMILY.parameters(resolve(str(package(tmp_path, prior=False))).manifest)}
    assert "source" not in names and "sound" in names and {"offset", "scale", "glide"} <= names


# --- the trajectory --------------------------------------------------------------------------------------------------


def test_render_is_a_float_sound_of_the_package_length_and_a_seed_repeats(model):
    out, steps = render(model, seed=3)
    assert out.kind == "audio" and out.data.dtype == np.float32 and out.data.shape == (8000, 1)
    assert out.info["sample_rate"] == 16000 and np.abs(out.data).max() <= 1.0 and np.abs(out.data).max() > 0.01
    assert np.array_equal(out.data, render(model, seed=3)[0].data)
    assert not np.array_equal(out.data, render(model, seed=4)[0].data)
    assert not np.allclose(out.data, render(model, seed=3, source="noise")[0].data)
    assert any(isinstance(s, Progress) and s.message == "decoding" for s in steps)
    specs = {spec.name: spec for spec in model.table}
    assert specs["offset"].count == specs["scale"].count == specs["glide"].count == 4
    assert specs["sound"].kind is Kind.SOUND and specs["source"].default == "prior"


def test_the_prior_is_the_modules_prior_at_the_temperature(model):
    z = model.family.latent(model, RenderRequest(model.id, seed=5, params={"temperature": 0.5}))
    torch.manual_seed(5)
    with torch.no_grad():
        want = model.network.prior(torch.full((1, 1, 125), 0.5))[0]
    assert z.shape == (4, 125) and torch.allclose(z, want)


def test_noise_is_smoothed_over_time_and_scaled_by_temperature(model):
    def latent(**params):
        return model.family.latent(model, RenderRequest(model.id, seed=1, params={"source": "noise", **params}))

    rough, smooth = latent(smooth=0.0), latent(smooth=0.1)
    step = lambda z: (z[:, 1:] - z[:, :-1]).abs().mean()  # noqa: E731
    assert step(smooth) < 0.2 * step(rough)
    assert torch.allclose(latent(smooth=0.1, temperature=2.0), 2 * smooth)
    assert torch.allclose(smooth.std(dim=1), torch.ones(4), atol=0.05)


def test_offset_scale_and_glide_edit_one_channel(model):
    base = model.family.latent(model, RenderRequest(model.id, seed=2))
    edited = model.family.latent(model, RenderRequest(model.id, seed=2,
                                                      params={"scale1": 0.5, "offset1": 1.0, "glide1": -2.0}))
    want = base.clone()
    want[1] = base[1] * 0.5 + 1.0 - 2.0 * torch.linspace(0, 1, base.shape[1])
    assert torch.allclose(edited, want)
    assert not np.array_equal(render(model, seed=2)[0].data, render(model, seed=2, offset1=1.0)[0].data)


def test_a_curve_drawn_over_time_moves_the_chosen_channel(model):
    base = model.family.latent(model, RenderRequest(model.id, seed=2))
    points = {f"curve{i}": (1.0 if i == 8 else 0.0) for i in range(16)}  # one bump in the middle
    drawn = model.family.latent(model, RenderRequest(model.id, seed=2, params={"curve_channel": "3", **points}))
    added = drawn - base
    assert torch.allclose(added[:3], torch.zeros(3, 125)) and float(added[3].max()) == pytest.approx(1.0, abs=0.05)
    middle = int(torch.argmax(added[3]))
    assert abs(middle - 8 / 15 * 124) <= 1 and float(added[3, 0]) == 0 and float(added[3, -1]) == 0
    off = model.family.latent(model, RenderRequest(model.id, seed=2, params=points))  # no channel chosen
    assert torch.equal(off, base)


def test_explicit_values_render_the_same_sound(model):
    request = RenderRequest(model.id, seed=8, params={"offset0": 0.7})
    z = model.family.latent(model, request)
    out = render(model, seed=8, offset0=0.7)[0].data
    again = finish(model.family.render(model, RenderRequest(model.id, latent=z.reshape(-1).tolist())))[0].data
    assert np.allclose(out, again, atol=1e-6)
    with pytest.raises(RequestError, match="needs 500"):
        finish(model.family.render(model, RenderRequest(model.id, latent=[0.0] * 10)))


def test_chunks_decode_like_the_whole_with_margins_and_show_seams_without(tmp_path):
    whole = load_model(resolve(str(package(tmp_path, "whole"))))
    chunked = load_model(resolve(str(package(tmp_path, "chunked", arch={"chunk_seconds": 0.05,
                                                                       "margin_seconds": 0.01}))))
    seams = load_model(resolve(str(package(tmp_path, "seams", arch={"chunk_seconds": 0.05, "margin_seconds": 0.0}))))
    a, steps = render(whole, seed=1)
    b, chunk_steps = render(chunked, seed=1)
    assert sum(s.message == "decoding" for s in chunk_steps) == 10 > sum(s.message == "decoding" for s in steps)
    assert np.abs(a.data - b.data).max() < 1e-5
    assert np.abs(a.data - render(seams, seed=1)[0].data).max() > 1e-3  # the margins are what hides the seams


def test_a_sound_param_is_encoded_edited_and_decoded(model):
    t = np.arange(4000) / 8000
    wave = 0.5 * np.sin(2 * np.pi * 330 * t)
    text = flac(wave, 8000)
    z = model.family.latent(model, RenderRequest(model.id, seed=0, params={"sound": text}))
    from studio.export.audio import resample

    x = torch.zeros(1, 1, 8000)
    x[0, 0] = torch.from_numpy(resample(wave.astype(np.float32), 8000, 16000))  # 0.25 s at 8 kHz: the whole length
    with torch.no_grad():
        want = model.network.encode(x)[0]
    assert torch.allclose(z, want, atol=1e-5)
    moved = model.family.latent(model, RenderRequest(model.id, seed=0, params={"sound": text, "offset2": 1.5}))
    assert torch.allclose(moved[2], want[2] + 1.5, atol=1e-5)
    transfer = render(model, seed=0, sound=text)[0].data
    assert not np.allclose(transfer, render(model, seed=0)[0].data)
    same, steps = finish(model.family.encode(model, x[0, 0].numpy()))  # Encode Sound: a wave at the model's rate
    assert torch.allclose(same, want, atol=1e-5) and any(isinstance(s, Progress) for s in steps)


@pytest.mark.parametrize("text, problem", [("not base64!", "not a base64 sound"),
                                           (base64.b64encode(b"RIFFjunk").decode(), "not a readable sound"),
                                           (flac(np.zeros(800), 8000), "silent")])
def test_a_bad_sound_param_is_named(model, text, problem):
    with pytest.raises(RequestError, match=problem) as info:
        render(model, seed=0, sound=text)
    assert info.value.field == "params.sound"


def test_the_engine_runs_it_in_the_worker_process(tmp_path):
    folder = package(tmp_path)
    with Engine(device="cpu", roots=[folder.parent]) as engine:
        out = engine.submit(RenderRequest("tiny", seed=3)).wait()
        latent = engine.latent(RenderRequest("tiny", seed=3, params={"offset0": 1.0})).wait()
        assert engine.renderer.sandbox.pid is not None  # a worker process ran it
    here = load_model(resolve(str(folder)))
    assert np.array_equal(out.data, render(here, seed=3)[0].data)
    want = here.family.latent(here, RenderRequest("tiny", seed=3, params={"offset0": 1.0}))
    assert latent.info["shape"] == [4, 125] and np.allclose(latent.data, want.reshape(-1).numpy())


# --- hostile and malformed files -------------------------------------------------------------------------------------


class Reads(TinyCodec):
    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        stolen = torch.from_file("/etc/passwd", shared=False, size=16, dtype=torch.uint8)
        return torch.tanh(self.dec_out(torch.tanh(self.dec_in(z)))) + stolen.float().sum() * 0


def save(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_a_file_reading_method_is_refused_naming_the_operator(tmp_path):
    path = save(Reads(), tmp_path / "reads.ts")
    with pytest.raises(WeightsError, match=r"method [\w.]*Reads\.(forward|decode) calls aten::from_file") as info:
        import_nn_tilde(path, tmp_path / "out")  # through the worker, as a user's import runs
    assert "aten::from_file" in info.value.problem and "reads or writes files" in info.value.problem
    assert Path(info.value.path) == path.resolve() and not (tmp_path / "out").exists()


def bad(**changes):
    class Bad(TinyCodec):
        def __init__(self):
            super().__init__()
            for key, value in changes.items():
                if value is None:
                    delattr(self, key)
                else:
                    setattr(self, key, value)
    return Bad()


@pytest.mark.parametrize("changes, attribute, problem", [
    ({"decode_params": torch.tensor([4, 0, 1, 1])}, "decode_params", "at least 1"),
    ({"decode_params": torch.tensor([4.0, 64.0, 1.0, 1.0])}, "decode_params", "4 whole numbers"),
    ({"decode_params": torch.tensor([4, 64, 1, 2])}, "decode_params", "out_ratio 1"),
    ({"decode_params": None}, "decode_params", "no decode_params"),
    ({"encode_params": torch.tensor([1, 1, 4, 32])}, "encode_params", "does not fit"),
    ({"prior_params": torch.tensor([1, 64, 3, 64])}, "prior_params", "does not fit"),
    ({"prior_params": torch.tensor([1, 1, 4, 64])}, "prior_params", "does not fit"),
    ({"sr": None}, "sr", "sample rate"),
    ({"sr": 12}, "sr", "1000.."),
    ({"_methods": ["decode", "missing"]}, "_methods", "'missing'"),
])
def test_wrong_or_missing_attributes_are_named(tmp_path, changes, attribute, problem):
    path = save(bad(**changes), tmp_path / "bad.ts")
    with pytest.raises(WeightsError, match=problem) as info:
        FAMILY.inspect_file(path)  # type: ignore[attr-defined]
    assert info.value.field == attribute and Path(info.value.path) == path


def test_a_module_without_decode_is_refused(tmp_path):
    class NoDecode(nn.Module):
        def __init__(self):
            super().__init__()
            self.sr = 16000
            self._methods = ["encode"]
            self.register_buffer("encode_params", torch.tensor([1, 1, 4, 64]))
            self.conv = nn.Conv1d(1, 4, 64, stride=64)

        @torch.jit.export
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encode(x)

    path = save(NoDecode(), tmp_path / "nodecode.ts")
    with pytest.raises(WeightsError, match="no decode method") as info:
        import_nn_tilde(path, tmp_path / "out")
    assert info.value.field == "decode"


def test_a_file_that_no_longer_says_what_model_toml_says_is_refused(tmp_path):
    folder = package(tmp_path)
    tiny(folder / "model.ts", sr=22050)  # replaced behind the package's back
    with pytest.raises(WeightsError, match="sample rate is 22050 but model.toml says 16000") as info:
        load_model(resolve(str(folder)))
    assert info.value.field == "sr"


def test_a_decode_that_returns_the_wrong_length_is_named(tmp_path):
    class Short(TinyCodec):
        @torch.jit.export
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.dec_out(torch.tanh(self.dec_in(z))))[..., :-1]

    source = save(Short(), tmp_path / "short.ts")
    folder = tmp_path / "models" / "short"
    folder.mkdir(parents=True)
    manifest = FAMILY.package_manifest(FAMILY.inspect_file(source), 0.5, "short", "short", "MIT",  # type: ignore
                                       "model.ts", source)
    (folder / "model.ts").write_bytes(source.read_bytes())
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    with pytest.raises(WeightsError, match=r"decode returned shape \(1, 1, 7999\)"):
        render(load_model(resolve(str(folder))), seed=0)


def test_load_checked_is_what_reads_it(tmp_path):
    """The family loads files only through the checked loader (the allowlist applies to every method)."""
    path = save(Reads(), tmp_path / "reads.ts")
    with pytest.raises(WeightsError, match="aten::from_file"):
        load_checked(path)
    with pytest.raises(WeightsError, match="aten::from_file"):
        FAMILY.inspect_file(path)  # type: ignore[attr-defined]


def test_the_command_line_imports_and_renders_it(tmp_path, capsys):
    from studio.cli import main

    source = tiny(tmp_path / "voice.ts")
    folder = tmp_path / "models" / "voice"
    assert main(["import", str(source), "--nn-tilde", "--seconds", "0.25", "--out", str(folder)]) == 0
    assert "nn-tilde family" in capsys.readouterr().out
    out = tmp_path / "voice.wav"
    assert main(["render", "--model", str(folder), "--seed", "2", "--set", "glide1=1.5", "--out", str(out)]) == 0
    data, rate = sf.read(str(out), dtype="float32", always_2d=True)
    assert rate == 16000 and data.shape == (62 * 64, 1) and np.abs(data).max() > 0.01
    assert main(["import", str(source), "--nn-tilde", "--like", "x"]) != 0
    assert "--nn-tilde alone" in capsys.readouterr().err


@pytest.mark.gpu
def test_it_renders_on_cuda_like_on_the_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    folder = package(tmp_path)
    cpu = load_model(resolve(str(folder)))
    cuda = load_model(resolve(str(folder)), "cuda")
    sound = flac(0.5 * np.sin(2 * np.pi * 220 * np.arange(4000) / 8000), 8000)
    for params in ({"source": "noise", "glide0": 1.0}, {"sound": sound, "scale1": 0.5}):
        a, b = render(cpu, seed=4, **params)[0].data, render(cuda, seed=4, **params)[0].data
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-3
    z = cuda.family.latent(cuda, RenderRequest("tiny", seed=4))  # the prior, drawn on the device
    assert z.shape == (4, 125) and z.device.type == "cpu" and torch.isfinite(z).all()
