"""The engine's work functions (studio.engine.work): on a stub model (no torch model), then on the real engine's
export lane with a tiny seeded package, where the CLI and the window run them."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from studio.engine import Cancelled
from studio.engine import work
from studio.engine.engine import Engine
from studio.errors import StudioError
from studio.export import read_any_request, read_request
from studio.library import resolve
from studio.project.timeline import Keyframe, Timeline
from studio.request import RenderRequest
from studio.steps import Preview, Progress, run_steps

from conftest import finish as drive
from fake_engine import FakeFamily, FakeModel, fake_image


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def stub(models_dir) -> FakeModel:
    return FakeModel("tiny", resolve(str(models_dir / "tiny")))


@pytest.fixture
def request_(stub) -> RenderRequest:
    return stub.entry.default_request(seed=3)


# --- on a stub model ---------------------------------------------------------------------------------------------


def test_render_to_file_forwards_the_render_steps_and_writes_the_request(stub, request_, out_dir):
    out = out_dir / "x.png"
    output, seen = drive(work.render_to_file(stub, request_, path=out))
    assert any(isinstance(s, Preview) for s in seen) and all(isinstance(s, Progress) for s in seen)
    assert output.info["path"] == str(out) and np.array_equal(output.data, fake_image(request_))
    assert read_request(out) == request_.with_(model_hash=stub.sha256)  # the weights' hash goes in the file
    assert [p.name for p in out_dir.iterdir()] == ["x.png"]


def test_render_to_file_writes_a_sound_and_refuses_the_wrong_kind(stub, request_, tmp_path):
    sounding = FakeModel(stub.id, stub.entry, FakeFamily(sample_rate=8000))
    output, _ = drive(work.render_to_file(sounding, request_, path=tmp_path / "x.flac", subtype="PCM_24"))
    info = sf.info(str(tmp_path / "x.flac"))
    assert (info.samplerate, info.subtype) == (8000, "PCM_24") and read_any_request(tmp_path / "x.flac").seed == 3
    with pytest.raises(StudioError, match="made audio, which cannot be written as .png"):
        run_steps(work.render_to_file(sounding, request_, path=tmp_path / "y.png"))
    assert not (tmp_path / "y.png").exists()


def test_a_cancelled_render_leaves_no_file(stub, request_, out_dir):
    steps = work.render_to_file(stub, request_, path=out_dir / "x.png")
    next(steps)
    steps.close()  # what the engine does at a cancel point
    assert list(out_dir.iterdir()) == []


def test_sheet_stacks_consecutive_seeds(stub, request_, tmp_path):
    output, seen = drive(work.sheet(stub, request_, rows=3, path=tmp_path / "s.png"))
    assert [r.seed for r in stub.family.rendered] == [3, 4, 5]
    assert output.data.shape[0] == 3 * 16 + 2 * 1 and output.info["seeds"] == (3, 5)
    assert [(p.step, p.total) for p in seen if p.message.startswith("row ")] == [(1, 3), (2, 3), (3, 3)]
    assert read_request(tmp_path / "s.png").seed == 3
    with pytest.raises(StudioError, match="at least one row"):
        run_steps(work.sheet(stub, request_, rows=0, path=tmp_path / "t.png"))


def test_grid_axes_are_parsed_by_the_models_specs(stub):
    table = stub.entry.parameters
    assert work.parse_grid_axis(table, "seed=1, 2", "--rows") == ("seed", [1, 2])
    assert work.parse_grid_axis(table, "d0=-1,0.5", "--cols") == ("d0", [-1.0, 0.5])
    with pytest.raises(StudioError, match=r"^--rows: an axis is NAME=V1,V2"):
        work.parse_grid_axis(table, "seed", "--rows")
    with pytest.raises(StudioError, match=r"^--rows d0: needs a number, got 'a'"):
        work.parse_grid_axis(table, "d0=a", "--rows")
    with pytest.raises(StudioError, match=r"^rows wobble: this model takes no parameter 'wobble'"):
        work.parse_grid_axis(table, "wobble=1", "rows")
    cells = work.grid_cells(table.check, stub.entry.default_request(), ("seed", [1, 2]), ("d0", [0.0, 1.0, 2.0]))
    assert [[(c.seed, c.param("d0")) for c in row] for row in cells] == [[(1, 0.0), (1, 1.0), (1, 2.0)],
                                                                         [(2, 0.0), (2, 1.0), (2, 2.0)]]


def test_grid_renders_every_cell_with_progress_and_writes_the_base_request(stub, request_, tmp_path):
    out = tmp_path / "g.png"
    output, seen = drive(work.grid(stub, request_, rows=("seed", [1, 2]), cols=("d0", [-1.0, 0.0, 1.0]), path=out,
                                   title="T"))
    assert len(stub.family.rendered) == 6 and output.info["cells"] == (2, 3)
    cells = [(p.step, p.total) for p in seen if p.message.startswith("cell ")]
    assert cells == [(k, 6) for k in range(1, 7)]
    assert all(p.step <= 6 for p in seen)  # the cells' own steps report the grid's progress
    with Image.open(out) as image:
        assert image.width > 3 * 16 and image.height > 2 * 16
    assert read_request(out) == request_.with_(model_hash=stub.sha256)


def test_variations_render_one_tile_per_seed_with_its_request(stub, request_):
    output, _ = drive(work.variations(stub, request_, seeds=(5, 2**64 - 1), strength=0.4))
    tiles = output.info["tiles"]
    assert [t.param("variation_seed") for t, _ in tiles] == [5, 2**64 - 1]
    assert all(t.param("variation_strength") == 0.4 for t, _ in tiles)
    assert output.data.shape[0] == 2 and np.array_equal(tiles[1][1].data, fake_image(tiles[1][0]))


def test_encode_image_and_a_projection_with_progress(stub, request_):
    images = np.full((2, 16, 16), 255, np.uint8)
    output, _ = drive(work.encode_image(stub, request_, images=images, labels=["A", "b"]))
    assert output.kind == "latent" and output.data == pytest.approx([1.0] * 8) and output.info["images"] == 2
    assert stub.family.encoded[0][1] == ["A", "b"]
    projecting = FakeModel(stub.id, stub.entry, FakeFamily(project_steps=5))
    output, seen = drive(work.encode_image(projecting, request_, images=images))
    assert [p.step for p in seen if p.message.startswith("projecting")] == [1, 2, 3, 4, 5]
    assert output.data == pytest.approx([1.0] * 8)


def test_glyph_strips_and_sound_labels(stub, tmp_path):
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "strip.png")
    images, labels = work.glyph_strip(stub.manifest, tmp_path / "strip.png", "Ab")
    assert images.shape == (2, 16, 16) and labels == ["A", "b"]
    plain = resolve(str(stub.entry.folder.parent / "tiny-plain"))
    images, labels = work.glyph_strip(plain.manifest, tmp_path / "strip.png", "Ab")
    assert images.shape == (1, 16, 16) and labels is None


# --- on the real engine -------------------------------------------------------------------------------------------


@pytest.fixture
def engine(models_dir):
    with Engine(device="cpu", roots=[models_dir], threads=1) as real:
        yield real


def test_the_engine_runs_render_to_file_as_a_job(engine, models_dir, tmp_path):
    request = RenderRequest("tiny", seed=7, params={"prompt": "Ab"})
    events = []
    job = work.submit(engine, request, work.render_to_file, on_event=lambda e: events.append(e.kind),
                      path=tmp_path / "x.png")
    output = job.wait(60)
    expected = engine.render(request)
    with Image.open(tmp_path / "x.png") as image:
        assert np.array_equal(np.asarray(image), expected.data[..., 0])
    assert job.kind == "work" and job.lane == "export" and events[-1] == "finished" and "progress" in events
    assert read_request(tmp_path / "x.png").model_hash == job.info["model_sha256"] == output.info["model_sha256"]


def test_the_engine_runs_grid_sheet_encode_and_variations(engine, models_dir, tmp_path):
    entry = resolve(str(models_dir / "tiny"))
    base = entry.default_request(seed=1)
    rows, cols = work.parse_grid_axis(entry.parameters, "seed=1,2", "--rows"), ("d0", [0.0, 1.0])
    grid = work.submit(engine, base, work.grid, rows=rows, cols=cols, path=tmp_path / "g.png").wait(60)
    cell = engine.render(base.with_(seed=2).with_param("d0", 1.0)).data
    assert grid.info["cells"] == (2, 2) and cell.shape == (16, 32, 1)
    sheet = work.submit(engine, base, work.sheet, rows=2, path=tmp_path / "s.png").wait(60)
    assert np.array_equal(sheet.data[:16], engine.render(base).data)
    images = np.stack([np.full((16, 16), 255, np.uint8)] * 2)
    encoded = work.submit(engine, base, work.encode_image, images=images, labels=["A", "b"]).wait(60)
    assert np.allclose(encoded.data, engine.encode(base, images, ["A", "b"]).wait(60).data)
    tiles = work.submit(engine, base, work.variations, seeds=[9], strength=0.5).wait(60).info["tiles"]
    assert np.array_equal(tiles[0][1].data, engine.render(tiles[0][0]).data)


def test_cancelling_a_grid_stops_it_and_leaves_no_file(engine, models_dir, out_dir):
    entry = resolve(str(models_dir / "tiny"))
    started = threading.Event()
    job = work.submit(engine, entry.default_request(), work.grid, path=out_dir / "g.png",
                      rows=("seed", list(range(200))), cols=("d0", [0.0, 1.0, 2.0]),
                      on_event=lambda e: started.set() if e.kind == "progress" else None)
    assert started.wait(60)
    job.cancel()
    with pytest.raises(Cancelled):
        job.wait(60)
    assert list(out_dir.iterdir()) == []


def test_a_video_plan_carries_the_sound_in_mp4_and_webm_only(models_dir, tmp_path):
    values = tuple(float(v) for v in range(8))
    keys = [Keyframe(RenderRequest("tiny", latent=values), duration=1.0),
            Keyframe(RenderRequest("tiny", latent=tuple(v + 1 for v in values)), duration=1.0)]
    sf.write(str(tmp_path / "beat.wav"), (0.5 * np.sin(np.arange(8000) / 8)).astype(np.float32), 8000)
    timeline = Timeline(tuple(keys), fps=4, audio="beat.wav")
    plan = work.video_plan(timeline, tmp_path / "v.mp4", tmp_path)
    assert len(plan.frames) == 4 and plan.fps == 4.0 and plan.audio[1] == 8000
    assert work.video_plan(timeline, tmp_path / "v.gif", tmp_path).audio is None
    with pytest.raises(StudioError, match="at least two keyframes"):
        work.video_plan(Timeline(tuple(keys[:1])), tmp_path / "v.mp4")
    json.dumps([f.to_dict() for f in plan.frames])  # plain requests


# --- the CLI's verbs run them --------------------------------------------------------------------------------------


def test_the_cli_verbs_write_what_the_work_functions_make(models_dir, tmp_path, capsys, monkeypatch):
    from studio.cli import main

    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "none"))
    cli = ["--models-dir", str(models_dir)]
    out = tmp_path / "out"
    out.mkdir()
    assert main(["render", *cli, "--model", "tiny", "--seed", "7", "--set", "d0=1.5", "--out", str(out / "r.png"),
                 "--device", "cpu"]) == 0
    assert main(["sheet", *cli, "--model", "tiny", "--rows", "2", "--seed", "4", "--out", str(out / "s.png"),
                 "--device", "cpu"]) == 0
    assert main(["grid", *cli, "--model", "tiny", "--rows", "seed=1,2", "--cols", "d0=-1,0,1", "--title", "T",
                 "--out", str(out / "g.png"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"wrote {out / 'r.png'} (32x16, tiny, seed 7, ")
    assert printed[1] == f"wrote {out / 's.png'} (32x33, tiny, seeds 4..5)"
    assert printed[2].startswith(f"wrote {out / 'g.png'} (") and printed[2].endswith(", 2 × 3 cells, tiny)")
    stored = read_request(out / "r.png")
    assert stored.param("d0") == 1.5 and stored.seed == 7 and len(stored.model_hash) == 64
    entry = resolve(str(models_dir / "tiny"))
    with Engine(device="cpu", roots=[models_dir], threads=1) as engine:
        expected = engine.render(stored).data
        picture = work.submit(engine, entry.default_request(seed=1), work.grid, rows=("seed", [1, 2]),
                              cols=("d0", [-1.0, 0.0, 1.0]), path=out / "g2.png", title="T").wait(60).data
    with Image.open(out / "r.png") as image:
        assert np.array_equal(np.asarray(image), expected[..., 0])
    with Image.open(out / "g.png") as image:
        assert np.array_equal(np.asarray(image), picture)  # the CLI's grid is the work function's
    assert sorted(p.name for p in out.iterdir()) == ["g.png", "g2.png", "r.png", "s.png"]


def test_the_cli_encodes_on_the_engine_and_shows_a_projections_progress(tmp_path, capsys, monkeypatch):
    from conftest import make_tiny_gan_package
    from studio.cli import main

    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "none"))
    make_tiny_gan_package(tmp_path / "models" / "tiny-gan")
    Image.fromarray(np.hstack([np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8) + 40])).save(
        tmp_path / "strip.png")
    assert main(["encode", "--models-dir", str(tmp_path / "models"), "--model", "tiny-gan", "--image",
                 str(tmp_path / "strip.png"), "--chars", "Ab", "--out", str(tmp_path / "w.json"), "--device",
                 "cpu"]) == 0
    err = capsys.readouterr().err
    assert "projecting image" in err and "a long optimisation" in err and "/300" in err  # the progress bar
    record = json.loads((tmp_path / "w.json").read_text())
    assert len(record["latent"]) == 32 and record["chars"] == "Ab" and len(record["model_hash"]) == 64


def test_the_cli_animates_a_project_through_the_video_plan(models_dir, tmp_path, capsys, monkeypatch):
    from studio.cli import main
    from studio.project import Document, save_document

    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "none"))
    values = tuple(float(v) for v in np.linspace(-1, 1, 8))
    keys = [Keyframe(RenderRequest("tiny", latent=values, params={"prompt": "Ab"}), duration=0.5),
            Keyframe(RenderRequest("tiny", latent=tuple(-v for v in values), params={"prompt": "Ab"}), duration=0.5)]
    save_document(Document(keys[0].request, timeline=Timeline(tuple(keys), fps=8)), tmp_path / "walk.lstudio")
    assert main(["animate", str(tmp_path / "walk.lstudio"), "--models-dir", str(models_dir), "--out",
                 str(tmp_path / "frames"), "--device", "cpu"]) == 0  # no suffix: a folder of PNG frames
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'frames'} (4 frames at 8 fps, ")
    assert len(list((tmp_path / "frames").glob("*.png"))) == 4
