"""Training a GAN, a diffusion model and a sound model on your own data (the loops in studio.train.loops fed by a
folder, through `train_folder` and `latent-studio train --family … --data FOLDER`): packages the app's families
render, what a monitor sees, pause and resume, the quick look at a folder, and clear errors for folders and settings
that cannot work. Tiny networks and a few steps: each test takes seconds."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import finish
from studio.cli import main
from studio.errors import RecipeError
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.train.folder import scan_folder, train_folder
from studio.train.monitor import TrainingStopped
from studio.train.registry import FOLDER_FAMILIES
from studio.train.sounds import synthesize
from studio.io.weights import read_tensors
from test_train_folder import Watcher, pictures

TINY_GAN = ["--size", "8", "--steps", "3", "--batch", "4"]
TINY_DIFFUSION = ["--size", "8", "--steps", "3", "--batch", "4"]
TINY_AUDIO = ["--seconds", "0.25", "--sample-rate", "8000", "--steps", "3", "--batch", "4"]
GAN_SETTINGS = dict(size=8, steps=4, batch=4, width=8, max_width=16, latent_dim=8)
DIFFUSION_SETTINGS = dict(size=8, steps=4, batch=4, base=8)
AUDIO_SETTINGS = dict(seconds=0.25, sample_rate=8000, steps=4, batch=4)


def sounds(folder, kinds=("kick", "snare", "pad"), per_kind: int = 3, classes: bool = True):
    """Short synthesised one-shots as WAV and FLAC at three sample rates, in one sub-folder per kind (classes)."""
    rates = (8000, 11025, 16000)
    for kind in kinds:
        where = folder / kind if classes else folder
        where.mkdir(parents=True, exist_ok=True)
        for seed in range(per_kind):
            rate = rates[seed % 3]
            wave = synthesize(kind, seed, sample_rate=rate, length=int(0.3 * rate))
            sf.write(str(where / f"{kind}-{seed}.{['wav', 'flac'][seed % 2]}"), wave, rate)
    return folder


def train_cli(capsys, family, folder, out, run, *extra):
    code = main(["train", "--family", family, "--data", str(folder), "--id", "mine", "--out", str(out),
                 "--run-dir", str(run), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# --- a quick look at a folder ----------------------------------------------------------------------------------------


def test_scan_folder_says_what_a_folder_of_pictures_holds(tmp_path):
    folder = pictures(tmp_path / "pics", n=12)
    summary = scan_folder(folder, "gan")
    assert summary.usable == 12 and summary.colour is True and summary.skipped == () and summary.enough
    assert len(summary.sizes) == 12 and (40, 30) in summary.sizes
    assert summary.summary == "12 pictures (12 sizes, colour)"
    grey = scan_folder(pictures(tmp_path / "grey", n=3, colour=False), "vae")
    assert grey.summary == "3 pictures (3 sizes, grey)" and grey.colour is False
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not a picture")
    summary = scan_folder(folder, "diffusion")
    assert summary.usable == 12 and summary.skipped == ("broken.png (not an image file)",)
    assert summary.summary == "12 pictures (12 sizes, colour); 1 unreadable skipped"
    few = scan_folder(pictures(tmp_path / "few", n=3), "gan")
    assert not few.enough and few.minimum == 4 and "too few: needs at least 4" in few.summary


def test_scan_folder_says_what_a_folder_of_sounds_holds(tmp_path):
    folder = sounds(tmp_path / "kit")
    summary = scan_folder(folder, "audio")
    assert summary.usable == 9 and summary.classes == ("kick", "pad", "snare")
    assert summary.sample_rates == (8000, 11025, 16000) and summary.seconds == pytest.approx(2.7, abs=0.01)
    assert summary.summary == "9 sounds (3 sample rates, 2.7 s in all, 3 classes: kick, pad, snare)"
    flat = scan_folder(sounds(tmp_path / "flat", kinds=("kick",), per_kind=4, classes=False), "audio")
    assert flat.classes == () and flat.summary.startswith("4 sounds (3 sample rates, ")
    (folder / "kick" / "broken.wav").write_bytes(b"RIFF nonsense")
    assert scan_folder(folder, "audio").skipped == ("kick/broken.wav (undecodable)",)


def test_scan_folder_refuses_folders_with_nothing_usable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(RecipeError, match="no usable images: no PNG, JPEG, WebP or BMP files") as info:
        scan_folder(empty, "gan")
    assert "empty" in str(info.value)
    with pytest.raises(RecipeError, match="no usable sounds: no WAV, FLAC, OGG or MP3 files"):
        scan_folder(empty, "audio")
    (empty / "broken.png").write_bytes(b"not a png")
    (empty / "broken.flac").write_bytes(b"fLaC nonsense")
    with pytest.raises(RecipeError, match="1 image file\\(s\\), none readable"):
        scan_folder(empty, "diffusion")
    with pytest.raises(RecipeError, match="1 sound file\\(s\\), none readable"):
        scan_folder(empty, "audio")
    with pytest.raises(RecipeError, match="no such folder"):
        scan_folder(tmp_path / "missing", "vae")
    with pytest.raises(RecipeError, match="unknown family 'flow'"):
        scan_folder(empty, "flow")
    assert FOLDER_FAMILIES == ("vae", "gan", "diffusion", "audio")


# --- packages the app renders ----------------------------------------------------------------------------------------


def test_gan_on_a_folder_makes_a_package_the_app_renders(capsys, tmp_path):
    folder = pictures(tmp_path / "my pictures", n=12)
    out = tmp_path / "models" / "mine"
    said = train_cli(capsys, "gan", folder, out, tmp_path / "run", *TINY_GAN)
    assert "12 images from" in said and "wrote" in said
    model = load_model(resolve(str(out)))
    m = model.manifest
    assert m.family == "gan" and m.conditions.kind == "none" and m.output["channels"] == 3
    assert m.training["trainer"] == "folder-gan" and m.training["steps"] == 3
    assert set(m.training["quality"]) >= {"training_images", "loss_d_final", "loss_g_final"}
    assert m.training["quality"]["training_images"] == 12 and m.training["seconds"] >= 0
    image = finish(model.family.render(model, RenderRequest("mine", seed=1)))[0].data
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    other = finish(model.family.render(model, RenderRequest("mine", seed=2)))[0].data
    assert not np.array_equal(image, other)  # the latent matters
    assert model.directions is not None
    assert (out / "recipe.toml").exists() and (out / "preview.png").exists()
    assert Image.open(out / "preview.png").size == (32, 32)


def test_diffusion_on_a_folder_makes_a_package_the_app_renders(capsys, tmp_path):
    folder = pictures(tmp_path / "pics", n=12, colour=False)
    out = tmp_path / "models" / "mine"
    train_cli(capsys, "diffusion", folder, out, tmp_path / "run", *TINY_DIFFUSION, "--fit", "pad")
    model = load_model(resolve(str(out)))
    m = model.manifest
    assert m.family == "diffusion" and m.conditions.kind == "none" and m.output["channels"] == 1
    assert list(m.latent.shape) == [1, 8, 8] and m.training["trainer"] == "folder-diffusion"
    assert {"loss_final", "denoising_mse"} <= set(m.training["quality"])
    image, seen = finish(model.family.render(model, RenderRequest("mine", seed=1, params={"steps": 4})))
    assert image.data.shape == (8, 8, 1) and len(seen) >= 4  # progress and per-step previews
    assert (out / "preview.png").exists()


def test_audio_on_a_folder_of_class_folders_makes_a_package_the_app_renders(capsys, tmp_path):
    folder = sounds(tmp_path / "kit")
    (folder / "kick" / "broken.wav").write_bytes(b"RIFF nonsense")  # skipped, said
    sf.write(str(folder / "snare" / "silence.wav"), np.zeros(800, np.float32), 8000)  # skipped, said
    out = tmp_path / "models" / "mine"
    said = train_cli(capsys, "audio", folder, out, tmp_path / "run", *TINY_AUDIO)
    assert "skipped 2 unusable sound file(s): kick/broken.wav (" in said and "snare/silence.wav (" in said
    assert "classes: kick 3, pad 3, snare 3" in said
    model = load_model(resolve(str(out)))
    m = model.manifest
    assert m.family == "audio-vae" and m.conditions.kind == "class"
    assert m.conditions.labels == ("kick", "pad", "snare") and m.conditions.default == "kick"
    assert m.output["sample_rate"] == 8000 and m.output["length"] == 1792  # 8 frames of hop 256
    assert m.training["trainer"] == "folder-audio" and m.training["quality"]["training_sounds"] == 9
    sound = finish(model.family.render(model, RenderRequest("mine", seed=1, params={"label": "snare"})))[0]
    assert sound.kind == "audio" and sound.data.shape == (1792, 1) and sound.data.dtype == np.float32
    assert np.isfinite(sound.data).all() and sound.info["class"] == "snare"
    assert (out / "preview.png").exists() and (out / "recipe.toml").exists()


def test_audio_without_sub_folders_has_one_class(tmp_path):
    folder = sounds(tmp_path / "one-shots", kinds=("kick", "pad"), per_kind=3, classes=False)
    out = train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family="audio", log=lambda _: None,
                       **AUDIO_SETTINGS)
    model = load_model(resolve(str(out)))
    assert model.manifest.conditions.labels == ("sound",)
    sound = finish(model.family.render(model, RenderRequest("mine", seed=3)))[0]
    assert sound.data.shape == (1792, 1)


def test_a_held_out_tenth_measures_the_sound_model(tmp_path):
    folder = sounds(tmp_path / "kit", kinds=("kick", "snare"), per_kind=10)
    out = train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family="audio", log=lambda _: None,
                       **AUDIO_SETTINGS)
    quality = load_model(resolve(str(out))).manifest.training["quality"]
    assert quality["training_sounds"] == 18 and quality["heldout_sounds"] == 2
    assert quality["heldout_recon_db_error"] > 0 and quality["heldout_recon_mrstft"] > 0


# --- what a monitor sees; pause and resume ---------------------------------------------------------------------------


def test_a_paused_gan_resumes_where_it_stopped_and_its_recipe_reproduces_it(tmp_path):
    folder = pictures(tmp_path / "pics", n=12)
    run, out = tmp_path / "run", tmp_path / "out"
    watcher = Watcher(stop_at=2)
    with pytest.raises(TrainingStopped) as info:
        train_folder(folder, out, run, "mine", family="gan", monitor=watcher, **GAN_SETTINGS)
    assert info.value.step == 2 and info.value.reason == "pause"
    assert watcher.started == (4, 0) and [s for s, _ in watcher.steps] == [1, 2]
    assert all(np.isfinite(v) for _, v in watcher.steps)
    assert not out.exists() and (run / "checkpoint.safetensors").exists()
    later = Watcher()
    train_folder(folder, out, run, "mine", family="gan", resume=True, monitor=later)
    assert later.started == (4, 2) and [s for s, _ in later.steps] == [3, 4]
    assert later.samples[-1] == (4, (32, 32, 3), np.uint8) and later.kinds[-1] == ("image", 0)
    # the recipe in the package trains the same generator again, step for step
    again = tmp_path / "again"
    assert main(["train", str(out / "recipe.toml"), "--out", str(again), "--run-dir", str(tmp_path / "run2")]) == 0
    first, second = read_tensors(out / "weights.safetensors"), read_tensors(again / "weights.safetensors")
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_a_monitor_hears_the_sound_model_and_a_cancelled_run_resumes(tmp_path):
    folder = sounds(tmp_path / "kit")
    run, out = tmp_path / "run", tmp_path / "out"
    watcher = Watcher(stop_at=3, reason="cancel")
    with pytest.raises(TrainingStopped, match="cancelled at step 3"):
        train_folder(folder, out, run, "mine", family="audio", monitor=watcher, **AUDIO_SETTINGS)
    assert [s for s, _ in watcher.steps] == [1, 2, 3] and not out.exists()
    later = Watcher()
    train_folder(folder, out, run, "mine", family="audio", resume=True, monitor=later)
    assert later.started == (4, 3) and [s for s, _ in later.steps] == [4]
    step, shape, dtype = later.samples[-1]
    assert step == 4 and dtype == np.float32 and len(shape) == 1
    assert later.kinds[-1] == ("audio", 8000)
    assert shape[0] == 3 * 1792 + 2 * int(0.15 * 8000)  # one sound of each class, a short silence between


def test_a_monitor_sees_diffusion_samples_every_few_steps(tmp_path):
    folder = pictures(tmp_path / "pics", n=6)
    watcher = Watcher()
    train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family="diffusion", monitor=watcher,
                 **{**DIFFUSION_SETTINGS, "steps": 6})
    assert [s for s, _ in watcher.steps] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _, _ in watcher.samples] == [1, 2, 3, 4, 5, 6]  # every steps // 20 (at least 1) and the end
    assert watcher.samples[-1][1:] == ((32, 32, 3), np.uint8)


# --- folders and settings that cannot work ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gan", "diffusion"])
def test_too_few_pictures_are_refused(family, tmp_path):
    folder = pictures(tmp_path / "pics", n=3)
    with pytest.raises(RecipeError, match="needs at least 4 pictures to learn from; .* has 3 usable") as info:
        train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family=family, log=lambda _: None,
                     **(GAN_SETTINGS if family == "gan" else DIFFUSION_SETTINGS))
    assert info.value.field == "data.folder" and not (tmp_path / "out").exists()


def test_folders_of_sounds_with_nothing_usable_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(RecipeError, match="no usable sounds: no WAV, FLAC, OGG or MP3 files") as info:
        train_folder(empty, tmp_path / "out", tmp_path / "run", "mine", family="audio", log=lambda _: None,
                     **AUDIO_SETTINGS)
    assert str(empty) in str(info.value)
    (empty / "broken.wav").write_bytes(b"RIFF nonsense")
    sf.write(str(empty / "quiet.flac"), np.zeros(1000, np.float32), 8000)
    with pytest.raises(RecipeError, match=r"2 sound file\(s\), none usable \(broken.wav \(cannot be decoded"):
        train_folder(empty, tmp_path / "out", tmp_path / "run", "mine", family="audio", log=lambda _: None,
                     **AUDIO_SETTINGS)
    few = sounds(tmp_path / "few", kinds=("kick",), per_kind=3, classes=False)
    with pytest.raises(RecipeError, match="needs at least 4 sounds"):
        train_folder(few, tmp_path / "out", tmp_path / "run", "mine", family="audio", log=lambda _: None,
                     **AUDIO_SETTINGS)


@pytest.mark.parametrize("family, settings, field, words", [
    ("gan", {"size": 48}, "data.size", "must be one of 8, 16"),
    ("gan", {"batch": 1}, "train.batch", "at least 2"),
    ("gan", {"augment": "color,zoom"}, "train.augment", "unknown augmentation zoom"),
    ("diffusion", {"size": 30}, "data.size", "multiple of 4"),
    ("diffusion", {"base": 12}, "model.base", "multiple of 8"),
    ("diffusion", {"steps": 0}, "train.steps", "must be positive"),
    ("vae", {"device": "tpu"}, "train.device", "unknown device 'tpu'"),
    ("gan", {"device": "quantum"}, "train.device", "unknown device"),
])
def test_settings_that_cannot_work_are_refused_naming_the_field(family, settings, field, words, tmp_path):
    folder = pictures(tmp_path / "pics", n=6)
    base = {"gan": GAN_SETTINGS, "diffusion": DIFFUSION_SETTINGS, "vae": {"size": 8, "steps": 2}}[family]
    with pytest.raises(RecipeError, match=words) as info:
        train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family=family, log=lambda _: None,
                     **{**base, **settings})
    assert info.value.field == field


def test_sound_settings_that_cannot_work_are_refused(tmp_path):
    folder = sounds(tmp_path / "kit", per_kind=2)
    with pytest.raises(RecipeError, match="0.1 … 10 seconds") as info:
        train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family="audio", seconds=30)
    assert info.value.field == "seconds"
    with pytest.raises(RecipeError, match="8000 … 96000 Hz") as info:
        train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family="audio", sample_rate=4000,
                     log=lambda _: None)
    assert info.value.field == "data.sample_rate"
    with pytest.raises(RecipeError, match="the audio trainer has no setting 'size'"):
        train_folder(folder, tmp_path / "out", tmp_path / "run", "mine", family="audio", size=32)


def test_a_run_folder_resumes_only_as_its_own_family(tmp_path):
    folder = pictures(tmp_path / "pics", n=6)
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped):
        train_folder(folder, tmp_path / "out", run, "mine", family="gan", monitor=Watcher(stop_at=1),
                     **GAN_SETTINGS)
    with pytest.raises(RecipeError, match="holds a 'folder-gan' run, not a diffusion one"):
        train_folder(folder, tmp_path / "out", run, "mine", family="diffusion", resume=True)


def test_the_command_line_refuses_wrong_use(capsys, tmp_path):
    pics = pictures(tmp_path / "pics", n=6)
    assert main(["train", "--family", "flow", "--data", str(pics)]) == 1
    assert "--family vae, gan, diffusion or audio, not 'flow'" in capsys.readouterr().err
    assert main(["train", "--family", "audio", "--data", str(pics), "--size", "32"]) == 1
    assert "--size is for training on pictures" in capsys.readouterr().err
    assert main(["train", "--family", "gan", "--data", str(pics), "--seconds", "2"]) == 1
    assert "--seconds is for training on sounds (--family audio)" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "recipe.toml"), "--family", "gan", "--steps", "3"]) == 1
    assert "--family, --steps go with --data FOLDER" in capsys.readouterr().err
    assert main(["train", "--family", "audio", "--data", str(pics), "--out", str(tmp_path / "o"),
                 "--run-dir", str(tmp_path / "r"), *TINY_AUDIO]) == 1
    err = capsys.readouterr().err
    assert "no usable sounds: no WAV, FLAC, OGG or MP3 files" in err and "pics" in err
