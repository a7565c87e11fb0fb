"""`latent-studio import network-snapshot.pkl`: an NVIDIA network pickle recognised by its content and converted into
the user models folder (or --out); `render` then gives NVIDIA's picture for NVIDIA's seed; a hostile pickle is refused
naming its global, and nothing is written."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from sg_pickles import FIX, SystemCall, fixture_snapshot
from studio.cli import main
from studio.manifest import read_manifest
from studio.paths import user_models_dir


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


def test_import_a_network_pickle_then_render_nvidias_picture(capsys, tmp_path):
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "network-snapshot-000120.pkl")
    assert main(["import", str(pkl)]) == 0, capsys.readouterr().err
    folder = user_models_dir() / "network-snapshot-000120"
    said = capsys.readouterr().out
    assert str(folder) in said and "stylegan family" in said
    assert read_manifest(folder).family == "stylegan"
    out = tmp_path / "seed1.png"
    code = main(["render", "--model", "network-snapshot-000120", "--seed", "1", "--set", "truncation=0.7",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    ours = np.asarray(Image.open(out).convert("RGB"))
    ref = torch.from_numpy(np.load(FIX / "sg2_uncond.reference.npz")["img_seed1_psi0.7"])
    theirs = (ref * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # again: the package is there; --force replaces it, --out writes elsewhere
    assert main(["import", str(pkl)]) == 1 and "--force" in capsys.readouterr().err
    assert main(["import", str(pkl), "--force"]) == 0
    assert main(["import", str(pkl), "--out", str(tmp_path / "elsewhere")]) == 0
    assert read_manifest(tmp_path / "elsewhere").id == "network-snapshot-000120"
    assert main(["import", str(pkl), "--id", "faces", "--out", str(tmp_path / "named")]) == 1
    assert "--id apply to --like imports" in capsys.readouterr().err and not (tmp_path / "named").exists()


def test_encode_projects_a_picture_and_render_takes_the_latent(capsys, tmp_path):
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "net.pkl")
    assert main(["import", str(pkl), "--out", str(tmp_path / "net")]) == 0
    seed = tmp_path / "seed3.png"
    assert main(["render", "--model", str(tmp_path / "net"), "--seed", "3", "--device", "cpu", "--out", str(seed)]) == 0
    big = tmp_path / "big.png"
    Image.open(seed).resize((80, 80)).save(big)  # any size: fitted to the model's 32²
    assert main(["encode", "--model", str(tmp_path / "net"), "--image", str(big), "--device", "cpu",
                 "--out", str(tmp_path / "big.json")]) == 0, capsys.readouterr().err
    latent = tmp_path / "w.json"
    capsys.readouterr()
    assert main(["encode", "--model", str(tmp_path / "net"), "--image", str(seed), "--device", "cpu",
                 "--out", str(latent)]) == 0, capsys.readouterr().err
    assert "projecting" in capsys.readouterr().err
    import json

    assert len(json.loads(latent.read_text())["latent"]) == 8 * 64
    again = tmp_path / "again.png"
    assert main(["render", "--model", str(tmp_path / "net"), "--latent", str(latent), "--device", "cpu",
                 "--out", str(again)]) == 0, capsys.readouterr().err
    mean = tmp_path / "mean.png"
    assert main(["render", "--model", str(tmp_path / "net"), "--seed", "3", "--set", "truncation=0", "--device",
                 "cpu", "--out", str(mean)]) == 0
    a, b, m = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (seed, again, mean))
    assert np.abs(a - b).mean() < 0.5 * np.abs(a - m).mean()  # the projection draws the picture back
    assert main(["encode", "--model", str(tmp_path / "net"), "--font", str(big), "--device", "cpu"]) == 1
    assert "give --image FILE" in capsys.readouterr().err


def test_a_hostile_network_pickle_is_refused_naming_the_global(capsys, tmp_path):
    marker = tmp_path / "PWNED"
    pkl = fixture_snapshot("sg3t", tmp_path / "evil.pkl", extra={"x": SystemCall(f"touch {marker}")})
    out = tmp_path / "models" / "evil"
    assert main(["import", str(pkl), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{os.system.__module__}.system" in err and "evil.pkl" in err and "not allowed" in err
    assert not marker.exists() and not (tmp_path / "models").exists()


def test_a_plain_pickle_checkpoint_still_needs_like(capsys, tmp_path):
    ckpt = tmp_path / "plain.pkl"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    assert main(["import", str(ckpt)]) == 1
    assert "--like" in capsys.readouterr().err
