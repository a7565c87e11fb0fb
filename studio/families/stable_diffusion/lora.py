"""LoRAs for Stable Diffusion: `.safetensors` files in kohya/AUTOMATIC1111 layout (`lora_unet_…`, `lora_te_…`,
`lora_te1_…`, `lora_te2_…` with `.lora_down.weight` / `.lora_up.weight` / `.alpha`) and in diffusers' layouts (PEFT:
`unet.….lora_A.weight` / `lora_B`, `text_encoder.…`; and diffusers' older `…processor.to_q_lora.down.weight`), for
the UNet and the text encoder(s), several at once, each with its weight. kohya's SDXL LoRAs name the UNet's layers by
the original (SGM) layout, `lora_unet_input_blocks_4_1_…`: those names are read too (lora_xl.py).

How they act: a LoRA never changes the base weights, in memory or on disk. Each patched layer gets one forward hook
that adds Σ weightᵢ · scaleᵢ · up_i(down_i(x)) to the layer's own output (scale = alpha / rank, as kohya and PEFT
define it), which is what diffusers' unfused PEFT layers compute. Switching LoRAs removes the hooks and registers
new ones: the base model is not reloaded, and with no LoRA the network is exactly the base network again
(bit-identical renders). The hooks' tensors live on the model's device in its dtype and are rebuilt when either
changes. The per-step cost is one low-rank product per patched layer.

Where a LoRA is found, by name (`<lora:name:0.8>` in the prompt, or `name:0.8` in the `loras` list): a file
`name.safetensors` (or a pickled `name.pt` / `.bin` / `.ckpt`, read by the weights-only reader only) in a `loras`
folder beside the model (beside its single file, or beside its pipeline folder), in the model's own folder's
`loras`, then in the folders listed as `lora_folders` in settings.toml; each folder is searched with its
subfolders, first match wins. A name is a file name, never a path.

Identity: each LoRA is known by AUTOMATIC1111's hash, which is kohya's: the sha256 of the tensor data of a
safetensors file (the bytes after its header), of the whole file for a pickle. `lora_hashes` (a request param)
records `name: hash` pairs; a LoRA found by name must have the hash the request names (a changed file is said, not
silently used), and one not found by name is looked up by hash. `used_lora_hashes(request)` gives the
`[(name, short hash)]` A1111 writes as "Lora hashes".

Files are untrusted: the header is checked before a byte of data is read, every layer must name a layer of this model
with matching shapes, ranks are bounded (studio.limits), NaN and infinite values are refused, and every error names
the file and the key.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import RequestError, WeightsError
from studio.families.stable_diffusion.lora_xl import original_unet_names
# names, folders, files and hashes: torch-free, so the window lists and matches LoRAs without this module
from studio.io.loras import (SAFE_SUFFIX, SHORT_HASH, _weight, check_name, find_lora,  # noqa: F401 (also here)
                             format_lora_list, lora_folders, lora_hash, parse_lora_list)
from studio.params import CONDITIONS, Kind, ParamSpec
from studio.limits import MAX_LORA_LAYERS, MAX_LORA_RANK, MAX_LORAS, MAX_TENSORS, quote

if TYPE_CHECKING:
    from studio.families.base import LoadedModel
    from studio.request import RenderRequest

PARTS = ("unet", "text_encoder", "text_encoder_2")
FILE_CACHE = 8  # LoRA files kept read (switching back and forth between a few costs no reading)

_TAG = re.compile(r"<lora:([^:>]*)(?::([^:>]*))?((?::[^>]*)?)>", re.IGNORECASE)
_KOHYA_PREFIX = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                 "lora_te2_": "text_encoder_2"}
_VARIANT = re.compile(r"\.(hada_|lokr_|lora_mid\.|dora_scale|oft_|boft_|w_norm|b_norm|lora_magnitude_vector)"
                      r"|\.diff(_b)?$")


# --- names and weights -----------------------------------------------------------------------------------------


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """A1111's `<lora:name>` / `<lora:name:weight>` tags taken out of `prompt`: (the prompt without them, as A1111
    encodes it, [(name, weight)] in order). A tag with separate text-encoder and UNet weights (`<lora:n:0.5:1>`) is
    refused (not supported yet) rather than half-applied."""
    found: list[tuple[str, float]] = []

    def take(match: re.Match) -> str:
        name = check_name(match.group(1), "params.prompt")
        if match.group(3):
            raise RequestError(f"<lora:{name}…>: separate text-encoder and UNet weights are not supported; give one "
                               "weight, as <lora:name:0.8>", field="params.prompt")
        weight = match.group(2)
        found.append((name, 1.0 if weight is None or not weight.strip()
                       else _weight(weight.strip(), f"<lora:{name}>", "params.prompt")))
        return ""

    return _TAG.sub(take, prompt), found


def parse_lora_hashes(text: str) -> dict[str, str]:
    """The `lora_hashes` param, A1111's "Lora hashes" form: "name: hash, other: hash" → {name: lower-case hash}."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, digest = item.rpartition(":")
        digest = digest.strip().lower()
        if not sep or not re.fullmatch(r"[0-9a-f]{8,64}", digest):
            raise RequestError(f"LoRA hashes are 'name: hex hash' pairs, got {quote(item.strip())}",
                               field="params.lora_hashes")
        out[check_name(name, "params.lora_hashes")] = digest
    return out


def lora_specs() -> tuple[ParamSpec, ...]:
    """The family's LoRA parameters (Conditions panel): the list, and the hashes a saved picture records."""
    return (ParamSpec("loras", Kind.TEXT, "LoRAs", default="", render_only=True, group=CONDITIONS,
                      help="LoRAs to apply, as name:weight separated by commas (e.g. \"ink:0.8, paper:0.5\"); a "
                           "name is a .safetensors file in loras/ beside the model or in settings.toml's "
                           "lora_folders. <lora:name:0.8> in the prompt works too"),
            ParamSpec("lora_hashes", Kind.TEXT, "LoRA hashes", default="", render_only=True, group=CONDITIONS,
                      help="Recorded when a picture is saved: name: hash of each LoRA used. A LoRA found by name must "
                           "have this hash; one not found by name is looked up by it. Leave empty when choosing "
                           "LoRAs"))


def requested_loras(request: RenderRequest) -> tuple[str, list[tuple[str, float]]]:
    """(the prompt without LoRA tags, every LoRA the request asks for: the `loras` list, then the prompt's tags);
    a name asked for twice adds its weights, as A1111 applies a LoRA once per mention."""
    prompt, tagged = split_lora_tags(str(request.params.get("prompt", "")))
    listed = parse_lora_list(str(request.params.get("loras", "")))
    merged: OrderedDict[str, float] = OrderedDict()
    for name, weight in (*listed, *tagged):
        merged[name] = merged.get(name, 0.0) + weight
    if len(merged) > MAX_LORAS:
        raise RequestError(f"{len(merged)} LoRAs asked for; at most {MAX_LORAS} are applied at once",
                           field="params.loras")
    return prompt, list(merged.items())


def used_lora_hashes(request: RenderRequest) -> list[tuple[str, str]]:
    """[(name, short hash)] for A1111's "Lora hashes", from the request's `lora_hashes` param (filled from a
    render's info by `with_lora_hashes`)."""
    return [(name, digest[:SHORT_HASH]) for name, digest in
            parse_lora_hashes(str(request.params.get("lora_hashes", ""))).items()]


def with_lora_hashes(request: RenderRequest, info: dict) -> RenderRequest:
    """`request` recording the hashes of the LoRAs a render used (its Output.info["lora_hashes"]), so that the
    saved request names them exactly; unchanged when the render used none."""
    text = info.get("lora_hashes", "")
    if not text or request.params.get("lora_hashes") == text:
        return request
    return request.with_params({"lora_hashes": text})


# --- files -----------------------------------------------------------------------------------------------------


@dataclass
class LoraLayer:
    """One patched layer: `up @ down` times `scale` (alpha / rank, 1 without alpha) is added to it."""

    part: str  # unet, text_encoder, text_encoder_2
    module: str  # its dotted name inside the part (as the model names it)
    down: torch.Tensor
    up: torch.Tensor
    scale: float
    key: str  # the file's key, for messages


@dataclass
class LoraFile:
    path: Path
    sha256: str  # lora_hash
    layout: str  # "kohya" | "diffusers"
    layers: list[LoraLayer] = field(default_factory=list)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a LoRA file, safely: safetensors after a header check, pickles only through the
    weights-only reader (studio.io.checkpoints)."""
    if path.name.lower().endswith(SAFE_SUFFIX):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from studio.files import check_regular
        from studio.io.safetensors import read_header

        header = read_header(path)  # every byte range checked against the file before the data is read
        if len(header.tensors) > MAX_TENSORS:
            raise WeightsError(f"{len(header.tensors):,} tensors is over the limit of {MAX_TENSORS:,}", path)
        check_regular(path, WeightsError, what="LoRA file")
        try:
            return load_file(str(path), device="cpu"), dict(header.metadata)
        except SafetensorError as exc:
            raise WeightsError(f"not a readable safetensors file (truncated or corrupt: {exc})", path) from None
    from studio.io.checkpoints import read_checkpoint

    return read_checkpoint(path), {}


def _peft_alphas(metadata: dict[str, str], path: Path) -> dict[str, float]:
    """diffusers' `lora_adapter_metadata` (PEFT's LoraConfig per part): {part: lora_alpha} when its rank is one for
    all layers (patterns are refused: not supported yet)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        config = json.loads(raw) if len(raw) < 1 << 20 else None
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise WeightsError("its lora_adapter_metadata is not a JSON table", path)
    alphas = {}
    for part in PARTS:
        alpha = config.get(f"{part}.lora_alpha")
        if alpha is None:
            continue
        if config.get(f"{part}.alpha_pattern") or config.get(f"{part}.rank_pattern"):
            raise WeightsError(f"its {part} has per-layer ranks or alphas (rank_pattern / alpha_pattern), which are "
                               "not supported yet", path)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise WeightsError(f"its {part}.lora_alpha is not a number: {quote(alpha)}", path)
        alphas[part] = float(alpha)
    return alphas


def _diffusers_name(key: str) -> tuple[str, str, str] | None:
    """(part, module, role) for a diffusers-layout key (role: down, up or alpha), or None when it is not one."""
    for suffix, role in ((".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora.down.weight", "down"),
                         (".lora.up.weight", "up"), (".lora_linear_layer.down.weight", "down"),
                         (".lora_linear_layer.up.weight", "up"), ("_lora.down.weight", "down"),
                         ("_lora.up.weight", "up"), (".alpha", "alpha")):
        if key.endswith(suffix):
            stem = key[: -len(suffix)]
            break
    else:
        return None
    part = "unet"
    for name in PARTS:
        if stem.startswith(name + "."):
            part, stem = name, stem[len(name) + 1:]
            break
    if suffix.startswith("_lora."):  # diffusers' attention-processor names: attn1.processor.to_q_lora.down
        stem = stem.replace(".processor.", ".")
        if part == "unet":
            stem = stem[:-len("to_out")] + "to_out.0" if stem.endswith("to_out") else stem
        else:
            for a, b in (("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"), ("to_out", "out_proj")):
                stem = stem[: -len(a)] + b if stem.endswith(a) else stem
    return part, stem, role


def parse_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> LoraFile:
    """The layers of a LoRA state dict in either layout (names not yet matched to a model)."""
    if not tensors:
        raise WeightsError("holds no tensors: not a LoRA", path)
    for key in tensors:
        if _VARIANT.search(key):
            raise WeightsError(f"key {quote(key)} belongs to a LoRA variant (LoHa, LoKr, DoRA, OFT, LoCon's mid layer "
                               "or a full diff) that is not supported; only plain LoRAs are", path)
    kohya = any(key.startswith(tuple(_KOHYA_PREFIX)) for key in tensors)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    if kohya:
        for key, value in tensors.items():
            name, _, role = key.partition(".")
            prefix = next((p for p in _KOHYA_PREFIX if name.startswith(p)), None)
            roles = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}
            if prefix is None or role not in roles:
                raise WeightsError(f"key {quote(key)} is not a kohya LoRA key (lora_unet_… / lora_te_… with "
                                   ".lora_down.weight, .lora_up.weight or .alpha)", path)
            groups.setdefault((_KOHYA_PREFIX[prefix], name[len(prefix):]), {"key": key})[roles[role]] = value
        layout = "kohya"
        alphas: dict[str, float] = {}
    else:
        for key, value in tensors.items():
            found = _diffusers_name(key)
            if found is None:
                raise WeightsError(f"key {quote(key)} is neither a kohya LoRA key (lora_unet_…, lora_te_…) nor a "
                                   "diffusers one (….lora_A.weight / .lora_B.weight)", path)
            part, module, role = found
            groups.setdefault((part, module), {"key": key})[role] = value
        layout = "diffusers"
        alphas = _peft_alphas(metadata, path)
    if len(groups) > MAX_LORA_LAYERS:
        raise WeightsError(f"patches {len(groups):,} layers, over the limit of {MAX_LORA_LAYERS:,}", path)
    out = LoraFile(path, "", layout)
    for (part, module), group in groups.items():
        key = group["key"]
        if "down" not in group or "up" not in group:
            raise WeightsError(f"layer {quote(module)} ({part}) has {'no down' if 'down' not in group else 'no up'} "
                               "weight", path)
        down, up = group["down"], group["up"]
        for t, what in ((down, "down"), (up, "up")):
            if not t.is_floating_point() or t.ndim not in (2, 4):
                raise WeightsError(f"the {what} weight of {quote(module)} must be a 2-D or 4-D float tensor, got "
                                   f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}", path)
        rank = down.shape[0]
        if not 1 <= rank <= MAX_LORA_RANK or up.shape[1] != rank:
            raise WeightsError(f"layer {quote(module)} ({part}): rank {rank} (up {list(up.shape)}, down "
                               f"{list(down.shape)}) must match and be at most {MAX_LORA_RANK}", path)
        alpha = group.get("alpha")
        if alpha is not None:
            if alpha.numel() != 1 or not alpha.is_floating_point() and alpha.dtype not in (torch.int32, torch.int64):
                raise WeightsError(f"the alpha of {quote(module)} must be one number", path)
            alpha_value = float(alpha.reshape(()).item())
        else:
            alpha_value = alphas.get(part, float(rank))
        if not math.isfinite(alpha_value):
            raise WeightsError(f"the alpha of {quote(module)} is not finite", path)
        out.layers.append(LoraLayer(part, module, down, up, alpha_value / rank, key))
    from studio.io.weights import check_finite

    check_finite({f"{layer.module} ({layer.part}) {role}": t for layer in out.layers
                  for role, t in (("down", layer.down), ("up", layer.up))}, path)
    return out


_files: OrderedDict[tuple[str, int, int, int, int], LoraFile] = OrderedDict()
_files_lock = threading.Lock()


def read_lora(path: Path) -> LoraFile:
    """A LoRA file read and checked (not yet matched to a model); the last FILE_CACHE files are kept."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise WeightsError(f"cannot read the LoRA: {exc.strerror or exc}", path) from None
    key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    with _files_lock:
        if key in _files:
            _files.move_to_end(key)
            return _files[key]
    tensors, metadata = _read(path)
    lora = parse_lora(path, tensors, metadata)
    lora.sha256 = lora_hash(path)
    with _files_lock:
        _files[key] = lora
        while len(_files) > FILE_CACHE:
            _files.popitem(last=False)
    return lora


# --- applying ----------------------------------------------------------------------------------------------------


def _index(part: nn.Module, name: str) -> dict[str, tuple[str, nn.Module]]:
    """The part's patchable layers (Linear, Conv2d) by every spelling a LoRA file uses: dotted, kohya's underscored,
    and for a text encoder with and without transformers 4's `text_model.` prefix."""
    out: dict[str, tuple[str, nn.Module]] = {}
    original = original_unet_names(part) if name == "unet" else {}  # kohya's SDXL names (lora_xl.py)
    for module_name, module in part.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        spellings = {module_name} | ({original[module_name]} if module_name in original else set())
        if name != "unet":
            bare = module_name.removeprefix("text_model.")
            spellings |= {bare, f"text_model.{bare}"}
        for s in list(spellings):
            spellings.add(s.replace(".", "_"))
        for s in spellings:
            out.setdefault(s, (module_name, module))
    return out


class _Patch:
    """The forward hook of one layer: adds Σ scale · up(down(x)) for every LoRA on it."""

    def __init__(self, module: nn.Module, terms: list[tuple[torch.Tensor, torch.Tensor, float]]):
        self.terms = terms
        self.conv = isinstance(module, nn.Conv2d)
        if self.conv:
            conv = module
            assert isinstance(conv, nn.Conv2d)
            self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        extra = None
        for down, up, scale in self.terms:
            if self.conv:
                h = F.conv2d(F.conv2d(x, down, stride=self.stride, padding=self.padding, dilation=self.dilation), up)
            else:
                h = F.linear(F.linear(x, down), up)
            h = h * scale
            extra = h if extra is None else extra + h
        return output if extra is None else output + extra


def _fitted(layer: LoraLayer, module: nn.Module, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's down and up weights in the shapes its base layer takes (a 1×1 conv LoRA on a Linear squeezed);
    WeightsError when they do not fit it."""
    down, up = layer.down, layer.up
    if isinstance(module, nn.Linear):
        if down.ndim == 4 and down.shape[2:] == (1, 1) and up.ndim == 4 and up.shape[2:] == (1, 1):
            down, up = down[:, :, 0, 0], up[:, :, 0, 0]
        ok = down.ndim == 2 and up.ndim == 2 and down.shape[1] == module.in_features \
            and up.shape[0] == module.out_features
        want = f"down [r, {module.in_features}], up [{module.out_features}, r]"
    else:
        assert isinstance(module, nn.Conv2d)
        if down.ndim == 2:
            down, up = down[:, :, None, None], up[:, :, None, None]
        k = tuple(module.kernel_size)
        ok = module.groups == 1 and down.ndim == 4 and up.ndim == 4 and down.shape[1] == module.in_channels \
            and tuple(down.shape[2:]) in (k, (1, 1)) and up.shape[0] == module.out_channels \
            and tuple(up.shape[2:]) == (1, 1) and (tuple(down.shape[2:]) == k or k == (1, 1))
        want = f"down [r, {module.in_channels}, {k[0]}, {k[1]}], up [{module.out_channels}, r, 1, 1]"
    if not ok:
        raise WeightsError(f"layer {quote(layer.key)} does not fit this model's {layer.module} (down "
                           f"{list(layer.down.shape)}, up {list(layer.up.shape)}; it takes {want}): the LoRA is for "
                           "another model type", path)
    return down, up


@dataclass
class _Active:
    key: tuple
    handles: list = field(default_factory=list)
    modules: int = 0


def apply_loras(net: nn.Module, loras: list[tuple[LoraFile, float]], device: torch.device,
                dtype: torch.dtype) -> int:
    """Make `net` (an SDNetwork) compute with exactly these LoRAs and weights (none: the base network): the
    previous hooks are removed and new ones registered, on `device` in `dtype`; nothing is done when the set, the
    device and the dtype are unchanged. Cached prompt embeddings are dropped when the set changes. Returns the number
    of layers patched. A LoRA that does not fit raises WeightsError naming its file, and leaves no LoRA applied."""
    key = (tuple((lora.path, lora.sha256, weight) for lora, weight in loras), str(device), dtype)
    active: _Active | None = getattr(net, "_lora_active", None)
    if active is not None and active.key == key:
        return active.modules
    remove_loras(net)
    if not loras:
        return 0
    parts = {name: getattr(net, name, None) for name in PARTS}
    xl = getattr(net, "xl", None)
    if parts["text_encoder_2"] is None and xl is not None:  # SDXL's second encoder (sdxl.py)
        parts["text_encoder_2"] = getattr(xl, "text_encoder_2", None)
    indexes: dict[str, dict[str, tuple[str, nn.Module]]] = {}
    terms: dict[int, tuple[nn.Module, list]] = {}
    for lora, weight in loras:
        for layer in lora.layers:
            part = parts.get(layer.part)
            if part is None:
                raise WeightsError(f"it patches a {layer.part.replace('_', ' ')} this model does not have (key "
                                   f"{quote(layer.key)}): the LoRA is for another model type (SDXL has two text "
                                   "encoders)", lora.path)
            index = indexes.setdefault(layer.part, _index(part, layer.part))
            found = index.get(layer.module)
            if found is None:
                hint = " (an original-layout name, input_blocks…/middle_block…/output_blocks…, that this UNet " \
                       "does not have)" if re.match(r"(input|output|middle)_blocks?", layer.module) else \
                    ": the LoRA is for another model type"
                raise WeightsError(f"key {quote(layer.key)} names no layer of this model's "
                                   f"{layer.part.replace('_', ' ')}{hint}", lora.path)
            module = found[1]
            down, up = _fitted(layer, module, lora.path)
            terms.setdefault(id(module), (module, []))[1].append(
                (down.to(device, dtype), up.to(device, dtype), layer.scale * weight))
    state = _Active(key)
    for module, module_terms in terms.values():
        state.handles.append(module.register_forward_hook(_Patch(module, module_terms)))
    state.modules = len(terms)
    net._lora_active = state  # type: ignore[assignment]
    _drop_texts(net)
    return state.modules


def remove_loras(net: nn.Module) -> None:
    """Back to the base network: every LoRA hook removed (the base weights were never changed)."""
    active: _Active | None = getattr(net, "_lora_active", None)
    if active is None:
        return
    for handle in active.handles:
        handle.remove()
    net._lora_active = None  # type: ignore[assignment]
    _drop_texts(net)


def _drop_texts(net: nn.Module) -> None:
    """Prompt embeddings cached before the LoRAs changed (SDXL's two-encoder cache too) are stale."""
    for holder in (net, getattr(net, "xl", None)):
        texts = getattr(holder, "_texts", None)
        if texts is not None:
            texts.clear()


def prepare(model: LoadedModel, request: RenderRequest) -> tuple[str, dict[str, Any]]:
    """The render hook: apply the LoRAs `request` asks for (its `loras` list and its prompt's tags) to the model's
    network, and return (the prompt without LoRA tags, what to add to the output's info: `loras` and
    `lora_hashes` when any were used)."""
    used: list[tuple[LoraFile, float]] = []
    names: list[tuple[str, str]] = []
    try:
        prompt, asked = requested_loras(request)
        recorded = parse_lora_hashes(str(request.params.get("lora_hashes", "")))
        folders = lora_folders(model) if asked else []
        for name, weight in asked:
            digest = recorded.get(name, "")
            path = find_lora(name, folders, digest)
            lora = read_lora(path)
            if digest and not lora.sha256.startswith(digest):
                raise RequestError(f"LoRA {name!r} ({path}) has hash {lora.sha256[:SHORT_HASH]}, but this request was "
                                   f"made with {digest[:SHORT_HASH]}: the file has changed, or another has that name",
                                   field="params.lora_hashes")
            used.append((lora, weight))
            names.append((name, lora.sha256))
        apply_loras(model.network, used, model.device, model.dtype)
    except BaseException:
        remove_loras(model.network)  # a failed request leaves the base network, not the previous request's LoRAs
        raise
    info: dict[str, Any] = {}
    if used:
        info["loras"] = format_lora_list(asked)
        info["lora_hashes"] = ", ".join(f"{name}: {digest[:SHORT_HASH]}" for name, digest in names)
    return prompt, info
