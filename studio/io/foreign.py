"""Settings other programs store in the pictures they make, read without running anything and mapped onto a request.

- AUTOMATIC1111 (and Forge, SD.Next, this app): the `parameters` text — a PNG text chunk, or the Exif UserComment of
  a JPEG or WebP: the prompt (any number of lines), an optional "Negative prompt: …" (it may run over lines too),
  then one settings line "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, Model hash: …, Model:
  …", values that hold a comma or a colon quoted as JSON strings (A1111's `parse_generation_parameters`).
- ComfyUI: the `prompt` PNG chunk (the API graph: {node id: {"class_type", "inputs"}}, a link is [node id, slot]),
  else the `workflow` chunk (the editor's graph: "nodes" with "widgets_values" and "inputs" naming link ids,
  "links" as [id, from node, from slot, to node, to slot, type]). The first KSampler / KSamplerAdvanced gives seed,
  steps, cfg, sampler_name, scheduler, denoise; the CLIPTextEncode nodes its `positive` / `negative` inputs link to
  give the prompts; EmptyLatentImage the size; CheckpointLoaderSimple the model.
- InvokeAI: the `invokeai_metadata` chunk (positive_prompt, negative_prompt, seed, steps, cfg_scale, scheduler, width,
  height, model.name), or the older `sd-metadata` (model_weights, image.{prompt, steps, cfg_scale, seed, width,
  height, sampler}).

Everything is bounded before it is parsed: each text at most MAX_METADATA_TEXT characters, JSON at most
MAX_JSON_DEPTH deep, a graph at most MAX_GRAPH_NODES nodes, a prompt at most MAX_PROMPT_CHARS; a value of the wrong
type is listed as not used, never trusted. A damaged chunk is a RequestError naming the file and the chunk.
`map_settings` puts what a model understands onto a request and lists the rest: the sampler and schedule by
A1111's and ComfyUI's names (`studio.io.a1111_names`), the variation seed, the noise source (A1111's "RNG": an
A1111 text without one means its default, GPU; ComfyUI draws its noise on the CPU) where the model offers
`rng`, A1111's eta noise seed delta ("ENSD", which moves the seed of its samplers' per-step noise; an A1111 text
without one means 0) where it offers `ensd`, clip skip, DDIM's η, and the LoRAs (`<lora:name:weight>` in the
prompt, ComfyUI's LoraLoader nodes), each matched by the caller's `find_lora` (name, short hash → the local name)
or reported as "not matched: <lora:…>" and taken out of the prompt.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.errors import RequestError, StudioError
from studio.io.a1111_names import known_schedule, our_sampler
from studio.io.metadata import PARAMETERS_CHUNK, USER_COMMENT_TAG, EXIF_IFD_POINTER, read_user_comment
from studio.limits import MAX_JSON_DEPTH, MAX_METADATA_TEXT, MAX_PROMPT_CHARS, MAX_SIDE, json_depth
from studio.params import ParamTable
from studio.request import MAX_SEED, RenderRequest

MAX_GRAPH_NODES = 10_000  # nodes of one ComfyUI graph (big shared workflows have a few hundred)
MAX_SETTINGS = 200  # settings on one A1111 settings line
MAX_ENSD = 2**31 - 1  # an eta noise seed delta read from a picture (the `ensd` param's own range)
SHOWN_CHARS = 80  # at most this many characters of one unused value are listed

COMFY_PROMPT, COMFY_WORKFLOW = "prompt", "workflow"
INVOKE_CHUNK, INVOKE_LEGACY_CHUNK = "invokeai_metadata", "sd-metadata"

MAX_LORAS = 64  # LoRAs read from one picture
# A1111's extra-network tag: <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (text encoder, UNet), <lora:n:unet=1>
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>")
RNG_NAMES = {"cpu": "cpu", "gpu": "gpu", "nv": "nv"}  # A1111's "RNG" values, lower-cased → our `rng` choices


@dataclass(frozen=True)
class ForeignSettings:
    """What a picture from another tool says made it. `other`: every further setting, as (name, text)."""

    tool: str
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    schedule: str | None = None  # A1111's "Schedule type", ComfyUI's scheduler
    variation_seed: int | None = None
    variation_strength: float | None = None
    clip_skip: int | None = None
    eta: float | None = None  # DDIM's η ("Eta DDIM")
    rng: str | None = None  # the noise source: "cpu", "gpu", "nv" (A1111's RNG)
    ensd: int | None = None  # A1111's eta noise seed delta ("ENSD"); 0 for an A1111 text without it
    loras: tuple[tuple[str, float, str | None], ...] = ()  # (name, weight, short hash or None)
    other: tuple[tuple[str, str], ...] = ()


@dataclass
class Mapped:
    """`request` with what the model understands applied; `used` and `unused` list the settings as "Name: value"."""

    request: RenderRequest
    used: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


# --- reading -----------------------------------------------------------------------------------------------------


def picture_texts(path: str | Path) -> dict[str, str]:
    """The text metadata of a picture: PNG text chunks (Pillow's, capped by studio.io.images), and a JPEG's or
    WebP's Exif UserComment as `parameters`. Reads a regular file only, its size checked before any pixel."""
    from studio.io.images import open_picture

    texts: dict[str, str] = {}
    # Pillow warns of a damaged Exif block as it skips it (on opening a JPEG, and again reading it): it holds nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_picture(path) as image:
            for key, value in {**image.info, **getattr(image, "text", {})}.items():
                if isinstance(key, str) and isinstance(value, str):
                    texts[key] = value
            if PARAMETERS_CHUNK not in texts:
                try:
                    comment = image.getexif().get_ifd(EXIF_IFD_POINTER).get(USER_COMMENT_TAG)
                except Exception:  # Pillow's TIFF reader raises many kinds on a damaged block: there is no comment
                    comment = None
                if isinstance(comment, bytes) and comment:
                    texts[PARAMETERS_CHUNK] = read_user_comment(comment)
                elif isinstance(comment, str) and comment:
                    texts[PARAMETERS_CHUNK] = comment
    for key, value in texts.items():
        if len(value) > MAX_METADATA_TEXT:
            raise RequestError(f"the {key!r} metadata is {len(value):,} characters, over the limit of "
                               f"{MAX_METADATA_TEXT:,}", path, key)
    return texts


def read_foreign_settings(path: str | Path) -> ForeignSettings | None:
    """The settings another tool stored in the picture at `path` (ComfyUI, then InvokeAI, then A1111's
    `parameters`), or None when it holds none. RequestError naming the file and the chunk for damaged metadata."""
    texts = picture_texts(path)
    if COMFY_PROMPT in texts or COMFY_WORKFLOW in texts:
        return parse_comfy(texts.get(COMFY_PROMPT), texts.get(COMFY_WORKFLOW), path)
    if INVOKE_CHUNK in texts:
        return parse_invoke(texts[INVOKE_CHUNK], path)
    if INVOKE_LEGACY_CHUNK in texts:
        return parse_invoke_legacy(texts[INVOKE_LEGACY_CHUNK], path)
    if texts.get(PARAMETERS_CHUNK, "").strip():
        return parse_parameters(texts[PARAMETERS_CHUNK], path)
    return None


def _json(text: str, path: str | Path | None, chunk: str) -> Any:
    if len(text) > MAX_METADATA_TEXT:
        raise RequestError(f"the {chunk!r} metadata is {len(text):,} characters, over the limit of "
                           f"{MAX_METADATA_TEXT:,}", path, chunk)
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(f"the {chunk!r} metadata nests {depth:,} levels deep, over the limit of {MAX_JSON_DEPTH}",
                           path, chunk)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"the {chunk!r} metadata is not valid JSON (line {exc.lineno} column {exc.colno}: "
                           f"{exc.msg})", path, chunk) from None
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the {chunk!r} metadata is not valid JSON ({exc})", path, chunk) from None


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


class _Collector:
    """Typed fields picked from untrusted values; a value of the wrong type goes to `other` with a note."""

    def __init__(self, tool: str):
        self.tool = tool
        self.values: dict[str, Any] = {}
        self.other: list[tuple[str, str]] = []

    def text(self, key: str, name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str) and len(value) <= MAX_PROMPT_CHARS:
            self.values.setdefault(key, value)
        else:
            self.other.append((name, f"{_shown(value)} (not a usable text)"))

    def number(self, key: str, name: str, value: Any, whole: bool, low: float, high: float) -> None:
        if value is None:
            return
        if isinstance(value, str):
            try:
                value = int(value.strip()) if whole else float(value.strip())
            except ValueError:
                pass
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (not whole and isinstance(value, float))
        if whole and isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
            value, ok = int(value), True
        if ok and low <= value <= high:
            self.values.setdefault(key, value if whole else float(value))
        else:
            self.other.append((name, f"{_shown(value)} (not a number in {low:g}..{high:g})"))

    def add(self, name: str, value: Any) -> None:
        if value is not None and value != "":
            self.other.append((name, _shown(value)))

    def settings(self) -> ForeignSettings:
        return ForeignSettings(self.tool, other=tuple(self.other), **self.values)


def lora_tags(prompt: str | None) -> list[tuple[str, float, str]]:
    """The `<lora:name:weight>` tags of a prompt: (name, weight, the tag as written); weight 1 when not a number."""
    found = []
    for match in LORA_TAG.finditer(prompt or ""):
        try:
            weight = float(match.group(2)) if match.group(2) not in (None, "") else 1.0
        except ValueError:
            weight = 1.0
        found.append((match.group(1).strip(), weight, match.group(0)))
        if len(found) >= MAX_LORAS:
            break
    return found


def _hash_list(text: str) -> dict[str, str]:
    """A1111's "Lora hashes" / "TI hashes": "name: hash, name2: hash2" → {name: hash}."""
    out = {}
    for part in text.split(",")[:MAX_LORAS]:
        name, _, short = part.rpartition(":")
        if name.strip() and short.strip():
            out[name.strip()] = short.strip()
    return out


def _size(collect: _Collector, width: Any, height: Any) -> None:
    collect.number("width", "Width", width, True, 1, MAX_SIDE)
    collect.number("height", "Height", height, True, 1, MAX_SIDE)


# --- AUTOMATIC1111 -------------------------------------------------------------------------------------------------

# A1111's re_param_code: a name, then a JSON-quoted value or anything up to the next comma
_SETTING = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def _setting_pairs(line: str) -> list[tuple[str, str]]:
    pairs = []
    for match in _SETTING.finditer(line):
        name, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) > 1:
            try:
                decoded = json.loads(value)
                value = decoded if isinstance(decoded, str) else value
            except ValueError:
                pass
        pairs.append((name, value))
        if len(pairs) > MAX_SETTINGS:
            break
    return pairs


def parse_parameters(text: str, path: str | Path | None = None) -> ForeignSettings:
    """AUTOMATIC1111's `parameters` text → ForeignSettings (as A1111 reads it: the last line is the settings line
    when it holds at least three settings; everything before "Negative prompt:" is the prompt)."""
    if len(text) > MAX_METADATA_TEXT:
        raise RequestError(f"the 'parameters' metadata is {len(text):,} characters, over the limit of "
                           f"{MAX_METADATA_TEXT:,}", path, PARAMETERS_CHUNK)
    *lines, last = text.strip().split("\n") if text.strip() else [""]
    pairs = _setting_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    collect = _Collector("AUTOMATIC1111")
    hashes: dict[str, str] = {}
    collect.text("prompt", "Prompt", "\n".join(prompt))
    if negative:
        collect.text("negative_prompt", "Negative prompt", "\n".join(negative))
    for name, value in pairs:
        key = name.lower()
        if key == "steps":
            collect.number("steps", name, value, True, 1, 10_000)
        elif key == "cfg scale":
            collect.number("guidance", name, value, False, 0, 1000)
        elif key == "seed":
            collect.number("seed", name, value, True, 0, MAX_SEED)
        elif key == "sampler":
            collect.text("sampler", name, value)
        elif key == "size" and (size := _SIZE.match(value)):
            _size(collect, size.group(1), size.group(2))
        elif key == "model":
            collect.text("model", name, value)
        elif key == "schedule type":
            collect.text("schedule", name, value)
        elif key == "variation seed":
            collect.number("variation_seed", name, value, True, 0, MAX_SEED)
        elif key == "variation seed strength":
            collect.number("variation_strength", name, value, False, 0, 1)
        elif key == "clip skip":
            collect.number("clip_skip", name, value, True, 1, 12)
        elif key == "eta ddim":
            collect.number("eta", name, value, False, 0, 1)
        elif key == "ensd":
            collect.number("ensd", name, value, True, 0, MAX_ENSD)
        elif key == "rng" and value.strip().lower() in RNG_NAMES:
            collect.values.setdefault("rng", RNG_NAMES[value.strip().lower()])
        elif key == "lora hashes":
            hashes.update(_hash_list(value))
        elif key == "version" and value.startswith("latent-studio"):
            continue
        else:
            collect.add(name, value)
    if pairs:  # a settings line without "RNG" means A1111's default, its GPU noise; without "ENSD", a delta of 0
        collect.values.setdefault("rng", "gpu")
        collect.values.setdefault("ensd", 0)
    tags = lora_tags(collect.values.get("prompt"))
    collect.values["loras"] = tuple((n, w, hashes.get(n)) for n, w, _ in tags)
    if set(hashes) - {n for n, _, _ in tags}:  # hashes of LoRAs the prompt does not name: shown as they are
        collect.add("Lora hashes", ", ".join(f"{n}: {h}" for n, h in hashes.items()))
    return collect.settings()


# --- ComfyUI -------------------------------------------------------------------------------------------------------

_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")


def parse_comfy(prompt: str | None, workflow: str | None, path: str | Path | None = None) -> ForeignSettings:
    """ComfyUI's `prompt` graph (else its `workflow`) → ForeignSettings from the first KSampler."""
    if prompt is not None and prompt.strip() not in ("", "null"):
        graph = _json(prompt, path, COMFY_PROMPT)
        if not isinstance(graph, dict):
            raise RequestError(f"the 'prompt' metadata is a JSON {type(graph).__name__}, not ComfyUI's graph (an "
                               "object of nodes)", path, COMFY_PROMPT)
        return _comfy_api(graph, path)
    if workflow is None:
        raise RequestError("the ComfyUI metadata is empty", path, COMFY_PROMPT)
    data = _json(workflow, path, COMFY_WORKFLOW)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise RequestError("the 'workflow' metadata has no list of nodes", path, COMFY_WORKFLOW)
    return _comfy_workflow(data, path)


def _check_nodes(count: int, path: str | Path | None, chunk: str) -> None:
    if count > MAX_GRAPH_NODES:
        raise RequestError(f"the {chunk!r} graph has {count:,} nodes, over the limit of {MAX_GRAPH_NODES:,}",
                           path, chunk)


def _comfy_api(graph: dict, path: str | Path | None) -> ForeignSettings:
    _check_nodes(len(graph), path, COMFY_PROMPT)
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict) and isinstance(v.get("inputs", {}), dict)}

    def kind(node: dict) -> str:
        value = node.get("class_type")
        return value if isinstance(value, str) else ""

    def inputs(node: dict) -> dict:
        value = node.get("inputs")
        return value if isinstance(value, dict) else {}

    def linked(value: Any) -> dict | None:  # a link is [node id, output slot]
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)):
            return nodes.get(str(value[0]))
        return None

    def text_of(value: Any, seen: int = 0) -> Any:
        node = linked(value)
        if node is None or seen > 16:
            return None
        own = inputs(node)
        for key in ("text", "text_g", "prompt"):
            if linked(own.get(key)) is not None:
                return text_of(own.get(key), seen + 1)
            if own.get(key) is not None:  # text, or something else that `_Collector.text` lists as unusable
                return own[key]
        for key in ("conditioning", "conditioning_1"):  # a conditioning node in between
            if linked(own.get(key)) is not None:
                return text_of(own.get(key), seen + 1)
        return None

    sampler = next((n for _, n in sorted(nodes.items(), key=lambda kv: _order(kv[0]))
                    if kind(n) in _SAMPLER_NODES), None)
    if sampler is None:
        raise RequestError("the ComfyUI graph has no KSampler node (nothing says how the picture was sampled)",
                           path, COMFY_PROMPT)
    own = inputs(sampler)
    collect = _Collector("ComfyUI")
    collect.text("prompt", "Prompt", text_of(own.get("positive")))
    negative = text_of(own.get("negative"))
    if negative:
        collect.text("negative_prompt", "Negative prompt", negative)
    seed = own.get("noise_seed" if kind(sampler) == "KSamplerAdvanced" else "seed", own.get("seed"))
    if linked(seed) is not None:  # a seed from a primitive node
        seed = next((v for v in inputs(linked(seed) or {}).values() if not isinstance(v, (list, dict))), None)
    collect.number("seed", "Seed", seed, True, 0, MAX_SEED)
    collect.number("steps", "Steps", own.get("steps"), True, 1, 10_000)
    collect.number("guidance", "CFG", own.get("cfg"), False, 0, 1000)
    collect.text("sampler", "Sampler", own.get("sampler_name"))
    collect.text("schedule", "Scheduler", own.get("scheduler"))
    collect.values.setdefault("rng", "cpu")  # ComfyUI draws the initial noise with a CPU generator from the seed
    collect.values.setdefault("ensd", 0)  # and knows no eta noise seed delta
    if own.get("denoise") not in (None, 1, 1.0):
        collect.add("Denoise", own.get("denoise"))
    for name in ("start_at_step", "end_at_step"):
        if name in own and not isinstance(own[name], list):
            collect.add(name, own[name])
    latent = linked(own.get("latent_image"))
    if latent is not None and kind(latent) == "EmptyLatentImage":
        _size(collect, inputs(latent).get("width"), inputs(latent).get("height"))
    elif latent is not None:
        collect.add("Latent image", kind(latent))
    loras: list[tuple[str, float, str | None]] = []
    for node in nodes.values():
        if kind(node) in ("CheckpointLoaderSimple", "CheckpointLoader", "UNETLoader"):
            collect.text("model", "Model", inputs(node).get("ckpt_name", inputs(node).get("unet_name")))
        elif kind(node) in ("LoraLoader", "LoraLoaderModelOnly"):
            file, weight = inputs(node).get("lora_name"), inputs(node).get("strength_model", 1.0)
            if isinstance(file, str) and len(loras) < MAX_LORAS and isinstance(weight, (int, float)) \
                    and not isinstance(weight, bool):
                loras.append((Path(file.replace("\\", "/")).stem, float(weight), None))
            else:
                collect.add("LoRA", file)
    collect.values["loras"] = tuple(loras)
    return collect.settings()


def _order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 62, key)


# the widgets of the editor's nodes, in order (KSampler's second is "control after generate")
_WIDGETS = {
    "KSampler": ("seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", None, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "CLIPTextEncode": ("text",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "CheckpointLoaderSimple": ("ckpt_name",),
}


def _comfy_workflow(data: dict, path: str | Path | None) -> ForeignSettings:
    """The editor's graph rewritten as the API graph (widgets by name, links as [node, slot]) and read as one."""
    nodes, links = data["nodes"], data.get("links")
    _check_nodes(len(nodes), path, COMFY_WORKFLOW)
    origin: dict[int, list] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 5 and all(isinstance(v, int) for v in link[:5]):
            origin[link[0]] = [str(link[1]), link[2]]
        elif isinstance(link, dict) and isinstance(link.get("id"), int):  # the newer object form
            origin[link["id"]] = [str(link.get("origin_id")), link.get("origin_slot", 0)]
    graph: dict[str, dict] = {}
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            continue
        inputs: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        if isinstance(widgets, list):
            for name, value in zip(_WIDGETS.get(node["type"], ()), widgets):
                if name is not None:
                    inputs[name] = value
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and isinstance(slot.get("name"), str) and slot.get("link") in origin:
                inputs[slot["name"]] = origin[slot["link"]]
        graph[str(node.get("id"))] = {"class_type": node["type"], "inputs": inputs}
    return _comfy_api(graph, path)


# --- InvokeAI ------------------------------------------------------------------------------------------------------


def _object(text: str, path: str | Path | None, chunk: str) -> dict:
    data = _json(text, path, chunk)
    if not isinstance(data, dict):
        raise RequestError(f"the {chunk!r} metadata is a JSON {type(data).__name__}, not an object", path, chunk)
    return data


def parse_invoke(text: str, path: str | Path | None = None) -> ForeignSettings:
    """InvokeAI's `invokeai_metadata` chunk (3.x and later) → ForeignSettings."""
    data = _object(text, path, INVOKE_CHUNK)
    collect = _Collector("InvokeAI")
    collect.text("prompt", "Prompt", data.get("positive_prompt"))
    if data.get("negative_prompt"):
        collect.text("negative_prompt", "Negative prompt", data.get("negative_prompt"))
    collect.number("seed", "Seed", data.get("seed"), True, 0, MAX_SEED)
    collect.number("steps", "Steps", data.get("steps"), True, 1, 10_000)
    collect.number("guidance", "CFG scale", data.get("cfg_scale"), False, 0, 1000)
    collect.text("sampler", "Scheduler", data.get("scheduler"))
    _size(collect, data.get("width"), data.get("height"))
    model = data.get("model")
    collect.text("model", "Model", model.get("name", model.get("model_name")) if isinstance(model, dict) else model)
    for key in ("generation_mode", "cfg_rescale_multiplier", "clip_skip", "strength", "vae", "loras"):
        if data.get(key) not in (None, [], ""):
            collect.add(key, data[key])
    return collect.settings()


def parse_invoke_legacy(text: str, path: str | Path | None = None) -> ForeignSettings:
    """InvokeAI's older `sd-metadata` chunk (2.x) → ForeignSettings."""
    data = _object(text, path, INVOKE_LEGACY_CHUNK)
    image = data.get("image")
    if not isinstance(image, dict):
        raise RequestError("the 'sd-metadata' metadata has no 'image' object", path, INVOKE_LEGACY_CHUNK)
    collect = _Collector("InvokeAI")
    prompt = image.get("prompt")
    if isinstance(prompt, list):  # [{"prompt": …, "weight": …}, …]
        parts = [str(p["prompt"]) for p in prompt[:64] if isinstance(p, dict) and isinstance(p.get("prompt"), str)]
        prompt = " ".join(parts) if parts else prompt
    if isinstance(prompt, str) and (neg := re.search(r"\[([^\]]*)\]", prompt)):  # 2.x: [negative words]
        collect.text("negative_prompt", "Negative prompt", neg.group(1).strip())
        prompt = (prompt[:neg.start()] + prompt[neg.end():]).strip()
    collect.text("prompt", "Prompt", prompt)
    collect.number("seed", "Seed", image.get("seed"), True, 0, MAX_SEED)
    collect.number("steps", "Steps", image.get("steps"), True, 1, 10_000)
    collect.number("guidance", "CFG scale", image.get("cfg_scale"), False, 0, 1000)
    collect.text("sampler", "Sampler", image.get("sampler"))
    _size(collect, image.get("width"), image.get("height"))
    collect.text("model", "Model", data.get("model_weights"))
    for key in ("type", "strength", "seamless", "hires_fix"):
        if image.get(key) not in (None, False, ""):
            collect.add(key, image[key])
    return collect.settings()


# --- mapping onto a model ------------------------------------------------------------------------------------------


def match_sampler(name: str, table: ParamTable, schedule: str | None = None) -> str | None:
    """Our sampler that is the same method as another tool's `name` (with its schedule type, if any), if the model
    offers it."""
    spec = table.find("sampler")
    if spec is None:
        return None
    found = our_sampler(name, schedule)
    ours = found[0] if found is not None else name.strip().lower()
    return ours if ours in spec.choice_values() else None


def _karras_param(table: ParamTable) -> tuple[str, Any, Any] | None:
    """How a model says "Karras schedule": (param, value for Karras, value for not), or None if it cannot."""
    spec = table.find("karras")
    if spec is not None:
        return "karras", True, False
    spec = table.find("schedule")
    if spec is not None and "karras" in spec.choice_values():
        return "schedule", "karras", spec.default
    return None


def map_settings(settings: ForeignSettings, request: RenderRequest, table: ParamTable, any_size: bool,
                 model_name: str, find_lora: Callable[[str, str | None], str | None] | None = None) -> Mapped:
    """`request` with every setting the model (`table`: its params; `any_size`: it draws at any size) takes, each
    checked by the model's own spec; the rest listed in `unused` ("Model: sd15.safetensors"). `find_lora(name,
    short hash)` gives the name of the LoRA file here that is that one (by hash first), or None; without it no LoRA
    is matched."""
    mapped = Mapped(request)
    params: dict[str, Any] = {}

    def param(name: str, shown: str, value: Any) -> None:
        if value is None:
            return
        spec = table.find(name)
        if spec is None:
            mapped.unused.append(f"{shown}: {_shown(value)}")
            return
        try:
            params[name] = spec.check(value, name)
        except StudioError as exc:
            mapped.unused.append(f"{shown}: {_shown(value)} ({exc.problem})")
            return
        mapped.used.append(f"{shown}: {_shown(value)}")

    param("prompt", "Prompt", settings.prompt)
    param("negative_prompt", "Negative prompt", settings.negative_prompt)
    param("steps", "Steps", settings.steps)
    param("guidance", "CFG scale", settings.guidance)
    if settings.sampler is not None:
        ours = match_sampler(settings.sampler, table, settings.schedule)
        if ours is None:
            mapped.unused.append(f"Sampler: {_shown(settings.sampler)} (no matching sampler)")
        else:
            param("sampler", "Sampler", ours)
    _map_schedule(settings, table, param, mapped, request)
    if settings.variation_seed is not None and settings.variation_strength:
        param("variation_seed", "Variation seed", settings.variation_seed)
        param("variation_strength", "Variation seed strength", settings.variation_strength)
    if settings.clip_skip is not None and (settings.clip_skip > 1 or table.find("clip_skip") is not None):
        param("clip_skip", "Clip skip", settings.clip_skip)
    if settings.eta is not None:
        param("eta", "Eta DDIM", settings.eta)
    if settings.rng is not None and table.find("rng") is not None:
        param("rng", "RNG", settings.rng)
    if settings.ensd is not None and table.find("ensd") is not None and (settings.ensd or request.params.get("ensd")):
        param("ensd", "ENSD", settings.ensd)  # 0 only to clear the request's own
    if params.get("prompt") is not None and (settings.loras or LORA_TAG.search(params["prompt"])):
        params["prompt"] = _map_loras(settings, params["prompt"], find_lora, mapped)
    else:  # no prompt here to carry them
        mapped.unused.extend(f"not matched: <lora:{n}:{w:g}>" for n, w, _ in settings.loras)
    core: dict[str, Any] = {}
    if settings.seed is not None:
        core.update(seed=settings.seed, latent=None)  # the seed decides the start again
        mapped.used.append(f"Seed: {settings.seed}")
    if settings.width is not None and settings.height is not None:
        shown = f"Size: {settings.width}x{settings.height}"
        if any_size:
            try:
                table.check(request.with_(width=settings.width, height=settings.height))
                core.update(width=settings.width, height=settings.height)
                mapped.used.append(shown)
            except StudioError as exc:
                mapped.unused.append(f"{shown} ({exc.problem})")
        else:
            mapped.unused.append(f"{shown} ({model_name} draws at its own size)")
    if settings.model:
        mapped.unused.append(f"Model: {_shown(settings.model)}")
    mapped.unused.extend(f"{name}: {value}" for name, value in settings.other)
    result = request.with_(**core) if core else request
    if params:
        result = result.with_params(params)
    mapped.request = table.check(result)
    return mapped


def _map_schedule(settings: ForeignSettings, table: ParamTable, param: Callable[[str, str, Any], None],
                  mapped: Mapped, request: RenderRequest) -> None:
    schedule = settings.schedule
    if schedule is None or schedule.strip().lower() in ("automatic", ""):
        return
    how = _karras_param(table)
    if not known_schedule(schedule) or (how is None and schedule.strip().lower() == "karras"):
        mapped.unused.append(f"Schedule type: {_shown(schedule)} (not a schedule this model offers)")
    elif how is not None:
        name, karras, plain = how
        value = karras if schedule.strip().lower() == "karras" else plain
        if value != plain or name in request.params:  # the model's default needs no setting
            param(name, "Schedule type", value)
    # Uniform / Normal on a model without a schedule choice: its own schedule, nothing to set


def _map_loras(settings: ForeignSettings, prompt: str, find_lora: Callable[[str, str | None], str | None] | None,
               mapped: Mapped) -> str:
    """The prompt with each `<lora:…>` tag matched to a LoRA here (renamed to its local name) or taken out and
    reported as "not matched"; ComfyUI's LoRA nodes become tags."""
    hashes = {name: short for name, _, short in settings.loras}
    tags = lora_tags(prompt)
    extra = [(n, w, f"<lora:{n}:{w:g}>") for n, w, _ in settings.loras if n not in {t[0] for t in tags}]
    rest = re.sub(r"[ \t]*" + LORA_TAG.pattern, "", prompt)
    kept = []
    for name, weight, tag in tags + extra:
        local = find_lora(name, hashes.get(name)) if find_lora is not None else None
        if local is None:
            short = f" [{hashes[name]}]" if hashes.get(name) else ""
            mapped.unused.append(f"not matched: {tag}{short}")
        else:
            kept.append(f"<lora:{local}:{weight:g}>")
            mapped.used.append(f"LoRA: {local} ({weight:g})" + (f" for {name}" if local != name else ""))
    rest = re.sub(r"[ \t]{2,}", " ", rest).strip().strip(",").strip()
    return " ".join([rest, *kept]) if kept else rest


def summary(settings: ForeignSettings, mapped: Mapped, model_name: str, name: str) -> tuple[str, str]:
    """The message of one application: (title, detail) — what was used, and the rest as "not used by …"."""
    title = f"Applied {settings.tool} settings from {name}" if mapped.used else \
        f"{name}: none of its {settings.tool} settings apply to {model_name}"
    lines = [f"Used: {', '.join(mapped.used)}" if mapped.used else "Used: nothing"]
    if mapped.unused:
        lines.append(f"Not used by {model_name}: {', '.join(mapped.unused)}")
    return title, "\n".join(lines)

