"""Textual-inversion embeddings (studio/families/stable_diffusion/embeddings.py): the A1111, diffusers and SDXL file
layouts, hostile files refused by name, found by file name in the prompt from settings and beside the model, and the
same prompt states and picture as diffusers' own `load_textual_inversion`."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from conftest import finish  # noqa: E402
from sd_tiny import make_parts, make_pipeline_folder  # noqa: E402
from studio.errors import StudioError, WeightsError  # noqa: E402
from studio.families.stable_diffusion.embeddings import EmbeddingBook, embedding_files, read_vectors  # noqa: E402
from studio.families.stable_diffusion.family import load_parts  # noqa: E402
from studio.families.stable_diffusion.files import find_source  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402
from studio.settings import load_settings, settings_path  # noqa: E402

WIDTH = 32  # the tiny CLIP's


def vectors(n: int, seed: int, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


# --- file layouts --------------------------------------------------------------------------------------------------

def test_the_a1111_diffusers_and_sdxl_layouts_are_read(tmp_path):
    a1111, one, sdxl = vectors(3, 1), vectors(1, 2)[0], vectors(2, 3)
    save_file({"emb_params": a1111}, str(tmp_path / "a.safetensors"))
    save_file({"<cat-toy>": one}, str(tmp_path / "b.safetensors"))  # diffusers: (D,) under its token
    save_file({"clip_l": sdxl, "clip_g": vectors(2, 4, 64)}, str(tmp_path / "c.safetensors"))
    torch.save({"string_to_token": {"*": torch.tensor(265)}, "string_to_param": {"*": torch.nn.Parameter(a1111.half())},
                "name": "old", "step": 3000}, tmp_path / "d.pt")  # A1111's own training output, pickled
    torch.save({"<tok>": vectors(2, 5)}, tmp_path / "e.bin")  # diffusers' learned_embeds.bin
    assert torch.equal(read_vectors(tmp_path / "a.safetensors", WIDTH), a1111)
    assert torch.equal(read_vectors(tmp_path / "b.safetensors", WIDTH), one[None])
    assert torch.equal(read_vectors(tmp_path / "c.safetensors", WIDTH), sdxl)  # the part as wide as this CLIP
    assert torch.equal(read_vectors(tmp_path / "c.safetensors", 64), vectors(2, 4, 64))
    got = read_vectors(tmp_path / "d.pt", WIDTH)
    assert got.dtype == torch.float32 and torch.equal(got, a1111.half().float())
    assert torch.equal(read_vectors(tmp_path / "e.bin", WIDTH), vectors(2, 5))


def _sparse(path, size: int) -> None:
    path.touch()
    os.truncate(path, size)


class NotATensor:  # a pickle of this needs code to load
    pass


@pytest.mark.parametrize("make, message", [
    (lambda p: save_file({"emb_params": vectors(2, 0, 768)}, str(p)),
     "made for a text encoder of width 768; this model's is 32"),
    (lambda p: save_file({"emb_params": vectors(76, 0)}, str(p)), r"1 to 75 vectors, found shape \[76, 32\]"),
    (lambda p: save_file({"emb_params": torch.ones(2, WIDTH, dtype=torch.int32)}, str(p)),
     "expected floating-point vectors"),
    (lambda p: save_file({"a": vectors(1, 0), "b": vectors(1, 1)}, str(p)), r"found 2 \(a, b\)"),
    (lambda p: save_file({"emb_params": torch.full((1, WIDTH), float("nan"))}, str(p)), "not finite"),
    (lambda p: save_file({"emb_params": torch.ones(2, 2, WIDTH)}, str(p)), r"found shape \[2, 2, 32\]"),
    (lambda p: save_file({"clip_g": vectors(1, 0, 64)}, str(p)), "SDXL embedding with no part for this"),
    (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}"), "safetensors"),
    (lambda p: _sparse(p, 100 << 20), "too big for a textual-inversion"),
])
def test_files_that_are_not_embeddings_are_refused_by_name(tmp_path, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(WeightsError, match=message) as info:
        read_vectors(path, WIDTH)
    assert str(path) in str(info.value)


def test_a_pickle_that_needs_code_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": NotATensor()}}, path)
    with pytest.raises(WeightsError, match="needs code to load") as info:
        read_vectors(path, WIDTH)
    assert str(path) in str(info.value)


# --- finding them ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sde")
    parts = make_parts(0)
    return {"root": root, "folder": make_pipeline_folder(root / "pipe", parts=parts)}


def request(model_id, **changes):
    fields = {"seed": 3, "steps": 3, **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model_id, params={k: v for k, v in fields.items() if v is not None}, **core)


def test_embeddings_are_found_by_file_name_beside_the_model_and_in_settings(tiny, tmp_path):
    beside = tiny["root"] / "embeddings"
    beside.mkdir(exist_ok=True)
    save_file({"emb_params": vectors(2, 10)}, str(beside / "inkwash.safetensors"))
    save_file({"emb_params": vectors(1, 11)}, str(beside / "badhands.safetensors"))
    listed = tmp_path / "my embeddings"
    (listed / "sub").mkdir(parents=True)
    save_file({"emb_params": vectors(3, 12)}, str(listed / "sub" / "badhands.safetensors"))  # listed first: wins
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(f'embeddings_folders = ["{listed.as_posix()}"]\n')
    assert load_settings().embeddings_folders == [listed]
    net = load_parts(find_source(tiny["folder"]))
    assert net.embeddings is not None
    assert embedding_files(net.embeddings.folders) == {"badhands": listed / "sub" / "badhands.safetensors",
                                                       "inkwash": beside / "inkwash.safetensors"}
    hidden, parsed = net.text_embeddings("a cat in inkwash, (badhands:1.3)")
    fixes = [(at, e.name, e.vectors) for at, e in parsed.chunks[0].fixes]
    assert fixes == [(3, "inkwash", 2), (6, "badhands", 3)]  # a, cat, in, [2 vectors], ",", [3 vectors]
    assert parsed.chunks[0].weights[6:11] == [1.0, 1.3, 1.3, 1.3, 1.0]  # (BOS first) ",", badhands ×3, EOS
    plain, _ = net.text_embeddings("a cat in inkwash, badhands")
    assert hidden.shape == plain.shape == (1, 77, WIDTH) and not torch.equal(hidden, plain)
    # a file added while the model is loaded is used from the next prompt on; an unknown word stays words
    assert net.text_embeddings("velvet")[1].chunks[0].fixes == []
    save_file({"emb_params": vectors(1, 13)}, str(beside / "velvet.safetensors"))
    assert [e.name for _, e in net.text_embeddings("velvet")[1].chunks[0].fixes] == ["velvet"]
    (beside / "velvet.safetensors").unlink()


def test_a_broken_embedding_fails_the_render_naming_its_file(tiny):
    beside = tiny["root"] / "embeddings"
    beside.mkdir(exist_ok=True)
    save_file({"emb_params": vectors(2, 0, 768)}, str(beside / "wide.safetensors"))
    try:
        net = load_parts(find_source(tiny["folder"]))
        with pytest.raises(StudioError, match="wide.safetensors.*width 768"):
            net.text_embeddings("a wide cat")
        assert net.text_embeddings("a cat")[0].shape == (1, 77, WIDTH)  # prompts without it still work
    finally:
        (beside / "wide.safetensors").unlink()


def test_settings_must_list_folders(tmp_path):
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("embeddings_folders = [1]\n")
    with pytest.raises(StudioError, match="embeddings_folders"):
        load_settings()


# --- against diffusers ---------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:The configuration file of this scheduler")
def test_the_same_states_and_picture_as_diffusers_load_textual_inversion(tiny):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    beside = tiny["root"] / "embeddings"
    beside.mkdir(exist_ok=True)
    path = beside / "mystyle.safetensors"
    save_file({"emb_params": vectors(2, 20) * 0.5}, str(path))
    try:
        model = load_model(resolve(str(tiny["folder"])))
        unet, vae, text = make_parts(0)  # diffusers grows its own copy of the text encoder's vocabulary
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(tiny["folder"] / "tokenizer"), local_files_only=True)
        # DDIM made from the folder's own scheduler config (SD 1.x's PNDM settings), which the app follows
        from diffusers import PNDMScheduler

        from studio.families.stable_diffusion.files import SD1_SCHEDULER

        sched = DDIMScheduler.from_config(PNDMScheduler.from_config(SD1_SCHEDULER).config)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_textual_inversion(str(path), token="mystyle")
        prompt = "a mystyle cat on a hill"
        ref_states, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
        ours, parsed = model.network.text_embeddings(prompt)
        assert [e.name for _, e in parsed.chunks[0].fixes] == ["mystyle"]
        assert torch.allclose(ours, ref_states, atol=1e-6)
        req = request(model.id, prompt=prompt, negative_prompt="blurry", sampler="ddim", eta=0.0, steps=4,
                      guidance=5.0)
        noise = model.family.latent(model, req)[None]
        ref = pipe(prompt, negative_prompt="blurry", num_inference_steps=4, guidance_scale=5.0, latents=noise.clone(),
                   output_type="np", height=16, width=16).images[0]
        out = finish(model.family.render(model, req))[0]
        assert np.abs(out.data.astype(float) - ref * 255).max() <= 2.0
        assert out.info["embeddings"] == {"mystyle": str(path)}
        import hashlib

        assert out.info["ti_hashes"] == {"mystyle": hashlib.sha256(path.read_bytes()).hexdigest()[:12]}
    finally:
        path.unlink()


def test_the_book_matches_the_longest_name(tiny, tmp_path):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tiny["folder"] / "tokenizer"), local_files_only=True)
    save_file({"emb_params": vectors(1, 0)}, str(tmp_path / "ink.safetensors"))
    save_file({"emb_params": vectors(2, 1)}, str(tmp_path / "ink wash.safetensors"))
    book = EmbeddingBook([tmp_path], tokenizer, WIDTH)
    book.refresh()
    tokens = tokenizer("an ink wash, ink", add_special_tokens=False)["input_ids"]
    hits = [book.find(tokens, i) for i in range(len(tokens))]
    found = [(i, h[0].name, h[1]) for i, h in enumerate(hits) if h is not None]
    assert found == [(1, "ink wash", 2), (4, "ink", 1)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_weighted_long_prompts_with_embeddings_on_cuda_in_float16(tiny):
    """The embedding's vectors, the emphasis and the chunks follow the model to the GPU and its dtype."""
    beside = tiny["root"] / "embeddings"
    beside.mkdir(exist_ok=True)
    path = beside / "gpuink.safetensors"
    save_file({"emb_params": vectors(2, 30) * 0.5}, str(path))
    try:
        prompt = "a (gpuink:1.2) cat, " + ", ".join(f"word{i}" for i in range(40))
        gpu = load_model(resolve(str(tiny["folder"])), "cuda", torch.float16)
        states, parsed = gpu.network.text_embeddings(prompt, 2)
        cpu, _ = load_model(resolve(str(tiny["folder"]))).network.text_embeddings(prompt, 2)
        assert states.device.type == "cuda" and states.dtype == torch.float16 and states.shape == (1, 154, WIDTH)
        assert [e.name for _, e in parsed.chunks[0].fixes] == ["gpuink"]
        assert torch.allclose(states.float().cpu(), cpu, atol=2e-2)
        out = finish(gpu.family.render(gpu, request(gpu.id, prompt=prompt, negative_prompt="blurry",
                                                    clip_skip=2)))[0]
        assert out.data.shape == (16, 16, 3)
    finally:
        path.unlink()


def test_a_huge_folder_listed_by_mistake_is_scanned_only_so_far(tmp_path, monkeypatch):
    from studio.families.stable_diffusion import embeddings

    for i in range(6):
        (tmp_path / f"e{i}.safetensors").touch()
    assert len(embedding_files([tmp_path])) == 6
    monkeypatch.setattr(embeddings, "MAX_SCANNED", 4)
    assert embedding_files([tmp_path]) == {}
