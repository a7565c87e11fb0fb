"""Image export with the request inside, and reading pictures. PNG: text chunks `parameters` (AUTOMATIC1111's format)
and `latent-studio` (the full RenderRequest as JSON). JPEG and WebP: `parameters` as the Exif UserComment (in the Exif
sub-IFD, as AUTOMATIC1111 writes it) and the request as XMP (a JPEG's split over extended-XMP segments when it is over
one); how each is laid out is `studio.io.metadata`. Pictures are read through `studio.io.images.open_picture`: regular
files only, their size checked before any pixel is decoded."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from studio import __version__
from studio.errors import ExportError, RequestError
from studio.io.a1111_names import a1111_sampler
from studio.io.atomic import atomic_path
from studio.io.images import open_picture
from studio.limits import QUOTE_CHARS
from studio.export.scale import OutputSize
from studio.io.metadata import checked_request_text, image_save_options, stored_image_request_text
from studio.request import RenderRequest

log = logging.getLogger(__name__)

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
EXPORT_SIZE = "Export size"  # the `parameters` setting that records an export's scale (not part of the request)


# Params the A1111 text shows in their own places (the rest go under "Edits")
_OWN_PLACES = ("prompt", "negative_prompt", "steps", "sampler", "guidance", "label", "init_image", "strength", "eta",
               "variation_seed", "variation_strength", "rng", "ensd", "clip_skip", "vae", "karras", "schedule", "loras",
               "lora_hashes", "mask")  # pictures (base64 PNGs) stay in the stored request, out of the text
# our noise sources → A1111's "RNG" (our own draw is torch's CPU generator seeded with the seed: A1111's "CPU")
_RNG_NAMES = {"ours": "CPU", "cpu": "CPU", "nv": "NV", "gpu": "GPU"}
_A1111_NOISE = ("cpu", "gpu", "nv")  # the sources that take "ENSD" (A1111 writes it for Euler a; we whenever set)


def parameters_text(request: RenderRequest, size: tuple[int, int] | None, model_name: str = "",
                    model_sha256: str = "", extra: Sequence[tuple[str, Any]] = (),
                    used: Mapping[str, Any] | None = None, info: Mapping[str, Any] | None = None) -> str:
    """AUTOMATIC1111's `parameters` text: the prompt line (left out when there is no prompt), an optional negative
    line, then the settings line in A1111's order and names (Steps, Sampler, Schedule type, CFG scale, Seed, Size,
    Model hash, Model, VAE, Variation seed, Variation seed strength, Denoising strength, Clip skip, ENSD, Lora
    hashes, TI hashes, RNG, Eta DDIM), then ours (`extra`: a sound's length, an export's scale…; Latent, Init image,
    Edits) and Version last. `used`: every param's value as the render used it (the model's `params(request)`, defaults
    resolved), else the request's own; `info`: the render's Output info ("lora_hashes", "ti_hashes": [(name,
    short hash)])."""
    params = request.params
    values = {**(used or {}), **params}
    lines = []
    if params.get("prompt"):
        lines.append(str(params["prompt"]))
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    settings: list[tuple[str, Any]] = []
    if "steps" in values:
        settings.append(("Steps", values["steps"]))
    sampler = values.get("sampler")
    if sampler is not None:
        karras = (bool(values.get("karras")) or values.get("schedule") == "karras"
                  or (info or {}).get("schedule") == "karras")  # the σs the render used (a model's own config too)
        name, schedule = a1111_sampler(str(sampler), karras)
        settings.append(("Sampler", name))
        if schedule is not None:
            settings.append(("Schedule type", schedule))
    if "guidance" in values:
        settings.append(("CFG scale", values["guidance"]))
    settings.append(("Seed", request.seed))
    if size is not None:
        settings.append(("Size", f"{size[0]}x{size[1]}"))
    sha = model_sha256 or request.model_hash
    if sha:
        settings.append(("Model hash", sha[:10]))
    settings.append(("Model", model_name or request.model_id))
    if values.get("vae"):
        settings.append(("VAE", values["vae"]))
    if params.get("variation_seed") is not None and values.get("variation_strength"):
        settings += [("Variation seed", params["variation_seed"]),
                     ("Variation seed strength", values["variation_strength"])]
    if "init_image" in params and "strength" in values:
        settings.append(("Denoising strength", values["strength"]))
    if isinstance(values.get("clip_skip"), int) and values["clip_skip"] > 1:
        settings.append(("Clip skip", values["clip_skip"]))
    if values.get("ensd") and values.get("rng") in _A1111_NOISE:  # A1111's eta noise seed delta, with its noise
        settings.append(("ENSD", values["ensd"]))
    for key, name in (("lora_hashes", "Lora hashes"), ("ti_hashes", "TI hashes")):
        pairs = _hash_pairs((info or {}).get(key))
        if pairs:
            settings.append((name, ", ".join(f"{n}: {h}" for n, h in pairs)))
    if values.get("rng") in _RNG_NAMES and values["rng"] != "gpu":  # A1111 leaves out its default, GPU
        settings.append(("RNG", _RNG_NAMES[values["rng"]]))
    if sampler == "ddim" and values.get("eta"):  # A1111's DDIM η (0 by default)
        settings.append(("Eta DDIM", values["eta"]))
    settings += extra
    if request.latent is not None:
        settings.append(("Latent", "explicit"))
    if "init_image" in params:
        settings.append(("Init image", "yes"))
    edits = [(k, v) for k, v in params.items() if k not in _OWN_PLACES]
    if edits:
        settings.append(("Edits", " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in edits)))
    settings.append(("Version", f"latent-studio {__version__}"))
    lines.append(", ".join(f"{k}: {_setting_value(k, v)}" for k, v in settings))
    return "\n".join(lines)


def _hash_pairs(value: Any) -> list[tuple[str, str]]:
    """A render's hashes as (name, short hash) pairs, whichever way the family gave them: pairs, a {name: hash}
    mapping (textual inversions) or A1111's own "name: hash, other: hash" text (LoRAs)."""
    if not value:
        return []
    if isinstance(value, str):
        pairs = [item.split(":", 1) for item in value.split(",") if ":" in item]
        return [(n.strip(), h.strip()) for n, h in pairs if n.strip() and h.strip()]
    if isinstance(value, dict):
        return [(str(n), str(h)) for n, h in value.items()]
    return [(str(n), str(h)) for n, h in value]


def _setting_value(key: str, value: Any) -> str:
    """A value on the settings line as A1111 writes one: as it is, or as a JSON string (quoted, escaped) when it holds
    a comma, a colon, a quote or a line break, so that its parser reads it whole. Edits are always quoted."""
    text = str(value)
    if key == "Edits" or any(c in text for c in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _to_image(data: np.ndarray) -> Image.Image:
    if data.dtype != np.uint8:
        raise ExportError(f"image data must be uint8, got {data.dtype}")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(data))


def save_image(path: str | Path, data: np.ndarray, request: RenderRequest, model_name: str = "",
               model_sha256: str = "", quality: int = 95, notes: list[str] | None = None,
               output_size: OutputSize | None = None, used: Mapping[str, Any] | None = None,
               info: Mapping[str, Any] | None = None) -> Path:
    """Write `data` (H, W[, C] uint8) with the request in its metadata, atomically. Format from the suffix. Never fails
    on the metadata's size: what could not be stored whole is said in one-line notes, added to `notes` when given
    and logged. `used` and `info` go to `parameters_text` (the values the render used, its Output info). `output_size` scales the pixels written; the request and the `parameters` Size stay the model's,
    and the `parameters` text adds "Export size: 1024x256 (×4 nearest)"."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"unknown image format {path.suffix or '(no suffix)'}; use "
                          f"{', '.join(sorted(set(FORMATS)))}", path)
    # The request is saved with the hash of the weights that made it, so a re-render is exact.
    if model_sha256 and not request.model_hash:
        request = request.with_(model_hash=model_sha256)
    image = _to_image(data)
    label = request.param("label")
    extra: list[tuple[str, Any]] = [("Class", label)] if label is not None else []
    if output_size is not None and not output_size.identity:
        extra.append((EXPORT_SIZE, output_size.describe(*image.size)))
        image = _to_image(output_size.apply(data))
        params = parameters_text(request, (data.shape[1], data.shape[0]), model_name, model_sha256, extra, used,
                                 info)
    else:
        params = parameters_text(request, image.size, model_name, model_sha256, extra, used, info)
    options, said = image_save_options(fmt, request.to_json(), params)
    with atomic_path(path) as tmp:
        if fmt == "PNG":
            image.save(tmp, format="PNG", **options)
        else:
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            image.save(tmp, format=fmt, quality=quality, **options)
    for note in said:
        log.warning("%s: %s", path, note)
    if notes is not None:
        notes.extend(said)
    return path


def read_request(path: str | Path) -> RenderRequest:
    """The RenderRequest stored in an image this app exported."""
    return stored_request(stored_image_request_text(path), path, "image")


def stored_request(text: str | None, path: str | Path, what: str) -> RenderRequest:
    """The request in the metadata `text` of the `what` ("image", "sound") at `path`; RequestError naming the file
    when there is none or it is invalid."""
    if not text:
        raise RequestError(f"this {what} carries no Latent Studio request (no 'latent-studio' metadata)", path)
    checked_request_text(text, path)  # the readers check too: this guards text that came another way
    try:
        return RenderRequest.from_json(text)
    except RequestError as exc:
        problem = exc.problem if len(exc.problem) <= 2 * QUOTE_CHARS else exc.problem[:2 * QUOTE_CHARS] + "… (cut)"
        raise RequestError(f"the stored request is invalid: {problem}", path, exc.field) from None


def read_picture(source: str | Path | np.ndarray, max_side: int | None = None, colour: bool = False) -> np.ndarray:
    """A picture file (or array) → uint8 grey (H, W), or with `colour` RGB (H, W, 3) unless the picture is grey;
    transparency over white, shrunk to `max_side` if given. The family fits it to what it draws. A file is read by
    `open_picture` (a regular file, at most MAX_IMAGE_PIXELS, checked before decoding)."""
    if isinstance(source, np.ndarray):
        try:
            image = Image.fromarray(np.ascontiguousarray(source))
        except (ValueError, TypeError) as exc:
            raise RequestError(f"not a readable image ({str(exc)[:QUOTE_CHARS]})") from None
    else:
        with open_picture(source) as opened:
            opened.load()
            image = opened.copy()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB" if colour and image.mode not in ("L", "I", "I;16", "1") else "L")
    if max_side is not None:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def read_glyph_strip(path: str | Path, chars: str, cell: int) -> tuple[np.ndarray, list[str]]:
    """Split an image strip into one equal-width cell per character of `chars` (spaces mark cells to skip), each
    resized to `cell`², as (N, cell, cell) uint8 grey images and their characters."""
    with open_picture(path) as im:
        strip = np.asarray(im.convert("L"))
    if not chars.strip():
        raise RequestError("say which characters the image shows, one per cell from left to right", path)
    if strip.shape[1] < len(chars):
        raise RequestError(f"the image is {strip.shape[1]} px wide, too narrow for {len(chars)} cells", path)
    cells = np.array_split(strip, len(chars), axis=1)
    images = [np.asarray(Image.fromarray(np.ascontiguousarray(c)).resize((cell, cell), Image.Resampling.BOX))
              for c, ch in zip(cells, chars) if not ch.isspace()]
    return np.stack(images), [c for c in chars if not c.isspace()]
