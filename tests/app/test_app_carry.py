"""What survives a model switch and an encoding (studio.app.carry), the latent library's kinds, pairs and names
(studio.app.document, studio.latent.kinds), and the characters offered for a strip (studio.app.strips); no Qt, no
engine."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from studio.app.carry import encoded_params, fitted_text
from studio.app.document import OpenDocument
from studio.app.models import ModelLibrary
from studio.app.strips import guess_strip_chars
from studio.export import save_image
from studio.project import SavedLatent
from studio.request import RenderRequest

from conftest import make_tiny_audio_package, make_tiny_gan_package, make_tiny_package
from test_app_document import Recorder, placeholder_diffusion


@pytest.fixture
def zoo(tmp_path):
    """tiny (VAE, text), tiny-twin (the same weights under another id), tiny-gan (4 style layers: w of 8, w+ of 32),
    tiny-diffusion (a sampler), tiny-audio (classes)."""
    root = tmp_path / "zoo"
    make_tiny_package(root / "tiny", "tiny", seed=0)
    make_tiny_package(root / "tiny-twin", "tiny-twin", seed=0)
    make_tiny_gan_package(root / "tiny-gan", "tiny-gan", seed=0)
    placeholder_diffusion(root)
    make_tiny_audio_package(root / "tiny-audio", "tiny-audio", seed=0)
    return root


@pytest.fixture
def doc(zoo) -> OpenDocument:
    document = OpenDocument(ModelLibrary([zoo]), rng=random.Random(1))
    document.start("tiny-diffusion")
    return document


# --- switching model ------------------------------------------------------------------------------------------------


def test_a_switch_keeps_what_the_new_model_takes_and_says_what_it_dropped(doc):
    seen = Recorder(doc)
    doc.change("Settings", seed=43, params={"prompt": "Hé yo", "sampler": "euler", "steps": 10, "guidance": 3.0,
                                            "mix_seed": 7, "truncation": 0.8, "z3": 0.5})
    before = doc.request
    assert doc.use_model("tiny-gan")
    request = doc.request
    assert request.model_id == "tiny-gan" and request.seed == 43 and request.latent is None
    # the prompt keeps what glyph models draw (é is dropped, its cell becomes nothing), mixing and ψ still apply
    assert dict(request.params) == {"prompt": "H yo", "mix_seed": 7, "truncation": 0.8}
    level, text, detail = seen.of("message")[-1]
    assert level == "warning"
    assert text == ("Switched to Tiny tiny-gan: kept seed, prompt, mix_seed, truncation; dropped 'é' from the prompt "
                    "(Tiny tiny-gan draws A–Z, a–z, 0–9 and spaces); guidance, sampler, steps (not used by this "
                    "model); z3 (an edit of Tiny diffusion's latent space)")
    assert "sampler: not used by this model" in detail.splitlines()
    assert len(seen.of("message")) == 1 and doc.undo.undo_text == "Use model Tiny tiny-gan"
    doc.undo.undo()  # one step puts everything back
    assert doc.request == before


def test_a_switch_that_drops_nothing_says_so_plainly(doc):
    seen = Recorder(doc)
    doc.use_model("tiny")
    assert seen.of("message")[-1][:2] == ("info", "Switched to Tiny tiny: kept seed, prompt")
    assert doc.request.param("prompt") == "Ab"


def test_a_model_without_text_drops_the_prompt_and_opens_with_its_own_class(doc):
    seen = Recorder(doc)
    doc.change("Prompt", seed=5, params={"prompt": "Zz"})
    doc.use_model("tiny-audio")
    assert doc.request.seed == 5 and "prompt" not in doc.request.params
    assert doc.request.param("label") == doc.entry.parameters.find("label").default
    assert seen.of("message")[-1][1] == ("Switched to Tiny tiny-audio: kept seed; dropped prompt (not used by this "
                                         "model)")


def test_latent_values_and_edits_survive_only_within_one_latent_space(doc):
    doc.use_model("tiny")
    doc.change("Edit", latent=(0.5,) * 8, params={"prompt": "Ab", "d1": 1.5, "z0": -1.0})
    doc.use_model("tiny-twin")  # the same family and weights: the same latent space
    assert doc.request.latent == (0.5,) * 8 and doc.request.param("d1") == 1.5 and doc.request.param("z0") == -1.0
    seen = Recorder(doc)
    doc.use_model("tiny-gan")
    assert doc.request.latent is None and "d1" not in doc.request.params
    text = seen.of("message")[-1][1]
    assert "latent values (they belong to Tiny tiny-twin's latent space)" in text and "d1, z0 (an edit of" in text


def test_a_value_out_of_the_new_range_is_dropped_with_the_reason(doc):
    doc.use_model("tiny-gan")
    doc.change("Mix", params={"prompt": "Ab", "mix_seed": 3, "mix_layer": 4, "truncation": 1.9})
    doc.use_model("tiny")  # the VAE has no style layers; its ψ takes any value
    assert dict(doc.request.params) == {"prompt": "Ab", "mix_seed": 3, "truncation": 1.9}
    assert fitted_text(doc.entry.parameters.find("prompt"), "Añb ") == ("Ab ", "ñ")


# --- encoding keeps the edits that still act --------------------------------------------------------------------------


def test_an_encoding_keeps_mixing_and_directions_and_drops_seed_only_variation(doc):
    doc.use_model("tiny-gan")
    doc.change("Edits", params={"prompt": "Ab", "mix_seed": 9, "mix_layer": 2, "d0": 1.0, "variation_seed": 4,
                                "variation_strength": 0.3, "noise": 0.0})
    carried = encoded_params(doc.request, doc.entry.parameters)
    assert carried.kept == ("d0", "mix_layer", "mix_seed")
    assert [name for name, _ in carried.dropped] == ["variation_seed", "variation_strength"]
    got = doc.use_encoded_latent("Project x.png", np.ones(32), origin="projected from x.png")
    assert got == carried and doc.request.latent == (1.0,) * 32
    assert dict(doc.request.params) == {"prompt": "Ab", "mix_seed": 9, "mix_layer": 2, "d0": 1.0, "noise": 0.0}


# --- the latent library ---------------------------------------------------------------------------------------------


def test_a_gan_interpolates_a_seed_w_with_a_projected_w_plus_without_a_message(doc):
    doc.use_model("tiny-gan")
    w, w_plus = tuple(np.linspace(-1, 1, 8)), tuple(np.linspace(1, -1, 32))
    doc.document.latents.extend([SavedLatent("seed 43", "tiny-gan", "", w),
                                 SavedLatent("projected from my-letters.png", "tiny-gan", "", w_plus),
                                 SavedLatent("glyph style", "tiny", "", (0.0,) * 8)])
    assert doc.usable_latents() == [0, 1] and doc.interpolation_partners(0) == [0, 1]
    assert doc.describe_latent(doc.document.latents[1]) == "w+ (4 × 8 values)"
    seen = Recorder(doc)
    for step in range(26):  # one drag of t
        doc.interpolate_latents(0, 1, step / 25, "slerp", merge="interp:1")
    assert seen.of("message") == []
    assert doc.request.latent == pytest.approx(w_plus, abs=1e-6)
    doc.interpolate_latents(0, 1, 0.0, "lerp", merge="interp:2")
    assert doc.request.latent == pytest.approx(w * 4)  # the w, repeated on every layer
    doc.interpolate_latents(0, 1, 0.3, "lerp", merge="interp:3")
    assert doc.latent_name("") == "interpolated 30 % seed 43→projected from my-letters.png"


def test_one_gesture_says_what_went_wrong_once(doc):
    doc.use_model("tiny")
    doc.document.latents.extend([SavedLatent("a", "tiny", "", (1.0,) * 8), SavedLatent("b", "tiny", "", (1.0,) * 7),
                                 SavedLatent("other", "tiny-gan", "", (1.0,) * 8)])
    assert doc.usable_latents() == [0] and doc.interpolation_partners(0) == [0]
    seen = Recorder(doc)
    for step in range(25):
        doc.interpolate_latents(0, 1, step / 24, merge="interp:7")
    assert len(seen.of("message")) == 1 and seen.of("message")[0][0] == "error"
    for step in range(25):
        doc.interpolate_latents(0, 2, step / 24, merge="interp:8")
    assert len(seen.of("message")) == 2 and seen.of("message")[1][0] == "warning"


def test_saved_latents_are_named_after_their_origin(doc):
    doc.use_model("tiny-gan")
    doc.change("Seed", seed=43)
    assert doc.latent_name("") == "seed 43"
    doc.save_latent("", doc.request, np.zeros(8))
    assert doc.latent_name("") == "seed 43 (2)"  # names stay unique
    doc.use_encoded_latent("Project my-letters.png", np.ones(32), origin="projected from my-letters.png")
    doc.save_latent("", doc.request, np.ones(32))
    doc.save_latent("mine", doc.request, np.ones(32))
    assert [e.name for e in doc.document.latents] == ["seed 43", "projected from my-letters.png", "mine"]
    doc.use_latent(0)  # seed 43's w
    assert doc.latent_name("") == "seed 43 (2)"
    doc.undo.undo()  # the origin goes with the values
    assert doc.request.latent == (1.0,) * 32 and doc.latent_name("") == "projected from my-letters.png (2)"


# --- the characters of a strip ----------------------------------------------------------------------------------------


def test_a_strip_offers_its_own_cells(tmp_path):
    strip = tmp_path / "my-letters.png"
    Image.fromarray(np.full((32, 5 * 32), 255, np.uint8)).save(strip)
    charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    # the prompt fitted to 5 cells, spaces kept (they skip a cell), undrawable characters skip theirs
    assert guess_strip_chars(strip, "Latent Studio", charset).chars == "Laten"
    assert guess_strip_chars(strip, "a b!c", charset).chars == "a b c"
    guess = guess_strip_chars(strip, "Ab", charset)
    assert (guess.chars, guess.cells, guess.source) == ("Ab", 5, "the prompt")
    exported = tmp_path / "exported.png"  # an image this app made: the prompt stored in it, spaces and all
    request = RenderRequest("glyph-gan", params={"prompt": "Hi yo"})
    save_image(exported, np.full((16, 5 * 16), 255, np.uint8), request)
    guess = guess_strip_chars(exported, "Latent", charset)
    assert (guess.chars, guess.cells, guess.source) == ("Hi yo", 5, "the picture's request")
    assert guess_strip_chars(tmp_path / "missing.png", "Latent\nStudio").chars == "Latent"


def test_timeline_keyframes_of_a_w_and_a_w_plus_become_one_kind(doc):
    from studio.app.timeline import TimelineEditor

    timeline = TimelineEditor(doc)
    doc.use_model("tiny-gan")
    w, w_plus = tuple(np.linspace(-1, 1, 8)), tuple(np.linspace(1, -1, 32))
    doc.document.latents.extend([SavedLatent("seed 43", "tiny-gan", "", w),
                                 SavedLatent("projected from x.png", "tiny-gan", "", w_plus)])
    timeline.add_keyframe_from_latent(0)
    timeline.add_keyframe_from_latent(1)  # the w keyframe already there is repeated per layer, in the same step
    keys = doc.document.timeline.keyframes
    assert [k.name for k in keys] == ["seed 43", "projected from x.png"]
    assert keys[0].request.latent == pytest.approx(w * 4) and keys[1].request.latent == pytest.approx(w_plus)
    doc.undo.undo()
    assert [len(k.request.latent) for k in doc.document.timeline.keyframes] == [8]
    seen = Recorder(doc)
    doc.document.latents.append(SavedLatent("odd", "tiny-gan", "", (0.0,) * 5))
    timeline.add_keyframe_from_latent(2)
    assert len(doc.document.timeline.keyframes) == 1 and seen.of("message")[-1][0] == "error"
