"""nn~-style TorchScript modules with random weights, built the way `nn_tilde.Module` and RAVE's export script lay
them out (no nn_tilde package needed): methods `encode`, `decode`, `forward` (and RAVE's `prior` where asked), each
with its `<method>_params` buffer [in_channels, in_ratio, out_channels, out_ratio], the `_methods` list that
`get_methods()` returns, the sample rate as `sr` (nn_tilde ≥ 1.6) or a `sampling_rate` buffer (RAVE v1), and the
latent size. `tiny(...)` is a few thousand parameters for the tests; `rave_v2_like()` is a RAVE-v2-sized decoder
(18.2 M parameters, compression 2048, 16 bands) for the benchmark. Everything is made from a seed, on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import torch
from torch import nn


class TinyCodec(nn.Module):
    """encode (B, 1, T) → (B, latent, T / ratio); decode (B, latent, F) → (B, channels, F · ratio); prior (B, 1, F)
    temperature → (B, latent, F); forward = decode(encode(x))."""

    def __init__(self, latent: int = 4, ratio: int = 64, sr: int = 16000, channels: int = 1, prior: bool = True,
                 width: int = 16, sr_as_buffer: bool = False):
        super().__init__()
        self.latent_size = latent
        self.ratio = ratio
        self.out_channels = channels
        if sr_as_buffer:  # RAVE v1 kept the rate in a buffer
            self.register_buffer("sampling_rate", torch.tensor(sr))
        else:
            self.sr = sr
        methods: List[str] = ["encode", "decode", "forward"]
        self.register_buffer("encode_params", torch.tensor([1, 1, latent, ratio]))
        self.register_buffer("decode_params", torch.tensor([latent, ratio, channels, 1]))
        self.register_buffer("forward_params", torch.tensor([1, 1, channels, 1]))
        if prior:
            methods.append("prior")
            self.register_buffer("prior_params", torch.tensor([1, ratio, latent, ratio]))
        self._methods = methods
        self.enc_in = nn.Conv1d(1, width, ratio, stride=ratio)
        self.enc_out = nn.Conv1d(width, latent, 3, padding=1)
        self.dec_in = nn.Conv1d(latent, width, 3, padding=1)
        self.dec_out = nn.ConvTranspose1d(width, channels, ratio, stride=ratio)
        self.prior_net = nn.Conv1d(latent, latent, 1)

    @torch.jit.export
    def get_methods(self) -> List[str]:
        return self._methods

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc_out(torch.tanh(self.enc_in(x)))

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dec_out(torch.tanh(self.dec_in(z))))

    @torch.jit.export
    def prior(self, temperature: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(temperature.shape[0], self.latent_size, temperature.shape[-1], device=temperature.device,
                            dtype=temperature.dtype)
        return self.prior_net(noise * temperature) * 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def package_of(source: Path, folder: Path, seconds: float = 0.5, arch: dict | None = None) -> Path:
    """A package for the nn~ file `source`, made as `studio.importers.nn_tilde` makes it (the same model.toml) but
    reading the file in this process (no worker to start: fast for tests); `arch` overrides architecture fields."""
    import tomli_w

    from studio.families import get_family

    family = get_family("nn-tilde")
    info = family.inspect_file(source)  # type: ignore[attr-defined]
    manifest = family.package_manifest(info, seconds, folder.name, folder.name, "MIT", "model.ts",  # type: ignore
                                       source)
    manifest["architecture"].update(arch or {})
    folder.mkdir(parents=True)
    (folder / "model.ts").write_bytes(Path(source).read_bytes())
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


def tiny(path: Path, seed: int = 0, **kwargs) -> Path:
    """A TinyCodec (kwargs as its constructor takes them) scripted and saved at `path`."""
    torch.manual_seed(seed)
    torch.jit.save(torch.jit.script(TinyCodec(**kwargs).eval()), str(path))
    return path


# --- a RAVE-v2-sized decoder for the benchmark ------------------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, dilation=dilation, padding=dilation)
        self.mix = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(nn.functional.leaky_relu(self.conv(nn.functional.leaky_relu(x, 0.2)), 0.2))


class Up(nn.Module):
    def __init__(self, width: int, out: int, ratio: int):
        super().__init__()
        self.up = nn.ConvTranspose1d(width, out, 2 * ratio, stride=ratio, padding=ratio // 2)
        self.res = nn.Sequential(Residual(out, 1), Residual(out, 3), Residual(out, 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.up(nn.functional.leaky_relu(x, 0.2)))


class RaveV2Like(nn.Module):
    """RAVE v2's layout at its size: a 16-band PQMF (here a fixed-size transposed convolution), a strided
    convolutional encoder and a decoder of upsampling blocks (4·4·4·2 = 128 × 16 bands = 2048 samples per latent frame)
    with dilated residual stacks, a waveform-and-amplitude head; latent 16, 44.1 kHz."""

    def __init__(self, latent: int = 16, widths: tuple = (896, 448, 224, 112), ratios: tuple = (4, 4, 4, 2),
                 bands: int = 16, sr: int = 44100):
        super().__init__()
        self.sr = sr
        self.latent_size = latent
        ratio = bands
        for r in ratios:
            ratio *= r
        self.register_buffer("encode_params", torch.tensor([1, 1, latent, ratio]))
        self.register_buffer("decode_params", torch.tensor([latent, ratio, 1, 1]))
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))
        self._methods = ["encode", "decode", "forward"]
        self.analysis = nn.Conv1d(1, bands, 8 * bands, stride=bands, padding=4 * bands - bands // 2)
        self.synthesis = nn.ConvTranspose1d(bands, 1, 8 * bands, stride=bands, padding=4 * bands - bands // 2)
        down: list = [nn.Conv1d(bands, widths[-1], 7, padding=3)]
        rev = list(reversed(widths))
        for i, r in enumerate(reversed(ratios)):
            nxt = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            down += [nn.LeakyReLU(0.2), nn.Conv1d(rev[i], nxt, 2 * r, stride=r, padding=r // 2)]
        down += [nn.LeakyReLU(0.2), nn.Conv1d(rev[-1], latent, 3, padding=1)]
        self.encoder = nn.Sequential(*down)
        ups: list = [nn.Conv1d(latent, widths[0], 7, padding=3)]
        for i, r in enumerate(ratios):
            ups.append(Up(widths[i], widths[i + 1] if i + 1 < len(widths) else widths[-1] // 2, r))
        self.decoder = nn.Sequential(*ups)
        self.head = nn.Conv1d(widths[-1] // 2, 2 * bands, 7, padding=3)

    @torch.jit.export
    def get_methods(self) -> List[str]:
        return self._methods

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.analysis(x))

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        wave, amplitude = self.head(self.decoder(z)).chunk(2, 1)
        return torch.tanh(self.synthesis(torch.tanh(wave) * torch.sigmoid(amplitude)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def rave_v2_like(path: Path, seed: int = 0, **kwargs) -> Path:
    torch.manual_seed(seed)
    torch.jit.save(torch.jit.script(RaveV2Like(**kwargs).eval()), str(path))
    return path
