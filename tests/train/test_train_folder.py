"""Training a VAE on your own pictures (studio.train.folder, `latent-studio train --family vae --data FOLDER`): images
of any size and format fitted to a square, grey or colour, a package the app renders, resume, and clear errors for a
folder with nothing usable. The other families: test_train_folder_families.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import finish
from studio.cli import main
from studio.errors import RecipeError
from studio.library import load_model, resolve
from studio.request import RenderRequest
from studio.train.data.folders import fit_image, load_image_folder


def pictures(folder, n: int = 24, colour: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(0)
    for i in range(n):
        w, h = (40 + 7 * (i % 3), 30 + 5 * (i % 4))  # a mix of sizes
        base = np.zeros((h, w, 3), np.uint8)
        base[:, : w // 2] = gen.integers(0, 255, 3)
        image = Image.fromarray(base if colour else base[..., 0])
        image.save(folder / f"p{i}.{['png', 'jpg', 'webp'][i % 3]}")
    return folder


def test_a_folder_of_mixed_pictures_loads_as_squares(tmp_path):
    data = load_image_folder(pictures(tmp_path / "pics"), 16, log=lambda _: None)
    assert data.shape == (24, 3, 16, 16) and data.dtype == np.float32 and 0 <= data.min() and data.max() <= 1
    grey = load_image_folder(pictures(tmp_path / "grey", colour=False), 16, "pad", log=lambda _: None)
    assert grey.shape == (24, 1, 16, 16)


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_fits_make_squares(fit):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    assert fit_image(image, 16, fit).size == (16, 16)


def test_nothing_usable_is_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(RecipeError, match="no PNG, JPEG, WebP or BMP") as info:
        load_image_folder(empty, 16, log=lambda _: None)
    assert "empty" in str(info.value)
    (empty / "broken.png").write_bytes(b"not a png")
    with pytest.raises(RecipeError, match="none readable"):
        load_image_folder(empty, 16, log=lambda _: None)


def test_train_on_a_folder_makes_a_package_the_app_renders(capsys, tmp_path):
    folder = pictures(tmp_path / "my pictures")
    (folder / "broken.png").write_bytes(b"not a png")  # skipped, said
    out = tmp_path / "models" / "mine"
    code = main(["train", "--family", "vae", "--data", str(folder), "--size", "16", "--steps", "4", "--id", "mine",
                 "--out", str(out), "--run-dir", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipped 1 unreadable file(s): broken.png" in captured.out
    model = load_model(resolve(str(out)))
    assert model.manifest.output["channels"] == 3 and model.manifest.conditions.kind == "none"
    assert model.manifest.training["quality"]["heldout_images"] == 2
    image = finish(model.family.render(model, RenderRequest("mine", seed=1)))[0].data
    assert image.shape == (16, 16, 3)
    assert (out / "recipe.toml").exists() and (out / "preview.png").exists()
    again = main(["train", "--family", "vae", "--data", str(folder), "--size", "16", "--steps", "4", "--id", "mine",
                  "--out", str(out), "--run-dir", str(tmp_path / "run"), "--resume"])
    assert again == 0  # the finished run is measured again and rewritten, not trained again


def test_wrong_requests_are_refused(capsys, tmp_path):
    folder = pictures(tmp_path / "pics", n=3)
    assert main(["train", "--family", "flow", "--data", str(folder)]) == 1
    assert "--family vae, gan, diffusion or audio, not 'flow'" in capsys.readouterr().err
    assert main(["train", "--family", "gan", "--data", str(folder), "--size", "8", "--out", str(tmp_path / "o"),
                 "--run-dir", str(tmp_path / "r")]) == 1
    assert "a GAN needs at least 4 pictures" in capsys.readouterr().err
    assert main(["train", "--data", str(folder), "--size", "48", "--out", str(tmp_path / "o"),
                 "--run-dir", str(tmp_path / "r")]) == 1
    assert "data.size" in capsys.readouterr().err
    assert main(["train"]) == 1 and "RECIPE.toml" in capsys.readouterr().err


class Watcher:
    """A monitor that records what the trainer reports and asks to stop at a given step."""

    def __init__(self, stop_at: int | None = None, reason: str = "pause"):
        from studio.train.monitor import Monitor

        self.inner = Monitor(lambda _: None)
        self.stop_at, self.reason = stop_at, reason
        self.steps, self.samples, self.kinds, self.last = [], [], [], 0

    def log(self, text):
        pass

    def start(self, total, start, unit="img"):
        self.started = (total, start)

    def step(self, step, items, **figures):
        self.steps.append((step, figures["loss"]))
        self.last = step

    def sample(self, step, output, kind="image", sample_rate=0):
        self.samples.append((step, output.shape, output.dtype))
        self.kinds.append((kind, sample_rate))

    def stop_requested(self):
        return self.reason if self.stop_at is not None and self.last >= self.stop_at else None

    def finish(self):
        pass


def test_a_monitor_sees_losses_and_samples_and_a_paused_run_resumes(tmp_path):
    from studio.train.folder import train_folder
    from studio.train.monitor import TrainingStopped

    folder = pictures(tmp_path / "pics")
    run, out = tmp_path / "run", tmp_path / "out"
    watcher = Watcher(stop_at=3)
    with pytest.raises(TrainingStopped) as info:
        train_folder(folder, out, run, "mine", monitor=watcher, size=16, steps=8)
    assert info.value.step == 3 and info.value.reason == "pause" and "paused at step 3" in str(info.value)
    assert [s for s, _ in watcher.steps] == [1, 2, 3] and all(np.isfinite(v) for _, v in watcher.steps)
    assert not out.exists()  # nothing half-made is written as a package
    assert (run / "checkpoint.safetensors").exists()
    later = Watcher()
    train_folder(folder, out, run, "mine", resume=True, monitor=later, size=16, steps=8)
    assert later.started == (8, 3) and [s for s, _ in later.steps] == [4, 5, 6, 7, 8]
    assert later.samples and later.samples[-1] == (8, (64, 64, 3), np.uint8)
    assert (out / "weights.safetensors").exists()


def test_previews_are_made_only_for_a_monitor_that_looks_at_them(tmp_path):
    from studio.train.folder import train_folder
    from studio.train.monitor import Monitor

    class Blind(Monitor):  # as the command line's monitor: wants_samples is False
        def sample(self, step, output, kind="image", sample_rate=0):
            raise AssertionError("a preview was made for a monitor that does not look at it")

    out = train_folder(pictures(tmp_path / "pics", n=6), tmp_path / "out", tmp_path / "run", "mine",
                       monitor=Blind(lambda _: None), size=8, steps=2)
    assert (out / "weights.safetensors").exists()
