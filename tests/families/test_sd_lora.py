"""LoRAs on Stable Diffusion (studio.families.stable_diffusion.lora): tiny LoRA files written here in kohya/A1111 and
diffusers (PEFT) layouts for a tiny pipeline, applied by name from the prompt or the `loras` list, checked against the
same weights merged into the base model and against diffusers' own `load_lora_weights` (when PEFT is installed);
switching and removing LoRAs without reloading (bit-identical base renders); hashes A1111's way; hostile files."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from conftest import finish  # noqa: E402
from sd_tiny import make_parts, make_pipeline_folder  # noqa: E402
from studio.errors import RequestError, WeightsError  # noqa: E402
from studio.families.stable_diffusion import lora as L  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import CORE_FIELDS, RenderRequest  # noqa: E402

PROMPT = "a photo of a cat"


# --- tiny LoRA files ---------------------------------------------------------------------------------------------


def lora_layers(parts, seed: int, rank: int = 4, unet: bool = True, text: bool = True):
    """{(part, module): (down, up, alpha)} for the tiny model's attention, feed-forward and projection layers
    (proj_in / proj_out are 1×1 convolutions in SD 1.x), random and large enough to change the picture."""
    unet_net, _, text_net = parts
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for part, net, wanted in (("unet", unet_net, unet), ("text_encoder", text_net, text)):
        if not wanted:
            continue
        for name, module in net.named_modules():
            if part == "unet" and not name.endswith(("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
                                                     "ff.net.2")):
                continue
            if part == "text_encoder" and not name.endswith(("q_proj", "v_proj", "out_proj", "fc1")):
                continue
            if isinstance(module, torch.nn.Linear):
                down = torch.randn(rank, module.in_features, generator=gen) * 0.3
                up = torch.randn(module.out_features, rank, generator=gen) * 0.3
            else:
                down = torch.randn(rank, module.in_channels, 1, 1, generator=gen) * 0.3
                up = torch.randn(module.out_channels, rank, 1, 1, generator=gen) * 0.3
            out[(part, name)] = (down, up, float(rank) / 2)  # alpha: scale 0.5
    return out


def kohya_tensors(layers):
    """kohya/A1111 names (lora_unet_… / lora_te_text_model_… in underscores, as diffusers' converter reads them)."""
    tensors = {}
    for (part, name), (down, up, alpha) in layers.items():
        stem = ("lora_unet_" + name if part == "unet" else "lora_te_text_model_" + name.removeprefix("text_model."))
        stem = stem.replace(".", "_")
        tensors[f"{stem}.lora_down.weight"] = down
        tensors[f"{stem}.lora_up.weight"] = up
        tensors[f"{stem}.alpha"] = torch.tensor(alpha)
    return tensors


def peft_tensors(layers):
    """diffusers' PEFT layout (unet.….lora_A.weight / lora_B, text_encoder.…); the alpha goes in the metadata."""
    tensors = {}
    for (part, name), (down, up, _) in layers.items():
        tensors[f"{part}.{name}.lora_A.weight"] = down
        tensors[f"{part}.{name}.lora_B.weight"] = up
    alpha = next(iter(layers.values()))[2]
    rank = next(iter(layers.values()))[0].shape[0]
    meta = {f"{p}.{k}": v for p in ("unet", "text_encoder") for k, v in (("r", rank), ("lora_alpha", alpha),
                                                                          ("alpha_pattern", {}),
                                                                          ("rank_pattern", {}))}
    for p in ("unet", "text_encoder"):  # PEFT's LoraConfig, as diffusers' save_lora_weights writes it
        meta[f"{p}.target_modules"] = sorted(name for part, name in layers if part == p)
    return tensors, {"format": "pt", "lora_adapter_metadata": json.dumps(meta)}


def save(path, tensors, metadata=None):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def merged_parts(layers_and_weights):
    """Fresh tiny parts with W += weight · alpha/rank · up @ down merged in: what a LoRA means, computed apart."""
    parts = make_parts(0)
    unet, _, text = parts
    with torch.no_grad():
        for layers, weight in layers_and_weights:
            for (part, name), (down, up, alpha) in layers.items():
                module = dict((unet if part == "unet" else text).named_modules())[name]
                delta = (up.flatten(1) @ down.flatten(1)) * (alpha / down.shape[0]) * weight
                module.weight += delta.reshape(module.weight.shape)
    return parts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdlora")
    parts = make_parts(0)
    folder = make_pipeline_folder(root / "tiny-pipe", parts=parts)
    a = lora_layers(parts, 1)
    b = lora_layers(parts, 2, rank=2, text=False)
    loras = root / "loras"  # beside the pipeline folder: found by name
    save(loras / "ink.safetensors", kohya_tensors(a))
    tensors, meta = peft_tensors(a)
    save(loras / "ink-peft.safetensors", tensors, meta)
    save(loras / "sub" / "paper.safetensors", kohya_tensors(b))
    return {"root": root, "folder": folder, "a": a, "b": b, "loras": loras}


@pytest.fixture(scope="module")
def model(tiny):
    return load_model(resolve(str(tiny["folder"])))


def request(model, **changes):
    fields = {"seed": 3, "prompt": PROMPT, "steps": 4, "sampler": "ddim", "guidance": 5.0, **changes}
    core = {name: fields.pop(name) for name in CORE_FIELDS if name in fields}
    return RenderRequest(model_id=model.id, params={k: v for k, v in fields.items() if v is not None}, **core)


def render(model, **changes):
    return finish(model.family.render(model, request(model, **changes)))[0]


def diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


# --- prompt tags and the list ------------------------------------------------------------------------------------


def test_prompt_tags_are_taken_out_as_a1111_does():
    assert L.split_lora_tags("a cat <lora:ink:0.8>, <LORA:paper> at night") == \
        ("a cat ,  at night", [("ink", 0.8), ("paper", 1.0)])
    assert L.split_lora_tags("no tags (here:1.2)") == ("no tags (here:1.2)", [])
    assert L.split_lora_tags("<lora:my style v2:-0.5>") == ("", [("my style v2", -0.5)])
    for bad, match in (("<lora:../../etc/passwd:1>", "not a file name"), ("<lora:ink:lots>", "must be a number"),
                       ("<lora:ink:0.5:1>", "separate text-encoder and UNet"), ("<lora::1>", "needs a name"),
                       ("<lora:ink:1e9>", "between")):
        with pytest.raises(RequestError, match=match) as info:
            L.split_lora_tags(bad)
        assert info.value.field == "params.prompt"


def test_the_lora_list_and_the_hashes_param():
    assert L.parse_lora_list("ink:0.8, paper , my style: -1") == [("ink", 0.8), ("paper", 1.0), ("my style", -1.0)]
    assert L.format_lora_list([("ink", 0.8), ("paper", 1.0)]) == "ink:0.8, paper:1"
    assert L.parse_lora_hashes("ink: ABCDEF012345, paper: 0123456789ab") == {"ink": "abcdef012345",
                                                                            "paper": "0123456789ab"}
    with pytest.raises(RequestError, match="name: hex hash"):
        L.parse_lora_hashes("ink: not-hex")
    with pytest.raises(RequestError, match="not a file name"):
        L.parse_lora_list("sub/ink:1")
    req = RenderRequest(model_id="m", params={"prompt": "x <lora:ink:0.5>", "loras": "ink:0.3, paper:1"})
    prompt, asked = L.requested_loras(req)
    assert prompt == "x " and asked == [("ink", pytest.approx(0.8)), ("paper", 1.0)]
    many = ", ".join(f"l{i}" for i in range(L.MAX_LORAS + 1))
    with pytest.raises(RequestError, match="at most"):
        L.requested_loras(RenderRequest(model_id="m", params={"loras": many}))


def test_the_specs_are_in_the_conditions_panel(model):
    from studio.params import CONDITIONS, Kind

    for name in ("loras", "lora_hashes"):
        spec = model.table.get(name)
        assert spec is not None and spec.kind is Kind.TEXT and spec.group == CONDITIONS and spec.render_only
    assert "loras/ beside the model" in model.table.get("loras").help


# --- the pictures ------------------------------------------------------------------------------------------------


def test_a_lora_is_what_its_weights_merged_into_the_model_draw(tiny, model, tmp_path):
    """Both layouts, several LoRAs with weights: the render equals the base model with W += w·α/r·up@down merged in,
    built apart (a pipeline folder of the merged parts, loaded with no LoRA)."""
    merged = load_model(resolve(str(make_pipeline_folder(tmp_path / "merged", parts=merged_parts(
        [(tiny["a"], 0.8), (tiny["b"], -0.6)])))))
    want = render(merged)
    base = render(model)
    assert diff(want.data, base.data) > 10  # the LoRAs matter
    kohya = render(model, prompt=f"{PROMPT}<lora:ink:0.8>", loras="paper:-0.6")
    assert diff(kohya.data, want.data) <= 2
    peft = render(model, loras="ink-peft:0.8, paper:-0.6")
    assert diff(peft.data, want.data) <= 2
    assert kohya.info["loras"] == "paper:-0.6, ink:0.8"
    names = [pair.split(": ")[0] for pair in kohya.info["lora_hashes"].split(", ")]
    assert names == ["paper", "ink"]


def test_removing_and_switching_loras_keeps_the_base_exact(tiny, model):
    """No reload, base weights untouched: the base render after LoRAs is bit-identical to the one before."""
    net = model.network
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    base = render(model).data
    with_ink = render(model, loras="ink:1").data
    with_paper = render(model, loras="paper:1").data
    assert diff(with_ink, base) > 0 and diff(with_paper, with_ink) > 0
    again = render(model).data
    assert np.array_equal(again, base)
    assert model.network is net and all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    assert np.array_equal(render(model, loras="ink:1").data, with_ink)  # and back again: the same picture
    render(model)
    # a text-encoder-only change re-encodes the prompt (the cached embedding is not reused)
    net.text_embeddings(PROMPT)
    L.apply_loras(net, [(L.read_lora(tiny["loras"] / "ink.safetensors"), 1.0)], model.device, model.dtype)
    assert PROMPT not in net._texts
    L.remove_loras(net)
    assert not any(m._forward_hooks for m in net.modules())


def test_matches_diffusers_load_lora_weights(tiny, model):
    """diffusers' own loading (PEFT) of the same files, two adapters with weights, and fused: within 2/255."""
    pytest.importorskip("peft")
    import json

    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

    config = json.loads((tiny["folder"] / "scheduler" / "scheduler_config.json").read_text())

    def pipeline():
        unet, vae, text = make_parts(0)
        sched = DDIMScheduler.from_config(PNDMScheduler.from_config(config).config)  # the folder's, as the app's DDIM
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=model.network.tokenizer, unet=unet,
                                       scheduler=sched, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    noise = model.family.latent(model, request(model))[None]

    def draw(pipe):
        image = pipe(PROMPT, num_inference_steps=4, guidance_scale=5.0, latents=noise.clone(), output_type="np",
                     height=16, width=16).images[0]
        return (image * 255).round().astype(np.uint8)

    # the PEFT file (UNet and text encoder) and a kohya file (UNet: diffusers 0.42 renames a kohya text encoder's
    # keys to text_model.…, which transformers 5's CLIPTextModel no longer has, so it cannot load one; the kohya
    # text-encoder path is checked against the merged weights above)
    pipe = pipeline()
    pipe.load_lora_weights(str(tiny["loras"] / "ink-peft.safetensors"), adapter_name="a")
    pipe.load_lora_weights(str(tiny["loras"] / "sub" / "paper.safetensors"), adapter_name="b")
    pipe.set_adapters(["a", "b"], adapter_weights=[0.8, -0.6])
    ref = draw(pipe)
    assert diff(draw(pipeline()), ref) > 10  # diffusers applied them
    assert diff(render(model, loras="ink-peft:0.8, paper:-0.6").data, ref) <= 2
    assert diff(render(model, loras="ink:0.8, paper:-0.6").data, ref) <= 2  # the same weights in kohya's layout
    pipe = pipeline()
    pipe.load_lora_weights(str(tiny["loras"] / "ink-peft.safetensors"))
    pipe.fuse_lora(lora_scale=0.7)
    assert diff(render(model, loras="ink:0.7").data, draw(pipe)) <= 2


# --- finding, hashing, recording ---------------------------------------------------------------------------------


def test_hashes_are_a1111s_and_recorded_in_the_request(tiny, model):
    path = tiny["loras"] / "ink.safetensors"
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert L.lora_hash(path) == hashlib.sha256(data[8 + header:]).hexdigest()  # kohya's / A1111's "addnet" hash
    out = render(model, loras="ink:1")
    assert out.info["lora_hashes"] == f"ink: {L.lora_hash(path)[:12]}"
    req = L.with_lora_hashes(request(model, loras="ink:1"), out.info)
    assert L.used_lora_hashes(req) == [("ink", L.lora_hash(path)[:12])]
    assert L.with_lora_hashes(request(model), render(model).info) == request(model)
    # a recorded hash that does not match the file found by that name is said, not used
    with pytest.raises(RequestError, match="the file has changed") as info:
        render(model, loras="ink:1", lora_hashes="ink: 0123456789ab")
    assert str(path) in str(info.value)
    # a name not found is looked up by its hash (an A1111 picture names the file differently)
    moved = render(model, loras="renamed-ink:1", lora_hashes=f"renamed-ink: {L.lora_hash(path)[:12]}")
    assert np.array_equal(moved.data, out.data)


def test_loras_are_found_in_settings_folders_and_missing_ones_are_named(tiny, model, tmp_path):
    from studio.settings import load_settings, settings_path

    with pytest.raises(RequestError, match="no LoRA named 'elsewhere'") as info:
        render(model, loras="elsewhere")
    assert str(tiny["loras"]) in str(info.value) and "lora_folders" in str(info.value)
    other = tmp_path / "my loras"
    other.mkdir()
    shutil.copy(tiny["loras"] / "ink.safetensors", other / "elsewhere.safetensors")
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(f"lora_folders = [{json.dumps(str(other))}]\n")
    assert load_settings().lora_folders == [other]
    assert np.array_equal(render(model, loras="elsewhere").data, render(model, loras="ink").data)


def test_a_pickled_lora_goes_through_the_weights_only_reader(tiny, model, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save(kohya_tensors(tiny["a"]), folder / "ink.pt")
    lora = L.read_lora(L.find_lora("ink", [folder]))
    assert lora.layout == "kohya" and len(lora.layers) == len(tiny["a"])
    assert lora.sha256 == hashlib.sha256((folder / "ink.pt").read_bytes()).hexdigest()

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"lora_unet_x.lora_down.weight": Payload()}, folder / "evil.pt")
    with pytest.raises(WeightsError, match="safe loading refuses; it was not executed") as info:
        L.read_lora(folder / "evil.pt")
    assert "evil.pt" in str(info.value)


# --- hostile and foreign files -----------------------------------------------------------------------------------


def bad_lora(tmp_path, model, tensors, metadata=None):
    path = save(tmp_path / "bad.safetensors", tensors, metadata)
    loaded = L.read_lora(path)
    L.apply_loras(model.network, [(loaded, 1.0)], model.device, model.dtype)


def test_hostile_and_foreign_loras_are_refused_naming_file_and_key(tiny, model, tmp_path, monkeypatch):
    with pytest.raises(RequestError, match="no LoRA named"):  # a failed request leaves the base network
        render(model, loras="ink:1, nowhere:1")
    assert not any(m._forward_hooks for m in model.network.modules())
    good = kohya_tensors(tiny["a"])
    key = next(k for k in good if k.endswith("to_q.lora_down.weight"))
    cases = [
        ({**good, key: torch.full_like(good[key], float("nan"))}, "NaN"),
        ({**good, key: torch.zeros(4, 7)}, "does not fit this model's"),
        ({**good, key.replace("to_q", "to_zz"): good[key],
          key.replace("to_q", "to_zz").replace("lora_down", "lora_up"): good[key.replace("lora_down", "lora_up")]},
         "names no layer"),
        ({"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(4, 32),
          "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(32, 4)},
         "text encoder 2 this model does not have"),
        ({"lora_unet_input_blocks_9_1_proj_in.lora_down.weight": torch.zeros(4, 32),  # the tiny UNet has 0…5
          "lora_unet_input_blocks_9_1_proj_in.lora_up.weight": torch.zeros(32, 4)}, "original-layout name"),
        ({**good, key.replace("lora_down.weight", "hada_w1_a"): torch.zeros(2)}, "not supported"),
        ({key: good[key]}, "no up weight"),
        ({"some.other.weight": torch.zeros(2)}, "neither a kohya LoRA key"),
        ({**good, key: good[key].to(torch.int32)}, "float tensor"),
    ]
    for tensors, match in cases:
        with pytest.raises(WeightsError, match=match) as info:
            bad_lora(tmp_path, model, tensors)
        assert "bad.safetensors" in str(info.value), match
        assert not any(m._forward_hooks for m in model.network.modules()), match  # nothing half-applied
    monkeypatch.setattr(L, "MAX_LORA_RANK", 3)
    with pytest.raises(WeightsError, match="at most 3"):
        bad_lora(tmp_path, model, good)
    monkeypatch.setattr(L, "MAX_LORA_LAYERS", 5)
    with pytest.raises(WeightsError, match="over the limit of 5"):
        bad_lora(tmp_path, model, good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((tiny["loras"] / "ink.safetensors").read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated"):
        L.read_lora(truncated)
    tensors, meta = peft_tensors(tiny["a"])
    meta["lora_adapter_metadata"] = json.dumps({"unet.lora_alpha": 2, "unet.rank_pattern": {"x": 8}})
    with pytest.raises(WeightsError, match="rank_pattern"):
        bad_lora(tmp_path, model, tensors, meta)


@pytest.mark.gpu
def test_loras_render_on_cuda_in_float16(tiny):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = load_model(resolve(str(tiny["folder"])), "cuda", torch.float16)
    base = render(gpu)
    assert diff(render(gpu, loras="ink:0.8").data, base) > 0
    assert np.array_equal(render(gpu).data, base)
