"""The engine's work functions: what the CLI's verbs and the window's actions make, written once.

Each is a generator `work(model, request, **options)` that yields Progress (every yield is a cancel point) and returns
an Output; bound to its options it runs on the engine's export lane like any job:

    job = submit(engine, request, render_to_file, path="out.png")   # the CLI: job.wait()
    bridge.run_work(request, "Export out.png", partial(render_to_file, path="out.png"), on_done=...)  # the window

The model is the one the engine loaded for the request (a `studio.families.base.LoadedModel`): torch is reached only
through it, never imported here. Files are written through `studio.export.save_output`, the one place that picks
the writer of an image or a sound. The video export is `studio.engine.animate.export_animation` (batched renders on
the export lane, an encoder thread) fed by `video_plan`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from studio.engine import EXPORT
from studio.errors import StudioError
from studio.export import OutputSize, read_sound, save_output
from studio.export.grid import axis_labels, grid_request, grid_title, labelled_grid, parse_axis
from studio.export.image import read_glyph_strip, read_picture
from studio.params import Capability
from studio.project.timeline import Defaults, Timeline, frames_of, sound_of
from studio.request import RenderRequest
from studio.steps import Output, Progress, RenderSteps

if TYPE_CHECKING:
    from studio.engine.api import EngineAPI
    from studio.engine.engine import Event, Job
    from studio.families.base import LoadedModel
    from studio.manifest import Manifest
    from studio.params import ParamTable

Axis = tuple[str, list]  # a grid axis: a parameter's name and its values, typed by the model's specs
VIDEO_AUDIO_SUFFIXES = (".mp4", ".webm")  # the video formats that carry the timeline's sound


def submit(engine: "EngineAPI", request: RenderRequest, work: Callable[..., RenderSteps],
           on_event: Callable[["Event"], None] | None = None, **options: Any) -> "Job":
    """Run `work` with `options` for `request` on the engine's export lane (the request's model is loaded for it)."""
    return engine.submit(request, EXPORT, on_event, work=partial(work, **options), kind="work")


# --- rendering ---------------------------------------------------------------------------------------------------


def render_to_file(model: "LoadedModel", request: RenderRequest, *, path: str | Path,
                   subtype: str | None = None, output_size: OutputSize | None = None) -> RenderSteps:
    """Render `request` (its steps and previews are the job's) and write it to `path` with the request inside: an
    image (PNG, JPEG, WebP) or a sound (WAV, FLAC, OGG, MP3; `subtype` is WAV's or FLAC's sample format).
    `output_size` scales an image as it is written (the request stays the model's; the Output's info has "size")."""
    _check_output_size(model, output_size)
    output = yield from model.family.render(model, request)
    return _write(model, request, output, Path(path), subtype, output_size)


def _check_output_size(model: "LoadedModel", output_size: OutputSize | None) -> None:
    if output_size is not None and not output_size.identity and model.manifest.output.kind != "image":
        raise StudioError(f"{model.id} makes {model.manifest.output.kind}: only pictures have an output size")


def _write(model: "LoadedModel", request: RenderRequest, output: Output, path: Path, subtype: str | None,
           output_size: OutputSize | None) -> Output:
    """Write a finished render to `path` with the request inside; the Output again, its info with "path" (and
    "size" for a picture, "notes" for metadata that did not fit)."""
    rate = output.info.get("sample_rate") or (model.manifest.output["sample_rate"] if output.kind == "audio" else None)
    notes: list[str] = []  # metadata that did not fit (the file is written all the same)
    save_output(path, output, request, model_name=model.manifest.name, model_sha256=model.sha256, subtype=subtype,
                sample_rate=rate, notes=notes, output_size=output_size, used=model.params(request))
    info = {**output.info, "path": str(path), **({"notes": notes} if notes else {})}
    if output.kind == "image":
        height, width = output.data.shape[:2]
        info["size"] = output_size.target(width, height) if output_size is not None else (width, height)
    return Output(output.kind, output.data, info)


def render_batch(model: "LoadedModel", request: RenderRequest, *, seeds: Sequence[int], paths: Sequence[str | Path],
                 subtype: str | None = None, output_size: OutputSize | None = None,
                 done: int = 0, total: int | None = None) -> RenderSteps:
    """One batch of a queued render: `request` at each of `seeds`, each written to its path (as `render_to_file`
    writes). Progress counts pictures (`done` of `total` of the whole job before this batch); every render step is
    a cancel point, and what was written before a cancel stays. The Output is the last render's, its info with
    "items": the (request, path) of each file."""
    if len(seeds) != len(paths) or not seeds:
        raise StudioError(f"a batch needs one path per seed, got {len(seeds)} seeds and {len(paths)} paths")
    _check_output_size(model, output_size)
    total = total if total is not None else len(seeds)
    items: list[tuple[RenderRequest, str]] = []
    last: Output | None = None
    for k, (seed, path) in enumerate(zip(seeds, paths)):
        one = request.with_(seed=int(seed))
        what = "sound" if model.manifest.output.kind == "audio" else "picture"
        output = yield from _render_within(model, one, done + k, total, what)
        last = _write(model, one, output, Path(path), subtype, output_size)
        items.append((one, str(path)))
        yield Progress(done + k + 1, total, f"{what} {done + k + 1}/{total}")
    assert last is not None
    return Output(last.kind, last.data, {**last.info, "items": items})


def _render_within(model: "LoadedModel", request: RenderRequest, done: int, total: int, what: str) -> RenderSteps:
    """One render inside larger work: each of its steps is a cancel point that reports the work's progress
    (`done` of `total` `what`s), not the render's own."""
    steps = model.family.render(model, request)
    try:
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value
            yield Progress(done, total, what)
    finally:
        steps.close()


def sheet(model: "LoadedModel", request: RenderRequest, *, rows: int, path: str | Path) -> RenderSteps:
    """A contact sheet: `request` for `rows` consecutive seeds from its own, one row each, written to `path`."""
    if rows < 1:
        raise StudioError(f"a sheet needs at least one row, got {rows}")
    images = []
    for row in range(rows):
        output = yield from _render_within(model, request.with_(seed=request.seed + row), row, rows, "row")
        if output.kind != "image":
            raise StudioError(f"{model.id} makes {output.kind}, and `sheet` writes images")
        images.append(output.data)
        yield Progress(row + 1, rows, f"row {row + 1}/{rows}")
    gap = np.full((max(1, images[0].shape[0] // 16), *images[0].shape[1:]), 255, np.uint8)
    picture = np.concatenate([part for image in images for part in (image, gap)][:-1])
    save_output(path, Output("image", picture), request, model_name=model.manifest.name, model_sha256=model.sha256,
                used=model.params(request))
    return Output("image", picture, {"path": str(path), "seeds": (request.seed, request.seed + rows - 1)})


# --- X/Y grids ---------------------------------------------------------------------------------------------------


def parse_grid_axis(table: "ParamTable", text: str, option: str) -> Axis:
    """"NAME=V1,V2,…" → (name, values typed by the model's specs); a StudioError that starts with `option` (the
    command-line option, or the window's word for the axis) and says what the model takes."""
    try:
        name, raw = parse_axis(text)
    except ValueError as exc:
        raise StudioError(f"{option}: {exc}") from None
    try:
        return name, [table.parse_setting(name, value)[1] for value in raw]
    except StudioError as exc:
        raise StudioError(f"{option} {name}: {exc.problem}") from None


def grid_cells(check: Callable[[RenderRequest], RenderRequest], request: RenderRequest, rows: Axis,
               cols: Axis) -> list[list[RenderRequest]]:
    """The request of every cell, row by row, each `check`-ed (a ParamTable's or a model's `check`): a value the
    model does not take is found before anything renders."""
    (row_name, row_values), (col_name, col_values) = rows, cols
    return [[check(grid_request(request, (row_name, r), (col_name, c))) for c in col_values] for r in row_values]


def grid(model: "LoadedModel", request: RenderRequest, *, rows: Axis, cols: Axis, path: str | Path,
         title: str | None = None) -> RenderSteps:
    """An X/Y plot of `request` over two parameters: every cell rendered, laid out with a label for every row and
    column and a title (default: the model and the two parameters), written to `path` with the request inside."""
    cells = grid_cells(model.checked, request, rows, cols)
    total = sum(len(row) for row in cells)
    images: list[list[np.ndarray]] = []
    for row in cells:
        images.append([])
        for cell in row:
            done = sum(len(r) for r in images)  # cells finished before this one
            output = yield from _render_within(model, cell, done, total, "cell")
            if output.kind != "image":
                raise StudioError(f"{model.id} makes {output.kind}: a grid is made of images")
            images[-1].append(output.data)
            yield Progress(done + 1, total, f"cell {done + 1}/{total}")
    (row_name, row_values), (col_name, col_values) = rows, cols
    title = title if title is not None else grid_title(model.manifest.name, row_name, col_name)
    picture = labelled_grid(images, axis_labels(row_name, row_values), axis_labels(col_name, col_values), title=title)
    save_output(path, Output("image", picture), request, model_name=model.manifest.name, model_sha256=model.sha256)
    return Output("image", picture, {"path": str(path), "cells": (len(row_values), len(col_values))})


# --- variations --------------------------------------------------------------------------------------------------


def variation_requests(request: RenderRequest, seeds: Sequence[int], strength: float) -> list[RenderRequest]:
    """`request` with each of `seeds` as its variation seed (0..2**64-1) at `strength`."""
    return [request.with_params({"variation_seed": int(seed), "variation_strength": float(strength)})
            for seed in seeds]


def variations(model: "LoadedModel", request: RenderRequest, *, seeds: Sequence[int],
               strength: float, paths: Sequence[str | Path] | None = None) -> RenderSteps:
    """Variations of `request`: one output per variation seed. The Output stacks them (`data`) and lists each
    tile's request and output (`info["tiles"]`). With `paths` (one per seed) each tile is also written there with
    its request inside (the gallery keeps them): `info["written"]` lists the (request, path) written, and a file
    that cannot be written is a note in `info["notes"]`, never a lost variation."""
    tiles = [model.checked(varied) for varied in variation_requests(request, seeds, strength)]
    if not tiles:
        raise StudioError("variations need at least one variation seed")
    if paths is not None and len(paths) != len(tiles):
        raise StudioError(f"variations need one path per seed, got {len(seeds)} seeds and {len(paths)} paths")
    outputs, written, notes = [], [], []
    for i, tile in enumerate(tiles):
        output = yield from _render_within(model, tile, i, len(tiles), "variation")
        outputs.append(output)
        if paths is not None:
            try:
                _write(model, tile, output, Path(paths[i]), None, None)
                written.append((tile, Path(paths[i])))
            except StudioError as exc:
                notes.append(str(exc))
        yield Progress(i + 1, len(tiles), f"variation {i + 1}/{len(tiles)}")
    info: dict[str, Any] = {"tiles": list(zip(tiles, outputs))}
    if paths is not None:
        info["written"] = written
    if notes:
        info["notes"] = notes
    return Output(outputs[0].kind, np.stack([o.data for o in outputs]), info)


# --- encoding ----------------------------------------------------------------------------------------------------


def _latent_values(z: Any) -> np.ndarray:
    """A family's latent (a tensor on any device, in any precision) as float32 numbers."""
    return z.reshape(-1).float().cpu().numpy()


def encode_image(model: "LoadedModel", request: RenderRequest, *, images: np.ndarray,
                 labels: Sequence[str] | None = None) -> RenderSteps:
    """The latent of `images` (N, H, W[, C] uint8; `labels`: what each shows, for conditional models) as an Output
    of kind "latent". For a family whose encoder is a projection by optimisation (Capability.PROJECT) this is long
    work: it reports its progress, and each step is a cancel point."""
    if Capability.ENCODE not in model.family.capabilities:
        raise StudioError(f"{model.id} ({model.family.name} family) cannot encode images")
    images = np.ascontiguousarray(images)
    if labels is None and getattr(model.family, "encodes_pictures", False) \
            and model.manifest.conditions.kind == "class":
        labels = [model.params(request)["label"]]  # a conditional picture model projects as the current class
    yield Progress(0, 1, "encoding")
    z: Any = model.family.encode(model, images, list(labels) if labels is not None else None)
    if inspect.isgenerator(z):
        z = yield from z
    return Output("latent", _latent_values(z), {"images": int(images.shape[0]), "shape": list(z.shape)})


def encode_sound(model: "LoadedModel", request: RenderRequest, *, path: str | Path, label: str) -> RenderSteps:
    """The latent of a sound file (any rate: resampled to the model's; read here, off the window's thread) as the
    class `label`. The Output's info says the file's own rate when it was resampled ("resampled_from")."""
    if model.manifest.output.kind != "audio" or Capability.ENCODE not in model.family.capabilities:
        raise StudioError(f"{model.id} does not encode sounds")
    out = model.manifest.output
    yield Progress(0, 1, f"reading {Path(path).name}")
    wave, info = read_sound(path, out["sample_rate"], max_seconds=2 * out["length"] / out["sample_rate"] + 1)
    yield Progress(0, 1, "encoding")
    z: Any = model.family.encode(model, wave, [label])
    if inspect.isgenerator(z):
        z = yield from z
    return Output("latent", _latent_values(z), {
        "label": label, "resampled_from": info["sample_rate"] if info.get("resampled") else None})


def glyph_strip(manifest: "Manifest", path: str | Path, chars: str) -> tuple[np.ndarray, list[str] | None]:
    """The images to encode from a strip of glyph cells (the model's width each): one per character of `chars` with
    those characters as labels for conditional models, else the first cell alone. A family that encodes whole
    pictures (`encodes_pictures`: a StyleGAN network) gets the picture as it is, (1, H, W[, 3]), and no labels."""
    from studio.families import get_family

    if getattr(get_family(manifest.family), "encodes_pictures", False):  # a whole colour picture: the family fits it
        return read_picture(path, colour=manifest.output["channels"] == 3)[None], None
    width = manifest.output["width"]
    if manifest.conditions.kind in ("text", "class"):
        images, labels = read_glyph_strip(path, chars, width)
        return images, labels
    return read_glyph_strip(path, "x", width)[0], None


def sound_label(manifest: "Manifest", label: str | None = None) -> str:
    """The class a sound is encoded as: `label`, else the model's default class, else its first (StudioError naming
    the classes when the model has no class `label`)."""
    cond = manifest.conditions
    chosen = label or cond.default or (cond.labels[0] if cond.labels else "")
    if cond.labels and chosen not in cond.labels:
        raise StudioError(f"{manifest.id} knows the classes {', '.join(cond.labels)}, not {chosen!r}")
    return chosen


# --- video -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoPlan:
    """What a timeline's video is made of: every frame's request, the frame rate, and the sound muxed in (MP4 and
    WebM carry the timeline's sound; GIF and PNG frames do not)."""

    frames: tuple[RenderRequest, ...]
    fps: float
    audio: tuple[np.ndarray, int] | None


def video_plan(timeline: Timeline, path: str | Path, folder: str | Path | None = None,
               defaults: Defaults | None = None) -> VideoPlan:
    """The frames of `timeline` with its audio mappings applied (its sound, a path relative to `folder`, is read
    once: the mappings' envelopes and the video's track), only those between its in and out points (the sound cut to
    start with the first of them; the envelopes still follow the whole sound); `defaults` are the model's param
    defaults. StudioError
    (a timeline of fewer than two keyframes, an unreadable or silent sound) before anything renders."""
    timeline.check_playable()
    sound = sound_of(timeline, folder)
    frames = frames_of(timeline, folder, sound, defaults)
    audio = sound if Path(path).suffix.lower() in VIDEO_AUDIO_SUFFIXES else None
    plan = VideoPlan(tuple(frames), timeline.fps, audio)
    first, stop = timeline.frame_span()  # the in and out points: the frames between them, the sound cut to match
    return plan if (first, stop) == (0, len(frames)) else frame_range(plan, first + 1, stop)


def export_video(engine: "EngineAPI", plan: VideoPlan, path: str | Path, metadata: str = "",
                 size: tuple[int, int] | None = None, on_event: Callable[["Event"], None] | None = None,
                 output_size: OutputSize | None = None) -> "Job":
    """Render the plan's frames into the video `path` on the export lane (`export_animation`: batched renders, an
    encoder thread, every frame a cancel point, nothing partial left); `size` (width, height) scales the frames
    (Lanczos), `output_size` by a whole factor or to a size with a chosen filter."""
    from studio.engine.animate import export_animation  # its frame batches are torch: only when a video is made

    return export_animation(engine, plan.frames, path, plan.fps, audio=plan.audio, metadata=metadata, size=size,
                            on_event=on_event, output_size=output_size)


def frame_range(plan: VideoPlan, first: int, last: int) -> VideoPlan:
    """The plan's frames `first`..`last` (1-based, inclusive), its sound cut to start with the first of them.
    StudioError for a range outside the timeline's frames."""
    total = len(plan.frames)
    if not 1 <= first <= last <= total:
        raise StudioError(f"the frame range {first}..{last} is outside the timeline's frames 1..{total}")
    audio = plan.audio
    if audio is not None:
        wave, rate = audio
        audio = (wave[int(round((first - 1) / plan.fps * rate)):], rate)
    return VideoPlan(plan.frames[first - 1:last], plan.fps, audio)
