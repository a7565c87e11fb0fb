"""AUTOMATIC1111's prompt editing `[from:to:when]` and alternation `[a|b]` (prompt_schedule.py): schedules for the
examples its prompt_parser publishes and for the rules it states, which text each sampler step uses (its denoiser
counts calls from 0), and renders whose UNet is watched step by step on tiny SD 1.x and SDXL pipelines."""

from __future__ import annotations

import pytest
import torch

from studio.families.stable_diffusion.prompt_schedule import Timeline, prompt_schedule, prompt_timeline


# --- the schedule ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, steps, schedule", [
    # A1111's published examples (modules/prompt_parser.py), at 10 steps
    ("test", 10, [(10, "test")]),
    ("a [b:3]", 10, [(3, "a "), (10, "a b")]),
    ("a [b: 3]", 10, [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", 10, [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", 10, [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", 10, [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", 10, [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", 10, [(10, "a [unbalanced")]),
    ("a [b:.5] c", 10, [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", 10, [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", 4, [(1, "a"), (2, "(b:1.1)"), (3, "a"), (4, "(b:1.1)")]),
    ("[fe|]male", 4, [(1, "female"), (2, "male"), (3, "female"), (4, "male")]),
    ("[fe|||]male", 6, [(1, "female"), (2, "male"), (3, "male"), (4, "male"), (5, "female"), (6, "male")]),
    # the wiki's examples
    ("a [fantasy:cyberpunk:16] landscape", 30, [(16, "a fantasy landscape"), (30, "a cyberpunk landscape")]),
    ("[cat|dog]", 3, [(1, "cat"), (2, "dog"), (3, "cat")]),
    # its rules: "." makes a fraction of the steps (cut down to a step), a whole number is a step, both at most
    # the step count; a step under 1 never draws `from`
    ("[a:b:0.5]", 25, [(12, "a"), (25, "b")]),
    ("[a:b:1.0]", 10, [(10, "a")]),
    ("[a:b:2.0]", 10, [(10, "a")]),
    ("[a:b:1e1]", 20, [(10, "a"), (20, "b")]),
    ("[a:b:99]", 20, [(20, "a")]),
    ("[a:b:0]", 5, [(5, "b")]),
    ("[a:b:-3]", 5, [(5, "b")]),
    ("[a:b:.01]", 5, [(5, "b")]),
    ("[a::3] x [:y:2]", 5, [(2, "a x "), (3, "a x y"), (5, " x y")]),
    ("[a:b:1e999]", 5, [(5, "a")]),  # an endless number is past the last step, not a crash
    # what it reads as text: escapes, a `|` outside brackets, a lone backslash at the end, brackets that are no
    # construct; weights stay for the weight parser
    (r"\[a:b:2\] c", 5, [(5, r"\[a:b:2\] c")]),
    ("a | b [c:d:2]", 5, [(5, "a | b [c:d:2]")]),
    ("a [c:d:2] \\", 5, [(5, "a [c:d:2] \\")]),
    ("a:b, [c:d], (e:1.2) [f:g:2]", 5, [(2, "a:b, [c:d], (e:1.2) f"), (5, "a:b, [c:d], (e:1.2) g")]),
    ("(a [b:c:2]:1.2)", 5, [(2, "(a b:1.2)"), (5, "(a c:1.2)")]),
    ("<lora:x:0.5> [a|b] BREAK c", 2, [(1, "<lora:x:0.5> a BREAK c"), (2, "<lora:x:0.5> b BREAK c")]),
    # A1111's parser reads a group followed at once by an even run of stray brackets as text (checked against it)
    ("[c:d:5]))", 10, [(10, "[c:d:5]))")]),
    ("[c:d:5])", 10, [(5, "c)"), (10, "d)")]),
    ("[c:d:5])))", 10, [(5, "c)))"), (10, "d)))")]),
    ("[c:d:5]:(a)::", 10, [(10, "[c:d:5]:(a)::")]),
    ("[a:[c:d:5]:3]::", 10, [(5, "[a:c:3]::"), (10, "[a:d:3]::")]),
    ("[c|d]))", 2, [(1, "c))"), (2, "d))")]),
])
def test_schedules_as_a1111_makes_them(prompt, steps, schedule):
    assert prompt_schedule(prompt, steps) == schedule


def test_the_comment_example_and_the_old_timelines():
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
              "[: in background:0.25] [shoddy:masterful:0.5]")
    assert prompt_schedule(prompt, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful")]
    # A1111's "old prompt editing timelines": any number under 1 is a fraction, any other a step
    assert prompt_schedule("[a:b:2.0]", 10, old=True) == [(2, "a"), (10, "b")]
    assert prompt_schedule("[a:b:0.5]", 10, old=True) == [(5, "a"), (10, "b")]


def test_each_step_takes_the_entry_a1111s_denoiser_takes():
    """A1111 counts its denoiser's calls from 0 and takes the first entry ending at or after the count."""
    timeline = prompt_timeline("a [fantasy:cyberpunk:16] landscape", "[blurry|dark]", 30)
    texts = [timeline.at(k) for k in range(30)]
    assert [p for p, _ in texts] == ["a fantasy landscape"] * 17 + ["a cyberpunk landscape"] * 13
    assert [n for _, n in texts[:5]] == ["blurry", "blurry", "dark", "blurry", "dark"]
    assert timeline.changes
    plain = prompt_timeline("a cat, (fur:1.2), [faint]", "ugly", 25)
    assert not plain.changes and plain.at(0) == ("a cat, (fur:1.2), [faint]", "ugly")
    assert Timeline(((2, "x"),), ((2, ""),)).at(5) == ("x", "")  # past the end: the first entry, as A1111


def test_deep_and_long_prompts_stay_cheap():
    deep = "[" * 5000 + "a:b:2" + "]" * 5000  # brackets nested past MAX_DEPTH are text: the same text
    assert prompt_schedule(deep, 4) == [(2, "[" * 4999 + "a" + "]" * 4999), (4, "[" * 4999 + "b" + "]" * 4999)]
    many = "[a|b] " * 3000 + "[c:d:3]"
    got = prompt_schedule(many, 4)
    assert [s for s, _ in got] == [1, 2, 3, 4]
    assert got[2][1] == "a " * 3000 + "c" and got[3][1] == "b " * 3000 + "d"


# --- renders ----------------------------------------------------------------------------------------------------

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from conftest import finish  # noqa: E402
from sd_tiny import make_parts, make_pipeline_folder, make_xl_parts, make_xl_pipeline_folder  # noqa: E402
from studio.families.stable_diffusion import family as sd_family  # noqa: E402
from studio.families.stable_diffusion.prompts import pair  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import RenderRequest  # noqa: E402


def watched(model, request):
    """(the output, what the UNet was given at each call: its text states and SDXL's pooled text)."""
    calls = []

    def look(module, args, kwargs):
        added = kwargs.get("added_cond_kwargs") or {}
        calls.append((kwargs["encoder_hidden_states"].clone(),
                      added["text_embeds"].clone() if "text_embeds" in added else None))

    hook = model.network.unet.register_forward_pre_hook(look, with_kwargs=True)
    try:
        out = finish(model.family.render(model, request))[0]
    finally:
        hook.remove()
    return out, calls


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdsched")
    parts = make_parts(0)
    folder = make_pipeline_folder(root / "pipe", parts=parts)
    width = parts[2].config.hidden_size
    (root / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(2, width, generator=torch.Generator().manual_seed(5))},
              str(root / "embeddings" / "inkwash.safetensors"))
    return load_model(resolve(str(folder)))


def sd_request(model, **params):
    return RenderRequest(model_id=model.id, seed=11, width=32, height=32,
                         params={"steps": 5, "sampler": "dpmpp", "guidance": 5.0, **params})


def test_the_unet_gets_each_steps_prompt_and_negative(sd, monkeypatch):
    net = sd.network
    net._texts.clear()
    encoded = []
    real = sd_family.encode_prompt
    monkeypatch.setattr(sd_family, "encode_prompt", lambda te, tok, parsed, *a: encoded.append(parsed) or
                        real(te, tok, parsed, *a))
    out, calls = watched(sd, sd_request(sd, prompt="a [cat:dog:2] photo", negative_prompt="[blurry|dark]"))
    assert len(calls) == 5
    empty = net.text_embeddings("")[0]
    for k, (prompt, negative) in enumerate([("a cat photo", "blurry"), ("a cat photo", "blurry"),
                                            ("a cat photo", "dark"), ("a dog photo", "blurry"),
                                            ("a dog photo", "dark")]):
        want = torch.cat(pair(net.text_embeddings(prompt)[0], net.text_embeddings(negative)[0], empty))
        assert torch.equal(calls[k][0], want), k
    assert len(encoded) == 5  # "a cat photo", "blurry", "", "dark", "a dog photo": each once
    assert out.data.shape == (32, 32, 3)


def test_a_prompt_without_constructs_is_one_conditioning(sd):
    request = sd_request(sd, prompt="a cat, (fur:1.2) [faint]", negative_prompt="ugly")
    _, calls = watched(sd, request)
    net = sd.network
    want = torch.cat(pair(net.text_embeddings("a cat, (fur:1.2) [faint]")[0], net.text_embeddings("ugly")[0],
                          net.text_embeddings("")[0]))
    assert all(torch.equal(states, want) for states, _ in calls)


def test_an_embedding_in_one_branch_is_used_and_reported(sd):
    out, calls = watched(sd, sd_request(sd, prompt="a photo [in inkwash:of a cat:1]", guidance=1.0))
    net = sd.network
    assert torch.equal(calls[0][0], net.text_embeddings("a photo in inkwash")[0])
    assert torch.equal(calls[1][0], calls[0][0]) and torch.equal(calls[2][0], net.text_embeddings("a photo of a cat")[0])
    assert list(out.info["ti_hashes"]) == ["inkwash"]


def test_sdxl_switches_its_pooled_text_too(tmp_path):
    model = load_model(resolve(str(make_xl_pipeline_folder(tmp_path / "xl", make_xl_parts(0)))))
    request = RenderRequest(model_id=model.id, seed=3, width=64, height=64,
                            params={"steps": 3, "sampler": "euler", "guidance": 1.0, "prompt": "[cat|dog]"})
    _, calls = watched(model, request)
    _, cats = watched(model, request.with_params({"prompt": "cat", "steps": 1}))
    xl = model.network.xl
    dog = xl.encode(model.network, "dog")  # (context, pooled, parsed)
    assert torch.equal(calls[0][0], cats[0][0]) and torch.equal(calls[0][1], cats[0][1])  # calls 0, 1: cat
    assert torch.equal(calls[1][0], cats[0][0]) and torch.equal(calls[1][1], cats[0][1])
    assert torch.equal(calls[2][0], dog[0]) and torch.equal(calls[2][1], dog[1])  # call 2: dog
