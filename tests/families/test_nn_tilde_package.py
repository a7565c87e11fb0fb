"""A module made with the real `nn_tilde` package (its Module, register_method, register_attribute and export_to_ts,
as RAVE's export script uses them) imports and renders. nn_tilde pins an old torch, so it is not a dependency of the
app: this test skips unless it is installed; run it in a throwaway environment that has it beside this torch
(`pip install --no-deps nn-tilde cached-conv`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import finish
from studio.importers.nn_tilde import import_nn_tilde
from studio.library import load_model, resolve
from studio.request import RenderRequest

nn_tilde = pytest.importorskip("nn_tilde")


class Scripted(nn_tilde.Module):
    """RAVE's ScriptedRAVE in small: encode / decode / forward, a prior, a sample rate and an attribute."""

    def __init__(self, latent: int = 8, ratio: int = 128, sr: int = 44100):
        super().__init__(sr=sr)
        self.latent_size = latent
        self.encoder = torch.nn.Conv1d(1, latent, ratio, stride=ratio)
        self.decoder = torch.nn.ConvTranspose1d(latent, 1, ratio, stride=ratio)
        self.prior_net = torch.nn.Conv1d(latent, latent, 1)
        self.register_attribute("gain", 1.0)  # (before the methods: registering one calls it)
        self.register_method("encode", in_channels=1, in_ratio=1, out_channels=latent, out_ratio=ratio)
        self.register_method("decode", in_channels=latent, in_ratio=ratio, out_channels=1, out_ratio=1)
        self.register_method("forward", in_channels=1, in_ratio=1, out_channels=1, out_ratio=1)
        self.register_method("prior", in_channels=1, in_ratio=ratio, out_channels=latent, out_ratio=ratio)

    @torch.jit.export
    def get_gain(self) -> float:
        return self.gain[0]

    @torch.jit.export
    def set_gain(self, value: float) -> int:
        self.gain = (value,)
        return 0

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z)) * self.gain[0]

    @torch.jit.export
    def prior(self, temperature: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(temperature.shape[0], self.latent_size, temperature.shape[-1], device=temperature.device)
        return self.prior_net(noise * temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def test_a_module_exported_by_nn_tilde_imports_and_renders(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "real.ts"
    Scripted().export_to_ts(str(path))
    folder = import_nn_tilde(path, tmp_path / "models" / "real", seconds=0.5)
    model = load_model(resolve(str(folder)))
    arch = model.manifest.architecture
    assert model.manifest.output["sample_rate"] == 44100 and model.manifest.latent.shape[0] == 8
    assert arch["ratio"] == 128 and arch["encode"] and arch["prior"]
    assert arch["methods"] == ["encode", "decode", "forward", "prior"]
    out = finish(model.family.render(model, RenderRequest(model.id, seed=1, params={"offset2": 0.5})))[0]
    assert out.data.shape == (model.manifest.output["length"], 1) and np.abs(out.data).max() > 0.01
