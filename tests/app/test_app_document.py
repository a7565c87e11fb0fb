"""The open document of the app core (studio.app.document): the request as undoable steps, seeds, render history,
the latent library, image-to-image, files; driven with no Qt and no engine (renders are what `render_wanted` asks
for, results are fed back by hand)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from studio.app.document import DEFAULT_STRENGTH, OpenDocument
from studio.app.models import ModelLibrary
from studio.export import save_image
from studio.io.images import decode_init_image
from studio.project import Document, SavedLatent, load_document

from conftest import TINY_ALPHABET


def placeholder_diffusion(root):
    """A diffusion package whose weights are a placeholder: image-to-image fitting needs only the manifest."""
    import torch

    from studio.io.package import write_package

    manifest = {
        "format": 1, "id": "tiny-diffusion", "name": "Tiny diffusion", "family": "diffusion", "version": "0.0.1",
        "license": "CC0-1.0", "description": "a placeholder package",
        "output": {"kind": "image", "width": 32, "height": 32, "channels": 1},
        "latent": {"shape": [1, 32, 32], "prior": "normal"},
        "conditions": {"kind": "text", "alphabet": TINY_ALPHABET, "default": "Ab"},
        "architecture": {"ink_on_paper": True, "base": 8, "mults": [1, 2]},
        "training": {"quality": {"note": "untrained"}},
    }
    write_package(root / "tiny-diffusion", manifest, {"placeholder": torch.zeros(1)})


class Recorder:
    """Every listener of a document, recorded in order as (name, args)."""

    NAMES = ("request_changed", "model_changed", "render_wanted", "latents_changed", "history_changed",
             "document_changed", "seed_mode_changed", "opened", "message")

    def __init__(self, doc: OpenDocument):
        self.events: list[tuple[str, tuple]] = []
        for name in self.NAMES:
            getattr(doc, name).connect(lambda *args, _n=name: self.events.append((_n, args)))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[tuple]:
        return [args for n, args in self.events if n == name]

    def clear(self) -> None:
        self.events.clear()


@pytest.fixture
def doc(models_dir) -> OpenDocument:
    models = ModelLibrary([models_dir])
    document = OpenDocument(models, rng=random.Random(1))
    document.start("tiny")
    return document


@pytest.fixture
def seen(doc) -> Recorder:
    return Recorder(doc)


def test_start_shows_the_model_and_asks_for_a_render(models_dir):
    doc = OpenDocument(ModelLibrary([models_dir]))
    seen = Recorder(doc)
    doc.start("tiny")
    assert doc.request.model_id == "tiny" and doc.request.seed == 0 and doc.request.param("prompt") == "Ab"
    assert seen.names() == ["model_changed", "request_changed", "render_wanted"]
    assert seen.of("model_changed")[0][0].id == "tiny" and doc.undo.count == 0 and not doc.modified


def test_start_falls_back_to_a_usable_model_and_says_when_there_is_none(models_dir, tmp_path):
    doc = OpenDocument(ModelLibrary([models_dir]))
    doc.start("not-installed")
    assert doc.request.model_id in ("tiny", "tiny-plain")
    empty = OpenDocument(ModelLibrary([tmp_path / "none"]))
    seen = Recorder(empty)
    empty.start()
    assert empty.request is None and seen.of("message")[0][:2] == ("warning", "No usable model is installed")


def test_every_change_is_one_undoable_step_that_renders(doc, seen):
    start = doc.request
    doc.set_param("d0", 1.5, "d0")
    doc.change("Seed 42", seed=42)
    assert doc.request.seed == 42 and doc.request.param("d0") == 1.5
    assert seen.of("render_wanted")[-1] == (doc.request,) and doc.modified
    assert doc.undo.undo_text == "Seed 42"
    doc.undo.undo()
    assert doc.request.seed == start.seed and doc.request.param("d0") == 1.5
    assert seen.of("render_wanted")[-1] == (doc.request,)  # an undone step renders too
    doc.undo.undo()
    assert doc.request == start and not doc.modified
    doc.undo.redo()
    doc.undo.redo()
    assert doc.request.seed == 42


def test_a_drag_is_one_step_and_an_unchanged_request_none(doc, seen):
    start = doc.request
    for value in (0.1, 0.2, 0.5, 0.9):
        doc.set_param("d1", value, "drag", merge="d1:7")
    assert len(seen.of("document_changed")) == 1  # the title changes once, not at every frame of the drag
    doc.set_param("d1", 1.2, "next drag", merge="d1:8")
    assert doc.undo.count == 2
    doc.change("Same seed", seed=start.seed)  # no change: no step
    assert doc.undo.count == 2
    doc.undo.undo()
    assert doc.request.param("d1") == 0.9
    doc.undo.undo()
    assert doc.request == start


def test_a_value_the_model_does_not_take_is_reported_and_changes_nothing(doc, seen):
    start = doc.request
    doc.set_param("d0", "far", "d0")
    doc.change("Seed", seed=-1)
    doc.set_param("mix_seed", -5, "Mix seed")
    assert doc.request == start and doc.undo.count == 0
    levels = [args[0] for args in seen.of("message")]
    assert levels == ["error", "error", "error"] and "d0" in seen.of("message")[0][1]


def test_set_param_none_unsets_and_values_are_normalised(doc):
    doc.set_param("mix_seed", 5.0, "Mix seed")
    assert doc.request.param("mix_seed") == 5 and isinstance(doc.request.param("mix_seed"), int)
    doc.set_param("mix_seed", None, "Mix seed")
    assert "mix_seed" not in doc.request.params


def test_variation_seeds_take_the_whole_64_bit_range(doc):
    doc.set_param("variation_seed", 2**64 - 1, "Variation seed")
    assert doc.request.param("variation_seed") == 2**64 - 1
    assert 0 <= doc.draw_seed() <= 2**64 - 1


def test_switching_models_is_undoable_and_unknown_models_are_refused(doc, seen):
    assert doc.use_model("tiny-plain")
    assert doc.request.model_id == "tiny-plain" and doc.entry.id == "tiny-plain"
    assert "prompt" not in doc.request.params  # the unconditional model takes no prompt
    assert doc.undo.undo_text == "Use model Tiny tiny-plain"
    doc.undo.undo()
    assert doc.request.model_id == "tiny" and doc.entry.id == "tiny"
    assert not doc.use_model("nope") and seen.of("message")[-1][:2] == ("error", "Cannot use model nope")


def test_seed_modes(doc, seen):
    doc.change("Seed", seed=10)
    doc.next_seed()
    assert doc.request.seed == 10  # fixed
    doc.set_seed_mode("increment")
    doc.next_seed()
    assert doc.request.seed == 11
    doc.change("Seed", seed=2**64 - 1)
    doc.next_seed()
    assert doc.request.seed == 0  # it wraps around
    doc.set_seed_mode("random")
    doc.next_seed()
    assert doc.request.seed != 0 and doc.request.latent is None
    assert seen.of("seed_mode_changed") == [("increment",), ("random",)]
    with pytest.raises(ValueError):
        doc.set_seed_mode("sideways")


def test_history_has_one_entry_per_undo_step_and_restores(doc, seen):
    first = doc.request
    doc.add_history(first, 0.01, b"\x89PNG one")
    for value in (0.3, 0.6):  # a drag: its renders replace each other
        doc.set_param("d0", value, "drag", merge="d0:1")
        doc.add_history(doc.request, 0.02)
    doc.change("Seed", seed=5)
    doc.add_history(doc.request, 0.03)
    doc.add_history(doc.request, 0.04)  # the same step rendered again
    history = doc.document.history
    assert [h.request for h in history] == [first, first.with_param("d0", 0.6), first.with_params({"d0": 0.6})
                                            .with_(seed=5)]
    assert history[0].thumbnail_png == b"\x89PNG one" and history[-1].seconds == 0.04
    assert len(seen.of("history_changed")) == 5
    revision = doc.revision
    doc.restore_history(0)
    assert doc.request == first and doc.undo.undo_text == "Restore render" and doc.revision > revision
    doc.undo.undo()
    assert doc.request.seed == 5


def test_a_render_records_the_model_used_and_the_folder_it_came_from(doc, tmp_path):
    from conftest import make_tiny_package

    doc.note_render(doc.request, {"model_sha256": "a" * 64, "model_name": "Tiny tiny"})
    assert [(r.id, r.sha256, r.folder) for r in doc.document.models] == [("tiny", "a" * 64, "")]
    make_tiny_package(tmp_path / "more" / "more", "more", seed=2)
    doc.models.add_model_folder(tmp_path / "more")
    assert doc.use_model("more")
    doc.note_render(doc.request, {"model_sha256": "b" * 64})
    assert [(r.id, r.folder) for r in doc.document.models] == [("tiny", ""), ("more", str(tmp_path / "more" / "more"))]


# --- the latent library ---------------------------------------------------------------------------------------------


def test_save_use_and_interpolate_latents(doc, seen):
    doc.change("Prompt", params={"prompt": "Zz", "d0": 1.0})
    doc.save_latent("", doc.request, np.arange(8), "c" * 64, b"thumb")
    doc.save_latent("two", doc.request.with_(seed=3), np.arange(8) + 2.0)
    one, two = doc.document.latents
    assert (one.name, one.model_hash, one.thumbnail_png, two.name) == ("seed 0", "c" * 64, b"thumb", "two")
    assert one.latent == tuple(float(v) for v in range(8)) and len(seen.of("latents_changed")) == 2
    assert doc.undo.undo_text == "Save latent 'two'"
    doc.use_latent(0)
    # a computed latent replaces the seed and the edits, and keeps what renders around it (the prompt)
    assert doc.request.latent == one.latent and dict(doc.request.params) == {"prompt": "Zz"}
    doc.interpolate_latents(0, 1, 0.5, "lerp", merge="t:1")
    assert doc.request.latent == pytest.approx([v + 1.0 for v in range(8)])
    doc.interpolate_latents(0, 1, 1.0, "slerp", merge="t:1")
    assert doc.request.latent == pytest.approx(two.latent)
    doc.undo.undo()  # the interpolation drag
    doc.undo.undo()  # use latent
    doc.undo.undo()  # the second save
    assert [e.name for e in doc.document.latents] == ["seed 0"]
    doc.remove_latent(0)
    assert doc.document.latents == [] and doc.undo.undo_text == "Remove latent 'seed 0'"
    doc.undo.undo()
    assert [e.name for e in doc.document.latents] == ["seed 0"]


def test_a_latent_of_another_model_is_refused(doc, seen):
    doc.save_latent("tiny one", doc.request, np.zeros(8))
    doc.use_model("tiny-plain")
    doc.use_latent(0)
    assert seen.of("message")[-1][0] == "warning" and "tiny" in seen.of("message")[-1][1]
    assert doc.request.latent is None


def test_bad_interpolation_is_reported(doc, seen):
    doc.document.latents.extend([SavedLatent("a", "tiny", "", (1.0,) * 8), SavedLatent("b", "tiny", "", (1.0,) * 7)])
    doc.interpolate_latents(0, 1, 0.5)
    assert seen.of("message")[-1][0] == "error" and "interpolate" in seen.of("message")[-1][1]


# --- image to image -------------------------------------------------------------------------------------------------


def test_an_init_image_is_refused_by_a_model_without_image_to_image(doc, seen, tmp_path):
    assert not doc.set_init_image(np.zeros((8, 8), np.uint8))
    assert seen.of("message")[-1][1] == "Tiny tiny cannot start from an image"


def test_an_init_image_is_fitted_and_refitted_when_the_prompt_changes(tmp_path):
    root = tmp_path / "models"
    placeholder_diffusion(root)
    doc = OpenDocument(ModelLibrary([root]))
    doc.start("tiny-diffusion")
    picture = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (32, 1))
    assert doc.set_init_image(picture, "ramp")
    assert doc.request.param("strength") == DEFAULT_STRENGTH and doc.undo.undo_text == "Init image ramp"
    before = decode_init_image(doc.request.param("init_image")).shape
    doc.set_param("prompt", "Abcd", "Prompt")  # a wider sheet: the original is fitted again, in the same step
    after = decode_init_image(doc.request.param("init_image")).shape
    assert after[1] > before[1] and doc.undo.count == 2
    doc.clear_init_image()
    assert "init_image" not in doc.request.params and "strength" not in doc.request.params
    doc.undo.undo()
    assert decode_init_image(doc.request.param("init_image")).shape == after


def test_an_unreadable_init_image_is_reported(tmp_path):
    root = tmp_path / "models"
    placeholder_diffusion(root)
    doc = OpenDocument(ModelLibrary([root]))
    doc.start("tiny-diffusion")
    seen = Recorder(doc)
    (tmp_path / "x.png").write_text("not a picture")
    assert not doc.set_init_image(tmp_path / "x.png")
    assert seen.of("message")[-1][1] == "Cannot use x.png as the init image"


# --- files ----------------------------------------------------------------------------------------------------------


def test_restore_from_an_exported_file(doc, seen, tmp_path):
    wanted = doc.request.with_params({"d1": 0.5, "prompt": "Zz"}).with_(seed=31337)
    save_image(tmp_path / "made.png", np.zeros((16, 16), np.uint8), wanted)
    assert doc.restore_from_file(tmp_path / "made.png")
    assert doc.request == wanted and doc.undo.undo_text == "Restore made.png"
    other = wanted.with_(model_id="elsewhere")
    save_image(tmp_path / "other.png", np.zeros((16, 16), np.uint8), other)
    assert not doc.restore_from_file(tmp_path / "other.png") and "not installed" in seen.of("message")[-1][1]
    (tmp_path / "plain.png").write_bytes(b"")
    assert not doc.restore_from_file(tmp_path / "plain.png") and seen.of("message")[-1][0] == "error"


def test_save_open_and_new(doc, seen, tmp_path, models_dir):
    doc.set_param("d0", 0.75, "d0")
    doc.save_latent("kept", doc.request, np.ones(8))
    assert doc.modified and doc.display_name == "Untitled"
    with pytest.raises(ValueError):
        doc.save()
    assert doc.save(tmp_path / "poster")
    assert doc.path == tmp_path / "poster.lstudio" and not doc.modified and doc.display_name == "poster.lstudio"
    assert seen.of("message")[-1][:2] == ("info", "Saved poster.lstudio")
    on_disk = load_document(doc.path)
    assert on_disk.request == doc.request and [e.name for e in on_disk.latents] == ["kept"]

    other = OpenDocument(ModelLibrary([models_dir]))
    heard = Recorder(other)
    assert other.open(doc.path)
    assert other.request == doc.request and not other.modified and other.undo.count == 0
    assert heard.names()[-1] == "opened" and heard.of("render_wanted") == [(doc.request,)]
    assert [e.latent for e in other.document.latents] == [e.latent for e in doc.document.latents]
    other.new()
    assert other.path is None and other.request.param("d0") is None and other.document.latents == []
    assert not other.modified and heard.names()[-1] == "opened"


def test_a_broken_project_is_reported_and_the_document_kept(doc, seen, tmp_path):
    broken = tmp_path / "broken.lstudio"
    broken.write_text("{not json")
    before = doc.request
    assert not doc.open(broken)
    assert seen.of("message")[-1][0] == "error" and "broken.lstudio" in seen.of("message")[-1][2]
    assert doc.request == before


def test_a_recovered_document_is_unsaved_and_its_model_folders_are_scanned(doc, tmp_path):
    from conftest import make_tiny_package
    from studio.project import ModelRef

    make_tiny_package(tmp_path / "elsewhere" / "far", "far", seed=9)
    assert doc.models.entry_for("far") is None
    document = Document(doc.request.with_(model_id="far"),
                        models=[ModelRef("far", folder=str(tmp_path / "elsewhere" / "far"))])
    doc.adopt(document, None, modified=True)
    assert doc.modified and doc.entry is not None and doc.entry.id == "far"
    revision = doc.revision
    doc.change("Seed", seed=3)
    assert doc.revision == revision + 1
