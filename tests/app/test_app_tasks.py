"""The document's work on the engine (studio.app.tasks), through a stub runner that runs the work functions on a
stub model on this thread: previews, export, grid, variations, encoding, latents, keyframes, video; no Qt."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.app.document import OpenDocument
from studio.app.models import ModelLibrary
from studio.app.tasks import Tasks
from studio.app.timeline import TimelineEditor
from studio.export import read_request
from studio.steps import Output

from app_stubs import StubRunner
from fake_engine import FAKE_SHA256, FakeFamily, FakeModel, fake_image


@pytest.fixture
def family() -> FakeFamily:
    return FakeFamily()


@pytest.fixture
def app(models_dir, family):
    models = ModelLibrary([models_dir])
    doc = OpenDocument(models)
    timeline = TimelineEditor(doc)
    runner = StubRunner(lambda request: FakeModel(request.model_id, models.entry_for(request.model_id), family))
    tasks = Tasks(doc, timeline, runner, thumbnail=lambda output: b"\x89PNG thumb")
    doc.start("tiny")
    heard: list = []
    doc.message.connect(lambda *args: heard.append(args))
    return doc, timeline, tasks, runner, heard


def test_every_applied_request_is_previewed(app):
    doc, _, tasks, runner, _ = app
    assert runner.previews == [doc.request]
    doc.change("Seed", seed=5)
    doc.undo.undo()
    assert [r.seed for r in runner.previews] == [0, 5, 0]
    tasks.rerender()
    assert len(runner.previews) == 4


def test_a_finished_preview_is_kept_and_says_whether_it_belongs_in_the_history(app):
    doc, _, tasks, _, _ = app
    output = Output("image", fake_image(doc.request))
    assert tasks.preview_finished(doc.request, output, {"model_sha256": "a" * 64})
    assert tasks.last_output is output and doc.document.models[0].sha256 == "a" * 64
    assert not tasks.preview_finished(doc.request.with_(seed=9), output, {})  # a scrubbed frame
    sound = Output("audio", np.zeros((8, 1), np.float32), {"sample_rate": 8000})
    tasks.preview_finished(doc.request, sound, {"model_sha256": "b" * 64})
    assert tasks.last_sound == (doc.request.with_(model_hash="b" * 64), sound)


def test_export_writes_the_request_then_advances_the_seed(app, tmp_path):
    doc, _, tasks, runner, heard = app
    doc.set_seed_mode("increment")
    wanted = doc.request
    done = []
    tasks.export(tmp_path / "out.webp", on_done=done.append)
    assert not (tmp_path / "out.webp").exists()  # it runs on the engine: later
    runner.settle()
    assert read_request(tmp_path / "out.webp") == wanted.with_(model_hash=FAKE_SHA256)
    assert heard[-1][:2] == ("info", "Exported out.webp") and done == [tmp_path / "out.webp"]
    assert doc.request.seed == wanted.seed + 1 and runner.handles[-1].label == "Export out.webp"


def test_an_export_under_a_wrong_name_or_failing_says_so(app, tmp_path):
    doc, _, tasks, runner, heard = app
    tasks.export(tmp_path / "out.wav")
    assert heard[-1][:2] == ("error", "Cannot export out.wav") and ".png" in heard[-1][2] and not runner.pending
    (tmp_path / "file").write_text("x")
    tasks.export(tmp_path / "file" / "out.png")
    runner.settle()
    assert heard[-1][0] == "error" and heard[-1][1].startswith("Export failed: ")


def test_a_grid_is_checked_before_it_renders_then_written(app, tmp_path):
    doc, _, tasks, runner, heard = app
    tasks.export_grid(tmp_path / "bad.png", "seed=1,2", "wobble=1")
    assert heard[-1][:2] == ("error", "Cannot make the grid bad.png") and "wobble" in heard[-1][2]
    tasks.export_grid(tmp_path / "bad.gif", "seed=1,2", "d0=1")
    assert "use a .png" in heard[-1][2] and not runner.pending
    tasks.export_grid(tmp_path / "plot.png", "seed=1,2", "d0=-1,0,1")
    runner.settle()
    assert heard[-1][:2] == ("info", "Exported the grid plot.png (2 × 3)")
    with Image.open(tmp_path / "plot.png") as image:
        assert image.width > 3 * 16 and image.height > 2 * 16
    assert read_request(tmp_path / "plot.png").model_id == "tiny"


def test_variations_land_tile_by_tile_and_one_can_be_used(app):
    doc, _, tasks, runner, _ = app
    doc.set_param("prompt", "Zz", "Prompt")
    changed = []
    tasks.variations_changed.connect(lambda: changed.append(len(tasks.variations)))
    tasks.render_variations(count=3, strength=0.5)
    assert changed == [0] and len(runner.pending) == 3  # one task per tile
    runner.settle()
    assert changed == [0, 1, 2, 3]
    seeds = [r.param("variation_seed") for r, _ in tasks.variations]
    assert len(set(seeds)) == 3 and all(0 <= s <= 2**64 - 1 for s in seeds)
    varied, output = tasks.variations[1]
    assert np.array_equal(output.data, fake_image(varied)) and varied.param("variation_strength") == 0.5
    tasks.use_variation(1)
    runner.settle()
    assert doc.request.latent == tuple(float(v) for v in np.arange(8) + varied.seed)  # the stub's latent
    assert dict(doc.request.params) == {"prompt": "Zz"} and doc.undo.undo_text == "Use variation"


def test_every_variation_is_written_with_its_request_for_the_gallery(app, tmp_path):
    doc, _, tasks, runner, heard = app
    tasks.variations_folder = tmp_path / "renders"
    written = []
    tasks.files_written.connect(lambda source, files, kind: written.append((source, files, kind)))
    tasks.render_variations(count=2, strength=0.4)
    runner.settle()
    assert [(source, kind, len(files)) for source, files, kind in written] == [("variation", "image", 1)] * 2
    for (_, [(path, request)], _), (varied, output) in zip(written, tasks.variations):
        assert path.parent.parent == tmp_path / "renders" and path.suffix == ".png"
        assert f"-v{varied.param('variation_seed')}" in path.name
        assert read_request(path) == varied.with_(model_hash=FAKE_SHA256) and request == varied
        assert np.array_equal(np.asarray(Image.open(path).convert("L")), output.data)
    assert not [h for h in heard if h[0] != "info"]


def test_variations_still_show_when_their_folder_cannot_be_made(app, tmp_path):
    doc, _, tasks, runner, heard = app
    (tmp_path / "file").write_text("not a folder")
    tasks.variations_folder = tmp_path / "file" / "renders"
    written = []
    tasks.files_written.connect(lambda *args: written.append(args))
    tasks.render_variations(count=2)
    runner.settle()
    assert len(tasks.variations) == 2 and not written
    warnings = [h for h in heard if h[0] == "warning"]
    assert len(warnings) == 1 and "not kept in the gallery" in warnings[0][1] and "file" in warnings[0][2]


def test_clearing_variations_stops_those_still_rendering(app):
    doc, _, tasks, runner, heard = app
    tasks.render_variations(count=2)
    tasks.clear_variations()
    runner.settle()
    assert tasks.variations == [] and all(h.cancelled for h in runner.handles)
    assert [m[1] for m in heard] == ["A variation failed: Variations was cancelled"] * 2


def test_encode_an_image_strip_into_the_latent(app, family, tmp_path):
    doc, _, tasks, runner, heard = app
    Image.fromarray(np.full((16, 32), 255, np.uint8)).save(tmp_path / "strip.png")
    doc.set_param("d0", 1.0, "d0")
    tasks.encode_image(tmp_path / "strip.png", "Ab")
    runner.settle()
    images, labels = family.encoded[0]
    assert images.shape == (2, 16, 16) and labels == ["A", "b"]
    assert doc.request.latent == pytest.approx([1.0] * 8) and doc.undo.undo_text == "Encode strip.png"
    # the encoding holds no edits: the direction set before still acts on it, is kept, and the line says so
    assert doc.request.param("d0") == 1.0 and heard[-1][:2] == ("info", "Encoded strip.png: its style is now the "
                                                                        "latent; kept d0")
    assert doc.latent_name("") == "encoded from strip.png"
    (tmp_path / "bad.png").write_text("hello")
    tasks.encode_image(tmp_path / "bad.png", "Ab")
    assert heard[-1][0] == "error" and "bad.png" in heard[-1][2]


def test_a_cancelled_encoding_leaves_the_latent(app, tmp_path):
    doc, _, tasks, runner, heard = app
    Image.fromarray(np.full((16, 32), 255, np.uint8)).save(tmp_path / "strip.png")
    before = doc.request
    tasks.encode_image(tmp_path / "strip.png", "Ab")
    runner.handles[-1].cancel()
    runner.settle()
    assert doc.request == before and heard[-1] == ("info", "Encode strip.png was cancelled: the latent is unchanged",
                                                    "")


def test_an_image_model_does_not_encode_sounds(app, tmp_path):
    doc, _, tasks, runner, heard = app
    tasks.encode_sound(tmp_path / "x.wav")
    assert heard[-1] == ("error", "Cannot encode x.wav", "Tiny tiny does not encode sounds.") and not runner.pending


def test_save_a_latent_with_the_shown_thumbnail(app):
    doc, _, tasks, runner, _ = app
    tasks.preview_finished(doc.request, Output("image", fake_image(doc.request)), {"model_sha256": "a" * 64})
    tasks.save_latent("  ")
    runner.settle()
    saved = doc.document.latents[0]
    assert (saved.name, saved.model_hash, saved.thumbnail_png) == ("seed 0", "a" * 64, b"\x89PNG thumb")
    assert runner.handles[-1].label == "Save latent 'seed 0'"


def test_keyframes_hold_the_latent_that_was_shown(app):
    doc, timeline, tasks, runner, _ = app
    for seed in (1, 2):
        doc.change("Seed", seed=seed)
        tasks.add_keyframe()
    runner.settle()
    assert [k.request.latent[0] for k in timeline.timeline.keyframes] == [1.0, 2.0]


def test_a_video_export_runs_the_timelines_plan(app, tmp_path):
    doc, timeline, tasks, runner, heard = app
    tasks.export_video(tmp_path / "v.mp4")
    assert heard[-1][:2] == ("error", "Cannot export v.mp4") and not runner.pending
    for seed in (1, 2):
        timeline.add_keyframe(doc.request.with_(seed=seed), np.arange(8) + seed)
    timeline.edit_timeline(fps=4)
    done = []
    tasks.export_video(tmp_path / "v.mp4", on_done=done.append)
    handle = runner.handles[-1]
    assert handle.kind == "animation" and handle.label == "Export v.mp4"
    runner.settle()
    assert heard[-1][:2] == ("info", "Exported v.mp4 (8 frames)") and done == [tmp_path / "v.mp4"]


def test_a_new_document_forgets_the_last_render_and_the_variations(app):
    doc, _, tasks, runner, _ = app
    tasks.preview_finished(doc.request, Output("image", fake_image(doc.request)), {})
    tasks.render_variations(count=1)
    runner.settle()
    doc.new()
    assert tasks.last_output is None and tasks.variations == []


def test_a_video_export_takes_a_frame_rate_a_frame_range_and_an_output_size(app, tmp_path):
    from studio.export import OutputSize

    doc, timeline, tasks, runner, heard = app
    for seed in (1, 2):
        timeline.add_keyframe(doc.request.with_(seed=seed), np.arange(8) + seed)
    timeline.edit_timeline(fps=4)  # 8 frames at 4 fps; 16 at 8 fps
    tasks.export_video(tmp_path / "v.mp4", output_size=OutputSize(4, "nearest"), fps=8, frames=(3, 12))
    runner.settle()
    assert heard[-1][:2] == ("info", "Exported v.mp4 (10 frames)")
    assert timeline.timeline.fps == 4  # the project keeps its own rate
    tasks.export_video(tmp_path / "w.mp4", frames=(5, 20))
    assert heard[-1][:2] == ("error", "Cannot export w.mp4") and "outside the timeline's frames 1..8" in heard[-1][2]
