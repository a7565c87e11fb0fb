"""nn~ models (RAVE v1/v2 and anything made with the `nn_tilde` package's `Module` / `register_method`) as sound models.

What such a file is: a TorchScript module (`torch.jit.save`) whose methods `encode` (sound → latent), `decode`
(latent → sound), `forward` and, for RAVE with a prior, `prior` (temperature → latent) each carry a buffer
`<method>_params` = [in_channels, in_ratio, out_channels, out_ratio] (a ratio is how many sound samples one step of
that signal stands for), the list `_methods` of the registered methods, and the sample rate as `sr` (nn_tilde) or a
`sampling_rate` buffer (RAVE v1). It is code: it is loaded only through the checked TorchScript loader (archive screen
and operator allowlist, `studio.families.generators.torchscript`) and, as every family with `runs_code`, runs in the
engine's worker process (`studio.engine.sandbox`); its attributes are read there too (`inspect_file`), when the file
is imported (`studio.importers.nn_tilde` writes a model.toml beside a copy) and again on every load, where the file
must still say what its model.toml says.

The latent is a trajectory: latent channels × frames for the package's duration (output.length samples, one frame
per `architecture.ratio` samples). A seed draws it from the model's prior (when it has one, at a temperature) or
from Gaussian noise smoothed over time; a sound (the `sound` param, or Encode Sound / a dropped file) is encoded
into it instead (timbre transfer: the sound's trajectory played by the model). Each latent channel then has an
offset, a scale and a glide (an offset that grows from 0 at the start to its value at the end), and one channel
at a time can follow a curve drawn with 16 points over the sound. The sound is decoded
in chunks with overlapping margins (each chunk a progress step; the margins hide the seams), and the output is
(samples, channels) float32 in [-1, 1].
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from pathlib import Path
from typing import Any, Generator

import numpy as np
import torch

from studio.errors import ManifestError, RequestError, WeightsError
from studio.families.base import Family, LoadedModel, arch_value
from studio.families.generators.torchscript import load_checked
from studio.limits import MAX_SAMPLE_RATE
from studio.params import Capability, Kind, ParamSpec
from studio.steps import Output, Progress, RenderSteps

METHODS = ("encode", "decode", "forward", "prior")  # the methods this family reads (others a file has are listed)
MAX_CHANNELS = 8  # sound channels a decode may make
MAX_RATIO = 1 << 16  # samples per latent frame
MAX_SOUND_SECONDS = 600.0  # a sound param longer than the package's duration is cut to it anyway
CHUNK_SECONDS = 8.0  # decoded at once (one progress step)
MARGIN_SECONDS = 0.5  # latent context decoded on each side of a chunk and dropped (the model's receptive field)
TRAJECTORY, SOUND_GROUP, CURVE = "Trajectory", "Audio to audio", "Draw over time"
CURVE_POINTS = 16  # points of the drawn curve, evenly spread over the sound
OFFSETS, SCALES, GLIDES = "Offsets", "Scales", "Glides"


# --- reading a file (in the worker process) ----------------------------------------------------------------------------


def _attr(module: torch.jit.ScriptModule, name: str) -> Any:
    c = module._c
    return c.getattr(name) if c.hasattr(name) else None


def _whole(value: Any) -> int | None:
    """An int attribute or a one-number integer tensor as an int (None when it is neither)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        return int(value.item())
    return None


def method_params(module: torch.jit.ScriptModule, name: str, path: Path) -> tuple[int, int, int, int]:
    """`<name>_params` = (in_channels, in_ratio, out_channels, out_ratio), each a positive whole number; WeightsError
    naming the attribute otherwise."""
    attr = f"{name}_params"
    value = _attr(module, attr)
    if value is None:
        raise WeightsError(f"the nn~ module has a {name} method but no {attr} attribute (in_channels, in_ratio, "
                           "out_channels, out_ratio; nn_tilde's register_method writes it)", path, attr)
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool or tuple(value.shape) != (4,):
            raise WeightsError(f"{attr} must hold 4 whole numbers (in_channels, in_ratio, out_channels, out_ratio), "
                               f"got a {str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}",
                               path, attr)
        numbers = [int(v) for v in value.tolist()]
    elif isinstance(value, (list, tuple)) and len(value) == 4 and all(_whole(v) is not None for v in value):
        numbers = [int(v) for v in value]
    else:
        raise WeightsError(f"{attr} must hold 4 whole numbers (in_channels, in_ratio, out_channels, out_ratio)", path,
                           attr)
    if min(numbers) < 1:
        raise WeightsError(f"{attr} = {numbers}: channel counts and ratios must be at least 1", path, attr)
    if numbers[1] > MAX_RATIO or numbers[3] > MAX_RATIO:
        raise WeightsError(f"{attr} = {numbers}: a ratio over {MAX_RATIO:,} samples per step is not a sound model",
                           path, attr)
    return numbers[0], numbers[1], numbers[2], numbers[3]


def read_info(module: torch.jit.ScriptModule, path: Path) -> dict[str, Any]:
    """What an nn~ module says about itself, checked: its methods, their params, sample rate, latent size, and the
    numbers this family uses (ratio, latent channels, sound channels). WeightsError naming the file and the attribute
    when one is missing or does not fit."""
    listed = _attr(module, "_methods")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(m, str) for m in listed)):
        raise WeightsError("_methods (the methods nn_tilde registered) must be a list of names", path, "_methods")
    has = module._c._has_method
    names = [m for m in (listed or METHODS) if has(m) and (listed is not None or _attr(module, f"{m}_params") is not None)]
    for name in listed or ():
        if not has(name):
            raise WeightsError(f"_methods lists {name!r} but the module has no such method", path, "_methods")
    if "decode" not in names:
        raise WeightsError("the nn~ module has no decode method (registered with its decode_params): nothing turns a "
                           "latent into sound", path, "decode")
    params = {name: method_params(module, name, path) for name in names if name in METHODS}
    latent, ratio, channels, out_ratio = params["decode"]
    if out_ratio != 1:
        raise WeightsError(f"decode_params = {list(params['decode'])}: decode must make sound (out_ratio 1), not a "
                           f"signal at 1/{out_ratio} of the rate", path, "decode_params")
    if channels > MAX_CHANNELS:
        raise WeightsError(f"decode_params = {list(params['decode'])}: {channels} sound channels is over the limit of "
                           f"{MAX_CHANNELS}", path, "decode_params")
    if "encode" in params:
        in_ch, in_ratio, out_ch, enc_ratio = params["encode"]
        if in_ratio != 1 or out_ch != latent or enc_ratio != ratio or in_ch not in (1, channels):
            raise WeightsError(f"encode_params = {list(params['encode'])} does not fit decode_params = "
                               f"{list(params['decode'])} (encode takes sound, ratio 1, and makes the {latent} latent "
                               f"channels decode takes, at its ratio {ratio})", path, "encode_params")
    if "prior" in params:
        in_ch, in_ratio, out_ch, prior_ratio = params["prior"]
        if in_ch != 1 or in_ratio != ratio or out_ch != latent or prior_ratio != ratio:
            raise WeightsError(f"prior_params = {list(params['prior'])} does not fit decode_params = "
                               f"{list(params['decode'])} (the prior takes one temperature channel and makes the "
                               f"{latent} latent channels decode takes, both at its ratio {ratio})", path, "prior_params")
    rate = None
    for attr in ("sr", "sampling_rate", "sample_rate"):
        value = _attr(module, attr)
        if value is not None:
            rate = _whole(value)
            if rate is None or not 1000 <= rate <= MAX_SAMPLE_RATE:
                raise WeightsError(f"{attr} must be a sample rate in 1000..{MAX_SAMPLE_RATE} Hz, got "
                                   f"{str(value)[:40]}", path, attr)
            break
    if rate is None:
        raise WeightsError("the nn~ module does not say its sample rate (an sr or sampling_rate attribute)", path,
                           "sr")
    size = _whole(_attr(module, "latent_size"))
    return {"methods": list(listed) if listed is not None else names, "params": {k: list(v) for k, v in params.items()},
            "sample_rate": rate, "latent_size": size, "ratio": ratio, "latent_channels": latent, "channels": channels,
            "encode": "encode" in params, "prior": "prior" in params}


# --- the family --------------------------------------------------------------------------------------------------------


class NnTildeFamily(Family):
    name = "nn-tilde"
    kind_name = "nn~ TorchScript"
    output_kinds = ("audio",)
    capabilities = Capability.SAMPLE | Capability.ENCODE | Capability.DECODE
    runs_code = True
    latent_runs_code = True  # the seed's trajectory may come from the model's prior or an encoded sound

    def inspect_file(self, path: Path) -> dict[str, Any]:
        """The checked attributes of the nn~ file at `path` (`read_info`); runs in the worker process."""
        return read_info(load_checked(Path(path)), Path(path))

    def package_manifest(self, info: Any, seconds: float, model_id: str, name: str, license: str, weights: str,
                         source: Path) -> dict[str, Any]:
        """The model.toml (as a dict) of an nn~ package whose file said `info` (`inspect_file`, read in the worker:
        every value is checked again here) and whose sounds last about `seconds` (a whole number of latent frames)."""
        def whole(key: str, low: int, high: int) -> int:
            value = info.get(key) if isinstance(info, dict) else None
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise WeightsError(f"the module's {key} is not a whole number in {low}..{high}: {str(value)[:40]}",
                                   source, key)
            return value

        rate = whole("sample_rate", 1000, MAX_SAMPLE_RATE)
        ratio = whole("ratio", 1, MAX_RATIO)
        latent = whole("latent_channels", 1, 1 << 16)
        channels = whole("channels", 1, MAX_CHANNELS)
        flags = {key: info.get(key) for key in ("encode", "prior")}
        methods = info.get("methods")
        if any(not isinstance(v, bool) for v in flags.values()) or not isinstance(methods, list) \
                or not all(isinstance(m, str) and len(m) <= 64 for m in methods) or len(methods) > 64:
            raise WeightsError("the module's methods could not be read", source, "_methods")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SOUND_SECONDS:
            raise RequestError(f"the duration must be in 0..{MAX_SOUND_SECONDS:g} s, got {seconds!r}",
                               field="seconds")
        frames = max(1, round(seconds * rate / ratio))
        what = ("a RAVE-style model with a prior" if flags["prior"] else "an nn~ model") + \
            (", encodes sounds" if flags["encode"] else "")
        return {
            "format": 1, "id": model_id, "name": name, "family": self.name, "version": "1.0.0", "license": license,
            "description": f"{source.name}: {what} ({latent} latent channels, {ratio} samples per frame, "
                           f"{rate} Hz, {channels} channel{'s' if channels > 1 else ''}; methods "
                           f"{', '.join(methods)}).",
            "weights": weights,
            "output": {"kind": "audio", "sample_rate": rate, "channels": channels, "length": frames * ratio},
            "latent": {"shape": [latent, frames], "prior": "normal"},
            "conditions": {"kind": "none"},
            "architecture": {"ratio": ratio, "latent_channels": latent, "encode": flags["encode"],
                             "prior": flags["prior"], "methods": methods, "chunk_seconds": CHUNK_SECONDS,
                             "margin_seconds": MARGIN_SECONDS},
        }

    def validate(self, manifest) -> None:
        super().validate(manifest)
        if not manifest.weights_file.lower().endswith((".ts", ".pt", ".pth", ".torchscript")):
            raise ManifestError(f"an nn~ package names its TorchScript file (.ts), got {manifest.weights_file!r}",
                                manifest.path, "weights")
        ratio = arch_value(manifest, "ratio", int, minimum=1, maximum=MAX_RATIO)
        latent = arch_value(manifest, "latent_channels", int, minimum=1)
        shape = manifest.latent.shape
        if len(shape) != 2 or shape[0] != latent:
            raise ManifestError(f"an nn~ latent is [latent_channels, frames] = [{latent}, …], got {list(shape)}",
                                manifest.path, "latent.shape")
        if manifest.output["length"] != shape[1] * ratio:
            raise ManifestError(f"the length must be frames × ratio = {shape[1]} × {ratio} = {shape[1] * ratio} "
                                f"samples, got {manifest.output['length']}", manifest.path, "output.length")
        if manifest.output["channels"] > MAX_CHANNELS:
            raise ManifestError(f"at most {MAX_CHANNELS} channels", manifest.path, "output.channels")
        for key in ("encode", "prior"):
            arch_value(manifest, key, bool, False)
        for key in ("chunk_seconds", "margin_seconds"):
            value = manifest.architecture.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise ManifestError(f"must be a number of seconds in 0..3600, got {str(value)[:40]}", manifest.path,
                                    f"architecture.{key}")

    def build(self, manifest) -> torch.nn.Module:
        raise ManifestError("an nn~ package is loaded from its TorchScript file, not built", manifest.path, "family")

    def load_network(self, manifest) -> torch.nn.Module:
        """The checked module, if it still says what model.toml says (WeightsError naming the attribute if not)."""
        self.validate(manifest)
        module = load_checked(manifest.weights_path)
        info = read_info(module, manifest.weights_path)
        arch, out = manifest.architecture, manifest.output
        for key, want, attr in (("sample_rate", out["sample_rate"], "sr"), ("ratio", arch["ratio"], "decode_params"),
                                ("latent_channels", arch["latent_channels"], "decode_params"),
                                ("channels", out["channels"], "decode_params"),
                                ("encode", arch.get("encode", False), "encode"),
                                ("prior", arch.get("prior", False), "prior")):
            if info[key] != want:
                raise WeightsError(f"the module's {key.replace('_', ' ')} is {info[key]} but model.toml says {want} "
                                   "(import the file again)", manifest.weights_path, attr)
        return module

    # --- parameters ---------------------------------------------------------------------------------------------------
    def parameters(self, manifest) -> tuple[ParamSpec, ...]:
        channels = manifest.latent.shape[0]
        prior = bool(manifest.architecture.get("prior", False))
        specs: list[ParamSpec] = []
        if prior:
            specs.append(ParamSpec("source", Kind.CHOICE, "Draw from", default="prior", seeded_only=True,
                                   choices=(("prior", "Prior"), ("noise", "Noise")), group=TRAJECTORY,
                                   help="Where the seed's latent trajectory comes from: the model's own prior, or "
                                        "Gaussian noise smoothed over time"))
        specs += [
            ParamSpec("temperature", Kind.FLOAT, "Temperature", default=1.0, range=(0.0, 10.0), span=(0.0, 2.0),
                      seeded_only=True, group=TRAJECTORY,
                      help="How far the seed's trajectory strays (the prior's temperature, or the noise's scale)"),
            ParamSpec("smooth", Kind.FLOAT, "Smooth (s)", default=0.25, range=(0.0, 60.0), span=(0.0, 2.0),
                      seeded_only=True, group=TRAJECTORY, when=("source", ("noise",)) if prior else None,
                      help="Noise trajectory: how slowly it moves (the width of its smoothing, in seconds)"),
        ]
        if manifest.architecture.get("encode", False):
            specs.append(ParamSpec("sound", Kind.SOUND, "Sound", group=SOUND_GROUP, seeded_only=True,
                                   help="Audio to audio: encode this sound (cut or padded to the model's duration), "
                                        "edit its trajectory with the sliders, decode it (timbre transfer)"))
        specs += [
            ParamSpec("offset", Kind.FLOAT, "Offset", default=0.0, span=(-3.0, 3.0), count=channels, group=OFFSETS,
                      help="Add to this latent channel all along the sound"),
            ParamSpec("scale", Kind.FLOAT, "Scale", default=1.0, span=(0.0, 3.0), count=channels, group=SCALES,
                      help="Multiply this latent channel (before its offset)"),
            ParamSpec("glide", Kind.FLOAT, "Glide", default=0.0, span=(-3.0, 3.0), count=channels, group=GLIDES,
                      help="Move this latent channel over time: an offset from 0 at the start to this at the end"),
            ParamSpec("curve_channel", Kind.CHOICE, "Draw on", default="none", group=CURVE,
                      choices=(("none", "No channel"), *((str(k), f"Channel {k + 1}") for k in range(channels))),
                      help="The latent channel the curve below moves over time"),
            ParamSpec("curve", Kind.FLOAT, "Point", default=0.0, span=(-3.0, 3.0), count=CURVE_POINTS, group=CURVE,
                      when=("curve_channel", tuple(str(k) for k in range(channels))),
                      help=f"A curve over the sound, {CURVE_POINTS} points from start to end (straight lines "
                           "between them), added to the chosen channel"),
        ]
        return tuple(specs)

    # --- the trajectory -----------------------------------------------------------------------------------------------
    def latent(self, model: LoadedModel, request) -> torch.Tensor:
        steps = self._trajectory(model, request)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    def _trajectory(self, model: LoadedModel, request) -> Generator[Progress, None, torch.Tensor]:
        """The request's (latent channels, frames) trajectory on the CPU in float32: its explicit values, the
        encoded sound, or the seed's draw; then the per-channel edits."""
        spec = model.manifest.latent
        checked = model.checked(request)
        params = model.table.values(checked)
        channels, frames = spec.shape
        if checked.latent is not None:
            if len(checked.latent) != spec.size:
                raise RequestError(f"the latent has {len(checked.latent)} values but {model.id} needs {spec.size} "
                                   f"({channels} channels × {frames} frames)", field="latent")
            z = torch.tensor(checked.latent, dtype=torch.float32).reshape(spec.shape)
        elif params.get("sound"):
            wave = sound_from_param(str(params["sound"]), model.manifest.output["sample_rate"])
            z = yield from self._encode_steps(model, wave)
        elif params.get("source", "noise") == "prior" and model.manifest.architecture.get("prior", False):
            z = self._prior(model, checked.seed, float(params["temperature"]))
        else:
            z = noise_trajectory(checked.seed, channels, frames, float(params["temperature"]),
                                 float(params["smooth"]) * model.manifest.output["sample_rate"]
                                 / model.manifest.architecture["ratio"])
        return edit(z, checked.params)

    def _prior(self, model: LoadedModel, seed: int, temperature: float) -> torch.Tensor:
        channels, frames = model.manifest.latent.shape
        # one temperature step per latent frame (read_info checked the prior's in_ratio is the decoder's ratio)
        temp = torch.full((1, 1, frames), temperature, device=model.device, dtype=model.dtype)
        with _seeded(model, seed):
            z = _call(model, "prior", temp)
        return _fitted(z, channels, frames, model, "prior")[0].float().cpu()

    def encode(self, model: LoadedModel, sounds: np.ndarray, labels: list[str] | None = None) -> Any:
        """The trajectory of a sound ((samples,) or (samples, channels) float at the model's rate), cut or padded to
        the model's duration: a generator of Progress (one per chunk) returning (latent channels, frames)."""
        if not model.manifest.architecture.get("encode", False):
            raise RequestError(f"{model.id} has no encode method: it cannot take a sound", field="sound")
        wave = np.asarray(sounds, dtype=np.float32)
        if wave.ndim == 2 and wave.shape[0] == 1 and wave.shape[1] > 8:
            wave = wave[0]
        if wave.ndim == 2:
            wave = wave.mean(axis=1)
        if wave.ndim != 1 or wave.size == 0 or not np.isfinite(wave).all():
            raise RequestError("the sound must be a non-empty, finite (samples,) wave", field="sound")
        return self._encode_steps(model, wave)

    def _encode_steps(self, model: LoadedModel, wave: np.ndarray) -> Generator[Progress, None, torch.Tensor]:
        channels, frames = model.manifest.latent.shape
        ratio = model.manifest.architecture["ratio"]
        length = model.manifest.output["length"]
        in_channels = method_params(model.network, "encode", model.manifest.weights_path)[0]  # type: ignore[arg-type]
        x = torch.zeros(length, dtype=torch.float32)
        x[:min(length, wave.size)] = torch.from_numpy(np.ascontiguousarray(wave[:length]))
        x = x.reshape(1, 1, length).expand(1, int(in_channels), length).to(model.device, model.dtype)
        chunk, margin = _chunking(model)
        z = torch.zeros(channels, frames)
        starts = range(0, frames, chunk)
        for i, start in enumerate(starts):
            end = min(frames, start + chunk)
            a, b = max(0, start - margin), min(frames, end + margin)
            part = _call(model, "encode", x[..., a * ratio:b * ratio])
            z[:, start:end] = _fitted(part, channels, b - a, model, "encode")[0, :, start - a:end - a].float().cpu()
            yield Progress(i + 1, len(starts), "encoding the sound")
        return z

    # --- rendering ----------------------------------------------------------------------------------------------------
    def render(self, model: LoadedModel, request) -> RenderSteps:
        yield Progress(0, 1, "latent")
        z = yield from self._trajectory(model, request)
        out = model.manifest.output
        ratio = model.manifest.architecture["ratio"]
        channels, frames = z.shape
        chunk, margin = _chunking(model)
        sound = np.zeros((out["length"], out["channels"]), dtype=np.float32)
        starts = range(0, frames, chunk)
        zd = z.to(model.device, model.dtype)[None]
        with _seeded(model, request.seed):  # a decoder that draws noise (RAVE v2's unused latent dims) repeats itself
            for i, start in enumerate(starts):
                end = min(frames, start + chunk)
                a, b = max(0, start - margin), min(frames, end + margin)
                y = _call(model, "decode", zd[..., a:b])
                if tuple(y.shape) != (1, out["channels"], (b - a) * ratio):
                    raise WeightsError(f"decode returned shape {tuple(y.shape)} for {b - a} latent frames, not "
                                       f"{(1, out['channels'], (b - a) * ratio)} (decode_params says ratio {ratio}, "
                                       f"{out['channels']} channels)", model.manifest.weights_path, "decode_params")
                piece = y[0, :, (start - a) * ratio:(end - a) * ratio].float().cpu()
                sound[start * ratio:end * ratio] = torch.nan_to_num(piece, 0.0, 0.0, 0.0).clamp(-1, 1).T.numpy()
                yield Progress(i + 1, len(starts), "decoding")
        return Output("audio", sound, {"sample_rate": out["sample_rate"]})


# --- helpers -----------------------------------------------------------------------------------------------------------


def _chunking(model: LoadedModel) -> tuple[int, int]:
    """(frames per chunk, frames of margin on each side) from architecture.chunk_seconds / margin_seconds."""
    rate = model.manifest.output["sample_rate"] / model.manifest.architecture["ratio"]  # frames per second
    arch = model.manifest.architecture
    chunk = max(1, math.ceil(float(arch.get("chunk_seconds", CHUNK_SECONDS)) * rate))
    margin = max(0, math.ceil(float(arch.get("margin_seconds", MARGIN_SECONDS)) * rate))
    return chunk, margin


def _call(model: LoadedModel, method: str, x: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            y = getattr(model.network, method)(x)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RequestError(f"the nn~ module's {method} failed on a tensor of shape {tuple(x.shape)}: {first}",
                           field="latent") from None
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise WeightsError(f"{method} returned {type(y).__name__}, not a float tensor", model.manifest.weights_path,
                           method)
    return y


def _fitted(z: torch.Tensor, channels: int, frames: int, model: LoadedModel, method: str) -> torch.Tensor:
    """`z` (1, channels, ≈frames) cut to `frames` (a module may return a frame more or fewer at the ends: padded by
    repeating the last); WeightsError naming the method when it is not that."""
    if z.dim() != 3 or z.shape[0] != 1 or z.shape[1] != channels or abs(z.shape[2] - frames) > 1:
        raise WeightsError(f"{method} returned shape {tuple(z.shape)}, not (1, {channels}, {frames})",
                           model.manifest.weights_path, f"{method}_params")
    if z.shape[2] < frames:
        z = torch.cat([z, z[..., -1:]], 2)
    return torch.nan_to_num(z[..., :frames], 0.0, 0.0, 0.0)


class _seeded:
    """The global torch generators (CPU and the model's accelerator) seeded for a block, and restored after it: a
    module's own torch.randn (RAVE's prior and the noise its decoder adds) repeats for a seed."""

    def __init__(self, model: LoadedModel, seed: int):
        kind = model.device.type
        devices = [model.device.index or 0] if kind == "cuda" else []
        self._fork = torch.random.fork_rng(devices=devices, device_type=kind if kind in ("cuda", "mps") else "cuda")
        self.seed = int(seed) % (1 << 63)

    def __enter__(self) -> None:
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)


def noise_trajectory(seed: int, channels: int, frames: int, temperature: float, sigma_frames: float) -> torch.Tensor:
    """Gaussian noise (channels, frames) from the seed, smoothed over time by a Gaussian of `sigma_frames` and
    brought back to unit variance per channel, times `temperature`."""
    rng = np.random.default_rng(int(seed))
    z = rng.standard_normal((channels, frames))
    if sigma_frames >= 0.5 and frames > 1:
        half = min(frames, int(math.ceil(3 * sigma_frames)))
        t = np.arange(-half, half + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (t / sigma_frames) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(z, ((0, 0), (half, half)), mode="wrap")
        z = np.stack([np.convolve(row, kernel, mode="valid") for row in padded])[:, :frames]
        z = z / np.maximum(z.std(axis=1, keepdims=True), 1e-6)
    return torch.from_numpy((z * temperature).astype(np.float32))


def edit(z: torch.Tensor, params: Any) -> torch.Tensor:
    """The per-channel edits: channel k × scale_k + offset_k + glide_k · (0 … 1 over the frames), and the drawn
    curve (points curve0 … evenly over the frames, straight lines between them) added to channel `curve_channel`."""
    channels, frames = z.shape
    ramp = torch.linspace(0.0, 1.0, frames) if frames > 1 else torch.ones(1)
    out = z.clone()
    for k in range(channels):
        scale = float(params.get(f"scale{k}", 1.0))
        offset = float(params.get(f"offset{k}", 0.0))
        glide = float(params.get(f"glide{k}", 0.0))
        if scale != 1.0 or offset != 0.0 or glide != 0.0:
            out[k] = out[k] * scale + offset + glide * ramp
    target = params.get("curve_channel", "none")
    if target not in (None, "none"):
        points = np.array([float(params.get(f"curve{i}", 0.0)) for i in range(CURVE_POINTS)])
        curve = np.interp(np.linspace(0.0, 1.0, frames), np.linspace(0.0, 1.0, CURVE_POINTS), points)
        out[int(target)] += torch.from_numpy(curve.astype(np.float32))
    return out


def sound_from_param(text: str, sample_rate: int) -> np.ndarray:
    """A SOUND param (a base64 FLAC or any file libsndfile reads, at its own rate) as a mono float32 wave at
    `sample_rate`; RequestError naming params.sound when it is not a readable, non-silent sound."""
    import soundfile as sf

    from studio.export.audio import SILENCE, resample

    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise RequestError(f"is not a base64 sound: {exc}", field="params.sound") from None
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise RequestError(f"is not a readable sound: {exc}", field="params.sound") from None
    if wave.size == 0:
        raise RequestError("is an empty sound", field="params.sound")
    if len(wave) > MAX_SOUND_SECONDS * rate:
        wave = wave[:int(MAX_SOUND_SECONDS * rate)]
    mono = wave.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise RequestError("holds NaN or infinite samples", field="params.sound")
    if np.abs(mono).max() < SILENCE:
        raise RequestError("is silent", field="params.sound")
    return resample(mono, int(rate), int(sample_rate)) if rate != sample_rate else mono
