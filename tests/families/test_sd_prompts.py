"""AUTOMATIC1111's prompt language (studio/families/stable_diffusion/prompts.py): the bracket parser on the examples
its published rules give, tag removal, chunking at 75 tokens with the comma backtrack, the mean-restoring emphasis and
clip skip on a tiny CLIP, and long prompts through a tiny pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import make_parts, make_pipeline_folder  # noqa: E402
from studio.errors import RequestError  # noqa: E402
from studio.families.stable_diffusion.prompts import (CHUNK, Chunk, ExtraNetwork, Specials, chunk_tokens,  # noqa: E402
                                                      emphasis, empty_chunk, encode_prompt, extra_networks,
                                                      pair, parse_attention, parse_prompt, specials_of)
from studio.library import load_model, resolve  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402

R = 1.1


# --- the bracket parser ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", R), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", R)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", R)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * R * R), (" ", R), ("on", 1.0), (" a ", R), ("hill", 0.5 * R), (", sun, ", R),
      ("sky", R ** 4), (".", R)]),  # the first "(" never closes: everything after it is ×1.1
    ("[faint]", [("faint", 1 / R)]),
    ("[[faint]]", [("faint", 1 / R / R)]),
    ("([mixed])", [("mixed", 1.0)]),  # ×1.1 ÷1.1: A1111 merges it with nothing, the weight is 1 up to rounding
    ("(a:0.5) (b:1.5)", [("a", 0.5), (" ", 1.0), ("b", 1.5)]),
    ("(a (b:2) c)", [("a ", R), ("b", 2 * R), (" c", R)]),
    ("stray) and] closers", [("stray) and] closers", 1.0)]),
    ("a:b, time: 12", [("a:b, time: 12", 1.0)]),  # a colon outside brackets is text
    ("(word: 1.5 )", [("word", 1.5)]),  # spaces around the number are allowed
    (r"a \\ b", [("a \\ b", 1.0)]),
    ("a\\b", [("ab", 1.0)]),  # A1111 drops a lone backslash
    ("", [("", 1.0)]),
])
def test_brackets_weigh_words_as_a1111_does(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12)


def test_break_splits_only_the_capital_word():
    assert parse_attention("a cat BREAK a dog") == [("a cat", 1.0), ("BREAK", -1.0), ("a dog", 1.0)]
    assert parse_attention("(a BREAK b)") == [("a", R), ("BREAK", -R), ("b", R)]  # as A1111: -1 × 1.1
    assert parse_attention("BREAKFAST, break, Break") == [("BREAKFAST, break, Break", 1.0)]


def test_network_tags_are_taken_out_of_the_text():
    text, nets = extra_networks("a <lora:ink-style:0.8> cat, <hypernet:old> (sky) <lora:x:0.5:0.2> <lora:plain>")
    assert text == "a  cat,  (sky)  "
    assert nets == (ExtraNetwork("lora", "ink-style", 0.8), ExtraNetwork("hypernet", "old", 1.0),
                    ExtraNetwork("lora", "x", 0.5, ("0.2",)), ExtraNetwork("lora", "plain", 1.0))
    with pytest.raises(RequestError, match=r"the weight in <lora:x:lots> is not a number") as info:
        extra_networks("<lora:x:lots>")
    assert info.value.field == "prompt"
    assert extra_networks("a <b> c, x < y > z") == ("a <b> c, x < y > z", ())  # not tags


# --- chunks --------------------------------------------------------------------------------------------------------

IDS = Specials(bos=900, eos=901, pad=901, comma=5)


def _chunks(tokens, weights=None, find=None):
    pieces = [("text", 1.0)] if weights is None else [("text", w) for w in weights]
    tokenized = [tokens] if weights is None else [[t] for t in tokens]
    return chunk_tokens(pieces, tokenized, IDS, find)


def test_a_long_prompt_is_cut_into_chunks_of_75_with_bos_and_eos():
    words = list(range(10, 110))  # 100 tokens, no comma
    chunks, count = _chunks(words)
    assert count == 100 and len(chunks) == 2
    assert chunks[0].tokens == [900, *range(10, 85), 901]
    assert chunks[1].tokens == [900, *range(85, 110)] + [901] * 51
    assert all(len(c.tokens) == len(c.weights) == 77 for c in chunks)
    one, n = _chunks([])
    assert n == 0 and [c.tokens for c in one] == [empty_chunk(IDS).tokens]


def test_a_full_chunk_goes_back_to_a_comma_within_20_tokens():
    words = list(range(10, 90))
    words[60] = IDS.comma  # 15 tokens before the end of the chunk: the words after it move on
    chunks, _ = _chunks(words)
    assert chunks[0].tokens == [900, *words[:61]] + [901] * 15
    assert chunks[1].tokens[:20] == [900, *words[61:]] and chunks[1].tokens[20:] == [901] * 57
    words = list(range(10, 90))
    words[50] = IDS.comma  # 25 before the end: too far, the chunk is cut at 75
    chunks, _ = _chunks(words)
    assert chunks[0].tokens == [900, *words[:75], 901]


def test_break_starts_a_new_chunk_and_weights_follow_their_tokens():
    pieces = [("a", 1.5), ("BREAK", -1.0), ("b", 0.5)]
    chunks, count = chunk_tokens(pieces, [[11, 12], [13], [14]], IDS)
    assert [c.tokens[:4] for c in chunks] == [[900, 11, 12, 901], [900, 14, 901, 901]]
    assert chunks[0].weights[:4] == [1.0, 1.5, 1.5, 1.0] and chunks[1].weights[:3] == [1.0, 0.5, 1.0]
    assert count == CHUNK + 1


def test_an_embedding_that_would_not_fit_starts_the_next_chunk():
    class Emb:
        name, vectors = "style", 4

    def find(tokens, i):
        return (Emb(), 2) if tokens[i:i + 2] == [7, 8] else None

    words = list(range(10, 83)) + [7, 8, 30]  # 73 words, then the two tokens of the embedding's name
    chunks, _ = _chunks(words, find=find)
    assert chunks[0].fixes == [] and chunks[1].fixes[0][0] == 0
    assert chunks[1].tokens[:7] == [900, 0, 0, 0, 0, 30, 901]


# --- the text encoder ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    parts = make_parts(0)
    folder = make_pipeline_folder(tmp_path_factory.mktemp("sdp") / "pipe", parts=parts)
    return {"parts": parts, "folder": folder}


@pytest.fixture(scope="module")
def model(tiny):
    return load_model(resolve(str(tiny["folder"])))


def test_emphasis_scales_tokens_then_restores_the_mean(model):
    net = model.network
    tok, text = net.tokenizer, net.text_encoder
    ids = tok("a cat on a mat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        plain = text(ids)[0]
        ours = encode_prompt(text, tok, parse_prompt("a (cat:1.5) on a [mat]", tok))
    w = torch.ones(77)
    w[2], w[5] = 1.5, 1 / 1.1  # BOS, a, cat, on, a, mat
    expected = plain * w[None, :, None]
    expected = expected * (plain.mean() / expected.mean())
    assert torch.allclose(ours, expected, atol=1e-6)
    assert ours.mean().item() == pytest.approx(plain.mean().item(), abs=1e-6)
    assert not torch.allclose(ours, plain, atol=1e-3)  # and the weights did something
    assert torch.equal(emphasis(plain, torch.ones(77)), plain)  # no brackets: CLIP's own output, unchanged
    with torch.inference_mode():
        assert torch.equal(encode_prompt(text, tok, parse_prompt("a cat on a mat", tok)), plain)


def test_clip_skip_2_is_the_layer_before_last_through_the_final_norm(model):
    """Checked against the same CLIP cut down to its first layer: its output (through the final layer norm) is
    what clip skip 2 reads from the two-layer one."""
    from transformers import CLIPTextModel

    net = model.network
    config = net.text_encoder.config.to_dict()
    config["num_hidden_layers"] = 1
    short = CLIPTextModel(type(net.text_encoder.config).from_dict(config)).eval()
    missing, unexpected = short.load_state_dict(net.text_encoder.state_dict(), strict=False)
    assert not missing and unexpected and all(".layers.1." in k for k in unexpected)
    ids = net.tokenizer("a cat on a mat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        ref = short(ids)[0]
    ours, _ = net.text_embeddings("a cat on a mat", 2)
    assert torch.allclose(ours, ref, atol=1e-6)
    last, _ = net.text_embeddings("a cat on a mat", 1)
    assert not torch.allclose(ours, last, atol=1e-3)
    with pytest.raises(RequestError, match=r"clip skip must be a whole number from 1 to 2 .* got 3") as info:
        net.text_embeddings("a cat", 3)
    assert info.value.field == "params.clip_skip"


LONG = ", ".join(f"word{i}" for i in range(40))  # about 120 tokens: two chunks


def request(model, **changes):
    fields = {"seed": 3, "steps": 2, "width": 16, "height": 16, **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model.id, params={k: v for k, v in fields.items() if v is not None}, **core)


def test_a_long_prompt_is_read_whole_and_the_unet_takes_both_lengths(model):
    net = model.network
    parsed = parse_prompt(LONG, net.tokenizer)
    assert len(parsed.chunks) == 2 and parsed.tokens > 77
    cond, _ = net.text_embeddings(LONG)
    short, _ = net.text_embeddings("blurry")
    assert cond.shape == (1, 154, 32) and short.shape == (1, 77, 32)
    padded_cond, padded_uncond = pair(cond, short, net.text_embeddings("")[0])
    assert padded_uncond.shape == (1, 154, 32) and torch.equal(padded_cond, cond)
    assert torch.equal(padded_uncond[:, 77:], net.text_embeddings("")[0])
    # a word past the 77th token changes the picture (it used to be cut), with a short negative and without one
    a = finish(model.family.render(model, request(model, prompt=LONG + ", red", negative_prompt="blurry")))[0]
    b = finish(model.family.render(model, request(model, prompt=LONG + ", blue", negative_prompt="blurry")))[0]
    assert a.data.shape == (16, 16, 3) and not np.array_equal(a.data, b.data)
    assert "note" not in a.info
    c = finish(model.family.render(model, request(model, prompt="blurry", negative_prompt=LONG)))[0]
    assert c.data.shape == (16, 16, 3)
    d = finish(model.family.render(model, request(model, prompt=LONG, guidance=1.0)))[0]
    assert d.data.shape == (16, 16, 3)


def test_brackets_and_clip_skip_change_the_render_and_tags_do_not(model):
    base = finish(model.family.render(model, request(model, prompt="a red cat")))[0].data
    tagged = finish(model.family.render(model, request(model, prompt="a red <hypernet:none:0.5>cat")))[0].data
    weighted = finish(model.family.render(model, request(model, prompt="a (red:1.8) cat")))[0].data
    skipped = finish(model.family.render(model, request(model, prompt="a red cat", clip_skip=2)))[0].data
    assert np.array_equal(base, tagged)  # the tag is gone from the text (its network is the LoRA code's job)
    assert not np.array_equal(base, weighted) and not np.array_equal(base, skipped)
    assert model.table.get("clip_skip").default == 1


def test_a_prompt_of_thousands_of_tokens_is_refused_by_name(model):
    with pytest.raises(RequestError, match="at most 32 chunks") as info:
        parse_prompt("cat " * 3000, model.network.tokenizer)
    assert info.value.field == "prompt"


def test_the_special_tokens_are_clips(model):
    ids = specials_of(model.network.tokenizer)
    assert (ids.bos, ids.eos, ids.pad) == (49406, 49407, 49407)  # SD 1.x pads with EOS, as A1111 does
    assert model.network.tokenizer.convert_ids_to_tokens(ids.comma) == ",</w>"
