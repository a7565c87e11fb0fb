"""The audio VAE family: a class-conditional VAE over log-magnitude spectrograms, heard through Griffin-Lim.

A sound of `length` samples becomes an STFT (Hann window `n_fft`, hop `hop`, centred) whose magnitudes below the
Nyquist bin are put on a decibel scale and mapped to [0, 1] between `db_floor` and `db_ceiling` (0 dB = a full-scale
sine). The encoder reads that picture and the sound's class; the decoder draws the picture back from the latent (the
timbre) and the class (kick, snare, pad …). A waveform is recovered from the magnitudes by fast Griffin-Lim
(Perraudin et al. 2013), which starts from a fixed phase so that equal requests give equal sounds.

The latent holds what sounds of a class do not share (the timbre). After training a Gaussian is fitted to the encoded
sounds of each class (`class_prior`), so the artist's N(0, I) latent lands where that class's real sounds lie: the
same latent played as another class is the sound at the same place in that class's spread (0 is its typical sound,
slider k its k-th principal way to vary).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import ManifestError, RequestError
from studio.families.base import Family, LoadedModel, arch_value, check_parameter_count
from studio.limits import MAX_PIXELS
from studio.steps import Output, Progress, RenderSteps
from studio.params import Capability
from studio.nets.spectrogram import ONSET_LEAD, SpecFormat, SpecVAE, _strides, finish_waves

# --- the family -----------------------------------------------------------------------------------------------------


def spec_format(manifest) -> SpecFormat:
    out = manifest.output
    return SpecFormat(n_fft=arch_value(manifest, "n_fft", int, 1024, minimum=16),
                      hop=arch_value(manifest, "hop", int, 256, minimum=1), length=out["length"],
                      db_floor=float(arch_value(manifest, "db_floor", float, -80.0)),
                      db_ceiling=float(arch_value(manifest, "db_ceiling", float, 10.0)))


def class_index(model: LoadedModel, label: str | None) -> int:
    """The index of a class name (None: the manifest's default class), RequestError naming the known ones."""
    cond = model.manifest.conditions
    name = label or cond.default or cond.labels[0]
    if name not in cond.labels:
        raise RequestError(f"unknown sound class {name!r} for {model.id} (known: {', '.join(cond.labels)})",
                           field="params.label")
    return cond.labels.index(name)


class AudioVAEFamily(Family):
    name = "audio-vae"
    output_kinds = ("audio",)
    capabilities = Capability.SAMPLE | Capability.ENCODE | Capability.DECODE

    def _config(self, manifest) -> dict:
        fmt = spec_format(manifest)
        return {
            "bins": fmt.bins, "frames": fmt.frames, "latent_dim": manifest.latent.size,
            "num_classes": len(manifest.conditions.labels),
            "width": arch_value(manifest, "width", int, 16, minimum=1),
            "levels": arch_value(manifest, "levels", int, 6, minimum=1),
            "max_width": arch_value(manifest, "max_width", int, 128, minimum=1),
            "class_dim": arch_value(manifest, "class_dim", int, 16, minimum=1),
            "hidden": arch_value(manifest, "hidden", int, 256, minimum=4),
            "fitted_prior": arch_value(manifest, "fitted_prior", bool, False),
            "class_prior": arch_value(manifest, "class_prior", bool, False),
        }

    def validate(self, manifest) -> None:
        super().validate(manifest)
        if manifest.conditions.kind != "class":
            raise ManifestError("an audio VAE is conditioned on sound classes: kind = \"class\" with labels",
                                manifest.path, "conditions.kind")
        if manifest.output["channels"] != 1:
            raise ManifestError(f"audio VAE models are mono, got {manifest.output['channels']} channels",
                                manifest.path, "output.channels")
        try:
            fmt = spec_format(manifest)
        except ValueError as exc:
            raise ManifestError(str(exc), manifest.path, "architecture") from None
        if fmt.bins * fmt.frames > MAX_PIXELS:  # the spectrogram is a picture the networks read and draw
            raise ManifestError(f"a spectrogram of {fmt.bins:,} bins × {fmt.frames:,} frames is over the limit of "
                                f"{MAX_PIXELS:,} (raise architecture.hop or shorten output.length)", manifest.path,
                                "architecture.hop")
        try:
            _strides(fmt.bins, fmt.frames, self._config(manifest)["levels"])
        except ValueError as exc:
            raise ManifestError(str(exc), manifest.path, "architecture") from None
        arch_value(manifest, "griffin_lim_iterations", int, 48, minimum=1)

    def build(self, manifest) -> SpecVAE:
        self.validate(manifest)
        config = self._config(manifest)
        check_parameter_count(manifest, lambda: SpecVAE(**config))  # on the meta device, before any allocation
        return SpecVAE(**config)

    def render(self, model: LoadedModel, request) -> RenderSteps:
        z = self.latent(model, request)
        label = class_index(model, model.params(request)["label"])
        net = cast(SpecVAE, model.network)
        fmt = spec_format(model.manifest)
        iterations = arch_value(model.manifest, "griffin_lim_iterations", int, 48, minimum=1)
        total = iterations + 1
        yield Progress(0, total, "decoding")
        labels = torch.tensor([label], dtype=torch.long, device=model.device)
        zd = net.from_prior(z.to(model.device, model.dtype).reshape(1, -1), labels)
        picture = torch.sigmoid(net.decode(zd, labels).float())
        if picture.device.type == "mps":  # complex STFT support on MPS is incomplete: the phase search runs on the CPU
            picture = picture.cpu()
        steps = fmt.griffin_lim(fmt.magnitudes(picture), iterations)
        while True:  # every Griffin-Lim iteration is a cancel point
            try:
                i = next(steps)
            except StopIteration as stop:
                wave = stop.value
                break
            yield Progress(1 + i, total, "phase")
        wave = finish_waves(wave, model.manifest.output["sample_rate"])[0].detach().float().cpu().numpy()
        return Output("audio", np.ascontiguousarray(wave[:, None], dtype=np.float32),
                      {"sample_rate": model.manifest.output["sample_rate"], "class": model.manifest.conditions.labels[label],
                       "spectrogram": picture[0, 0].detach().cpu().numpy()})

    def encode(self, model: LoadedModel, sounds: np.ndarray, labels: list[str] | None = None) -> torch.Tensor:
        """The latent of one sound (samples,) or (1, samples) float at the model's sample rate, with its class
        (`labels`: one name; None = the default class). Leading silence is skipped; the rest is cut or padded with
        silence to the model's length."""
        net = cast(SpecVAE, model.network)
        fmt = spec_format(model.manifest)
        wave = torch.as_tensor(np.asarray(sounds, dtype=np.float32)).reshape(-1)
        if wave.numel() == 0:
            raise RequestError("the sound is empty", field="sound")
        # the model learned sounds that start at once: skip a recording's leading silence (below −40 dB of its peak)
        loud = torch.nonzero(wave.abs() >= 0.01 * wave.abs().max()).flatten()
        if loud.numel():
            wave = wave[max(0, int(loud[0]) - int(ONSET_LEAD * model.manifest.output["sample_rate"])):]
        wave = F.pad(wave, (0, max(0, fmt.length - wave.numel())))[:fmt.length]
        if labels is not None and len(labels) != 1:
            raise RequestError(f"give one class for the sound, got {len(labels)}", field="labels")
        label = class_index(model, labels[0] if labels else None)
        picture = fmt.to_picture(wave[None]).to(model.device, model.dtype)
        label_t = torch.tensor([label], device=model.device)
        mu, _ = net.encode(picture, label_t)
        return net.to_prior(mu, label_t)[0].float().cpu()
