"""`latent-studio render --count N --batch-size B --seed-mode M`: N × B files over the seeds, each the same picture a
single `render --seed` of its seed writes, with its request inside."""

from __future__ import annotations

import re

import numpy as np
import pytest

from studio.export import read_request

from test_cli import _no_shipped_models, out_dir, pixels, render  # noqa: F401  (fixtures)


def test_count_and_batch_size_render_every_seed_in_order(capsys, models_dir, out_dir):
    code, stdout, err = render(capsys, models_dir, out_dir / "run.png", "--model", "tiny", "--seed", "40",
                               "--prompt", "Ab", "--count", "3", "--batch-size", "2")
    assert code == 0, err
    files = sorted(out_dir.glob("run-*.png"))
    assert [f.name for f in files] == [f"run-{k + 1:04d}-s{40 + k}.png" for k in range(6)]
    assert [read_request(f).seed for f in files] == list(range(40, 46))
    assert all(read_request(f).param("prompt") == "Ab" for f in files)
    assert len(re.findall(r"^wrote ", stdout, re.M)) == 6 and "6 renders in 3 batches of 2" in stdout
    single = out_dir / "single.png"
    assert render(capsys, models_dir, single, "--model", "tiny", "--seed", "43", "--prompt", "Ab")[0] == 0
    assert np.array_equal(pixels(single), pixels(files[3]))  # seed 43 in a batch is seed 43 alone


def test_random_seed_mode_draws_each_seed_and_names_it(capsys, models_dir, out_dir):
    code, stdout, err = render(capsys, models_dir, out_dir / "r.png", "--model", "tiny", "--count", "4",
                               "--seed-mode", "random")
    assert code == 0, err
    files = sorted(out_dir.glob("r-*.png"))
    seeds = [read_request(f).seed for f in files]
    assert len(files) == 4 and len(set(seeds)) == 4
    assert all(f.name.endswith(f"-s{s}.png") for f, s in zip(files, seeds))


@pytest.mark.parametrize("option", ["--count", "--batch-size"])
def test_a_count_below_one_is_refused_before_any_work(capsys, models_dir, out_dir, option):
    code, _, err = render(capsys, models_dir, out_dir / "x.png", "--model", "tiny", option, "0")
    assert code != 0 and "must be 1 or more" in err
    assert list(out_dir.iterdir()) == []


def test_sheets_and_grids_join_the_gallery_and_a_broken_gallery_is_only_a_note(capsys, models_dir, out_dir,
                                                                              monkeypatch, tmp_path):
    from studio.app.gallery import Gallery
    from studio.cli import main

    assert main(["sheet", "--models-dir", str(models_dir), "--model", "tiny", "--rows", "2",
                 "--out", str(out_dir / "sheet.png")]) == 0
    assert main(["grid", "--models-dir", str(models_dir), "--model", "tiny", "--rows", "seed=1,2", "--cols", "d0=0,1",
                 "--out", str(out_dir / "grid.png")]) == 0
    gallery = Gallery.open()
    items = {i.source: i for i in gallery.items()}
    gallery.close()
    assert items["sheet"].path == (out_dir / "sheet.png").resolve() and items["sheet"].model_id == "tiny"
    assert items["grid"].path == (out_dir / "grid.png").resolve()
    capsys.readouterr()
    (tmp_path / "nowhere").write_text("a file where the data folder should be")
    monkeypatch.setenv("LATENT_STUDIO_DATA", str(tmp_path / "nowhere"))
    assert main(["sheet", "--models-dir", str(models_dir), "--model", "tiny", "--rows", "1",
                 "--out", str(out_dir / "again.png")]) == 0
    err = capsys.readouterr().err
    assert (out_dir / "again.png").exists() and "again.png is not in the gallery" in err
