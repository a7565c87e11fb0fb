"""`latent-studio import`: a checkpoint onto an installed package's architecture, written as a new package that
renders like the original network; a malicious pickle is refused and never executed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from conftest import finish
from studio.cli import main
from studio.library import load_model, resolve
from studio.request import RenderRequest


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


def test_import_a_checkpoint_onto_a_packages_architecture(capsys, models_dir, tmp_path):
    original = load_model(resolve(str(models_dir / "tiny")))
    state = {f"module.{k}": v.clone() + 0.01 for k, v in original.network.state_dict().items()}
    ckpt = tmp_path / "My Style.ckpt"
    torch.save({"state_dict": state, "epoch": 12}, ckpt)
    out = tmp_path / "imported"
    code = main(["import", str(ckpt), "--like", "tiny", "--models-dir", str(models_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    imported = load_model(resolve(str(out)))
    assert imported.id == "my-style" and imported.manifest.training["architecture_of"] == "tiny"
    with torch.no_grad():
        original.network.load_state_dict({k[len("module."):]: v for k, v in state.items()})
    a = finish(imported.family.render(imported, RenderRequest("my-style", seed=2, params={"prompt": "Ab"})))[0].data
    b = finish(original.family.render(original, RenderRequest("tiny", seed=2, params={"prompt": "Ab"})))[0].data
    assert np.array_equal(a, b)
    code = main(["import", str(ckpt), "--like", "tiny", "--models-dir", str(models_dir), "--out", str(out)])
    assert code == 1 and "--force" in capsys.readouterr().err


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_malicious_pickle_is_refused_and_not_executed(capsys, models_dir, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(pickle.dumps({"weights": _Payload(marker)}, protocol=2))
    code = main(["import", str(ckpt), "--like", "tiny", "--models-dir", str(models_dir), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "evil.pt" in err and "not executed" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
