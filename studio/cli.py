"""`latent-studio`: the app's command line. With no verb it opens the desktop app.

Verbs:
  gui [PATH…] [--model ID]        the desktop app (the default), opening projects, model folders or images
  --self-test                     check this installation offscreen: window, every shipped model, every export format
  models [--json]                 list installed model packages, with errors for invalid ones
  render --model ID|FOLDER ...    render to an image with the request in its metadata (alone: the default model)
  render --model one-shots --label snare --out hit.wav     a sound (WAV, FLAC, OGG or MP3)
  render --from FILE.png|FILE.wav ...   re-render exactly what made FILE (at the model's size: add --scale)
  render ... --scale 4 [--filter nearest|smooth]   write the picture 4 times larger (the request stays the model's)
  render --latent A.json [--toward B.json --t 0.3]   render an encoded latent, or a point between two
  encode --font FILE | --image FILE --chars TEXT     a style latent from glyphs
  encode --model one-shots --sound FILE --label kick  a timbre latent from a sound
  sheet --model ID --rows N       a contact sheet: one row per seed
  grid --rows seed=1,2,3 --cols d0=-2,0,2 ...         an X/Y plot of one request over two parameters, labelled
  animate PROJECT.lstudio --out FILE.mp4 [--fps N] [--size WxH | --scale N] [--filter nearest|smooth]   a video
  import FILE.ckpt --like MODEL [--id ID]             a checkpoint onto a package's architecture (never executed)
  import FILE.ckpt --sd                               a pickled SD 1.x / 2.x checkpoint as .safetensors
  import network-snapshot.pkl                         an NVIDIA StyleGAN2/3 network pickle as a package (never run)
  wrap FILE.pt|FILE.onnx --latent 128 --image 64x64x3 a TorchScript / ONNX generator as a package (writes model.toml)
  train RECIPE.toml               train a model package from a recipe
  directions list [--model ID]    named directions: each model's sets (and render --set NAME=2 by a direction's name)
  directions export --model ID [--set NAME] --out FILE.lsdirs   share a set as a file
  directions import FILE.lsdirs [--default]            a shared set among yours (checked against the model)
  train --family vae|gan|diffusion|audio --data FOLDER   train on your own pictures or sounds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from studio import __version__
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.library import PackageEntry
    from studio.manifest import Manifest


def _parse_set(items: list[str]) -> list[tuple[str, str]]:
    """--set name=value → (name, value as typed); the model's parameter specs check them (`_request_from_args`)."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise StudioError(f"--set takes name=value, got {item!r}")
        pairs.append((name, value.strip()))
    return pairs


def _setting(table, name: str, value: str, option: str):
    """One typed setting for the model, or a StudioError that names the option and what the model takes. A picture
    param (an inpainting mask) names a picture file: it is read and stored as the request holds pictures."""
    from studio.params import Kind

    spec = table.find(name)
    if spec is not None and spec.kind is Kind.IMAGE:
        from studio.export.image import read_picture
        from studio.io.images import encode_init_image

        try:
            value = encode_init_image(read_picture(value, colour=True))
        except StudioError as exc:
            raise StudioError(f"{option} {name}: {exc.problem}", exc.path or Path(value)) from None
    try:
        return table.parse_setting(name, value)
    except StudioError as exc:
        raise StudioError(f"{option} {name}: {exc.problem}") from None


def _manifest(entry: PackageEntry) -> Manifest:
    """The manifest of a package `resolve` found (it raises the error of a package that has none)."""
    if entry.manifest is None:
        raise entry.error or StudioError("the package has no manifest", entry.folder)
    return entry.manifest


def _resolve(model: str, roots: list[Path]) -> PackageEntry:
    """The package a --model value names: a file or folder path (a bare name too, when it is in the current folder
    and no installed package has that id) or an installed id; a name that is both is the installed package, and
    the command says so."""
    from studio.library import ambiguous_model, resolve
    from studio.limits import quote

    entry = resolve(model, roots)
    if ambiguous_model(model, roots):
        print(f"latent-studio: note: {quote(model)} is an installed model and a file or folder in the current "
              f"folder: using the installed model (write ./{model} for the folder)", file=sys.stderr)
    return entry


def _roots(args, warn: bool = True) -> list[Path]:
    from studio.library import default_roots, root_problem
    from studio.limits import quote
    from studio.settings import load_or_reset_settings

    settings, notice = load_or_reset_settings()  # a broken settings file never stops a command
    if notice:
        print(f"latent-studio: warning: {notice}", file=sys.stderr)
    extra = [*settings.model_folders, *(args.models_dir or [])]
    if warn:  # a model folder that cannot be one is skipped, and said (`models` lists it as invalid instead)
        for root in extra:
            problem = root_problem(root)
            if problem:
                print(f"latent-studio: warning: model folder {quote(str(root))} {problem}; skipped", file=sys.stderr)
    return default_roots(extra)


def cmd_models(args) -> int:
    from studio.library import scan

    roots = _roots(args, warn=False)
    entries = scan(roots)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
    else:
        if not entries:
            print("no model packages found in: " + ", ".join(str(r) for r in roots))
        for e in entries:
            d = e.to_dict()
            if e.ok:
                print(f"{d['id']:<20} {d['family']:<10} {d['output']:<6} {d['sha256'][:12]}  {d['path']}")
            else:
                print(f"{d['id']:<20} INVALID  {d['error']}")
    # a model folder that cannot be one is listed and skipped: it does not make the listing fail
    return 0 if all(e.ok or (e.error is not None and e.error.field == "model folder") for e in entries) \
        or args.json else 1


def _threads(args) -> int:
    """Torch threads for a headless verb: --threads, else every usable core (studio.engine.device.headless_threads)."""
    from studio.engine.device import headless_threads

    if args.threads is not None and args.threads < 1:
        raise StudioError(f"--threads must be 1 or more, got {args.threads}")
    return args.threads or headless_threads()


def cmd_render(args) -> int:
    from studio.engine import Engine
    from studio.engine.work import render_to_file, submit
    from studio.export import check_writable_folder, formats_for, read_any_request
    from studio.library import resolve_stored

    out = Path(args.out) if args.out else None
    roots = _roots(args)
    if args.from_file:
        request = read_any_request(args.from_file)
        if out is None:
            raise StudioError("--from needs --out (the file to write)")
    else:
        request = None
    if request is not None and not args.model:
        # the file names its model: an installed package by id and weights hash, never a folder of its choosing
        try:
            entry = resolve_stored(request.model_id, request.model_hash, roots, args.from_file)
        except StudioError as exc:
            if exc.path is None:  # the model the file stored is not here: name the file
                raise type(exc)(exc.problem, args.from_file, exc.field or "model_id") from None
            raise
        request = request.with_(model_id=entry.id)
    else:
        from studio.library import DEFAULT_MODEL_ID
        entry = _resolve(args.model or DEFAULT_MODEL_ID, roots)  # what the user typed: an id or a path
    manifest = _manifest(entry)
    kind = manifest.output.kind
    if out is None:
        out = Path(f"{entry.id}-{args.seed if args.seed is not None else 0}.{'wav' if kind == 'audio' else 'png'}")
    sounds = formats_for("audio")
    if (kind == "audio") != (out.suffix.lower() in sounds):  # fail before any work
        wanted = ", ".join(sorted(sounds)) if kind == "audio" else ".png, .jpg, .webp"
        raise StudioError(f"{entry.id} makes {kind}: write it as {wanted}", out)
    if args.sample_format and kind != "audio":
        raise StudioError(f"--sample-format is for sounds; {entry.id} makes {kind}")
    check_writable_folder(out)
    output_size = _output_size(args)
    if output_size is None and args.from_file and kind == "image":
        output_size = _stored_output_size(args.from_file)  # `--from` writes the file again at its scale
    if output_size is not None and kind != "image":
        raise StudioError(f"--scale and --filter are for pictures; {entry.id} makes {kind}")
    if args.count < 1 or args.batch_size < 1:
        raise StudioError(f"--count and --batch-size must be 1 or more, got {args.count} and {args.batch_size}")
    try:
        request = _request_from_args(args, entry, request)
        with Engine(device=args.device, roots=roots, threads=_threads(args)) as engine:
            engine.add_package(entry)
            if args.count * args.batch_size > 1:
                return _render_many(engine, request, entry.id, out, args, output_size)
            job = submit(engine, request, render_to_file, path=out, subtype=args.sample_format,
                         output_size=output_size)
            output = job.wait()
    except StudioError as exc:
        if args.from_file and exc.path is None:  # a value the file stored: name the file it came from
            raise type(exc)(exc.problem, args.from_file, exc.field) from None
        raise
    if output.kind == "audio":
        rate = int(output.info.get("sample_rate", manifest.output["sample_rate"]))
        shape = f"{output.data.shape[0] / rate:.2f} s at {rate} Hz"
    else:
        width, height = output.info.get("size", output.size)
        shape = f"{width}x{height}"
    note = job.info.get("fallback") or job.info.get("dtype_note")
    print(f"wrote {out} ({shape}, {entry.id}, seed {request.seed}, "
          f"{job.seconds * 1000:.0f} ms on {job.info.get('device')})" + (f"; {note}" if note else ""))
    for line in output.info.get("notes", ()):  # metadata that did not fit in the file (it is written all the same)
        print(f"latent-studio: note: {line}", file=sys.stderr)
    return 0


def _render_many(engine, request, model_id: str, out: Path, args, output_size) -> int:
    """`render --count N --batch-size B`: N batches of B renders (one engine job each) over the seeds the seed mode
    gives, each written beside `out` as STEM-0001-sSEED.png and so on; one line per file."""
    from studio.app.queue import job_seeds
    from studio.engine.work import render_batch, submit

    total = args.count * args.batch_size
    seeds = job_seeds(request.seed, total, args.seed_mode)
    paths = [out.with_name(f"{out.stem}-{k + 1:04d}-s{seed}{out.suffix}") for k, seed in enumerate(seeds)]
    started = time.perf_counter()
    device = None
    for first in range(0, total, args.batch_size):
        part = slice(first, first + args.batch_size)
        job = submit(engine, request, render_batch, seeds=seeds[part], paths=paths[part], subtype=args.sample_format,
                     output_size=output_size, done=first, total=total)
        output = job.wait()
        device = job.info.get("device")
        for one, path in output.info["items"]:
            print(f"wrote {path} ({model_id}, seed {one.seed})", flush=True)
    seconds = time.perf_counter() - started
    print(f"{total} renders in {args.count} batch{'es' if args.count > 1 else ''} of {args.batch_size}, "
          f"{seconds:.1f} s ({seconds / total * 1000:.0f} ms each) on {device}")
    return 0


def _request_from_args(args, entry, request=None):
    """The request that `render`, `sheet` and `grid` draw: a stored one or a fresh one, with the options applied and
    checked against the model's parameters (an unknown name or a value out of range names what the model takes)."""
    from studio.params import apply_settings
    from studio.request import RenderRequest

    table = entry.parameters
    if request is None:
        request = RenderRequest(model_id=entry.id)
    elif getattr(args, "model", None):
        request = request.with_(model_id=entry.id)
    if args.seed is not None:
        request = request.with_(seed=args.seed)
    latent = _latent_from_args(args, entry)
    if latent is not None:
        request = request.with_(latent=latent)
    settings = []
    for option, name in (("--prompt", "prompt"), ("--label", "label"), ("--negative", "negative_prompt")):
        value = getattr(args, option[2:], None)
        if value is not None:
            settings.append(_setting(table, name, value, option))
    if args.dtype:
        settings.append(("dtype", args.dtype))
    settings += [_setting(table, _named(entry, name), value, "--set") for name, value in _parse_set(args.set or [])]
    request = apply_settings(request, settings)
    if getattr(args, "init", None):
        strength = request.param("strength")
        request = request.with_params({"init_image": _init_image(args.init, entry, request),
                                       "strength": strength if strength is not None else 0.6})
    return table.check(request)


def _named(entry, name: str) -> str:
    """`name` as a param: itself when the model has such a param, else the direction it names in the model's set of
    direction names in use (`--set Bold=2` → d0), else itself (and the model's specs say what it takes)."""
    if entry.parameters.find(name) is not None or name in ("seed", "width", "height", "dtype"):
        return name
    from studio.app.direction_sets import direction_param

    return direction_param(entry, name) or name


def cmd_directions(args) -> int:
    """Named directions without the window: list each model's sets, share one as a file, import a shared one."""
    from studio.app.direction_sets import DEFAULT_KEY, DirectionNames, describe_sets, find_stored
    from studio.library import scan
    from studio.latent.direction_sets import read_set

    said: list[tuple[str, str, str]] = []
    names = DirectionNames(message=lambda level, text, detail: said.append((level, text, detail)))
    roots = _roots(args)

    def report() -> None:
        for level, text, detail in said:
            print(f"latent-studio: {level}: {text}" + (f"\n  {detail.replace(chr(10), chr(10) + '  ')}"
                                                       if detail and level != "info" else ""), file=sys.stderr)
        said.clear()

    if args.action == "list":
        entries = [_resolve(args.model, roots)] if args.model else [e for e in scan(roots) if e.ok]
        for entry in entries:
            if entry.direction_count or args.model:
                lines = describe_sets(entry)
                print(f"{entry.id} ({entry.direction_count} directions): " + ("" if lines else "no sets"))
                for line in lines:
                    print(line)
        return 0
    if args.action == "export":
        if not args.out:
            raise StudioError("directions export needs --out FILE.lsdirs (the file to write)")
        if not args.model:
            raise StudioError("directions export needs --model ID")
        entry = _resolve(args.model, roots)
        names.use_model(entry)
        if args.set:
            stored = find_stored(entry, DEFAULT_KEY if args.set.lower() == "default" else args.set)
            if stored is None:
                raise StudioError(f"{entry.id} has no direction set {args.set!r} (see: latent-studio directions list)")
            if not names.choose(stored.key):
                report()
                return 1
        current = names.current_set
        if current is None or not current.entries:
            raise StudioError(f"{entry.id} has no direction names in use to share; name some in the window, or "
                              "pick a set with --set")
        path = names.export(args.out)
        report()
        print(f"wrote {path} ({current.name!r}: {len(current.entries)} names for {entry.id})")
        return 0
    if not args.file:
        raise StudioError("directions import needs the file to read (FILE.lsdirs)")
    shared = read_set(args.file)
    installed = next((e for e in scan(roots) if e.ok and e.id == shared.model_id), None)
    if installed is None:  # the file names a model by id: never a folder of its choosing
        from studio.errors import DirectionsError
        raise DirectionsError(f"is made for model {shared.model_id!r}, which is not installed", args.file, "model.id")
    names.use_model(installed)
    where = f"stored as {names.import_file(args.file)}"
    if args.default:
        _, where = names.save_default()
    report()
    shown = names.names()
    print(f"imported {shared.name!r} for {installed.id}: {len(shown)} of {len(shared.entries)} names shown; {where}")
    return 0


def _init_image(path: str, entry, request) -> str:
    """An image file fitted to what the request starts from (its family says how), as the request's init image."""
    from studio.export.image import read_picture
    from studio.io.images import encode_init_image
    from studio.params import Capability

    if Capability.IMG2IMG not in entry.capabilities:
        raise StudioError(f"{entry.id} ({entry.manifest.family} family) cannot start from an image", Path(path))
    picture = read_picture(path, colour=True)  # the family fits it (grey or not)
    return encode_init_image(entry.family.init_picture_for(entry.manifest, request, picture))


def cmd_sheet(args) -> int:
    """A contact sheet: the same request for consecutive seeds, one row each."""
    from studio.engine import Engine
    from studio.engine.work import sheet, submit
    from studio.export import check_writable_folder
    from studio.library import DEFAULT_MODEL_ID

    roots = _roots(args)
    entry = _resolve(args.model or DEFAULT_MODEL_ID, roots)
    out = Path(args.out) if args.out else Path(f"{entry.id}-sheet.png")
    check_writable_folder(out)
    if args.rows < 1:
        raise StudioError(f"--rows must be at least 1, got {args.rows}")
    from studio import limits
    limits.check(args.rows, limits.MAX_GRID_CELLS, "a sheet of", field="--rows", unit=" rows")
    first = args.seed if args.seed is not None else 0
    args.seed = None
    base = _request_from_args(args, entry).with_(seed=first)
    with Engine(device=args.device, roots=roots, threads=_threads(args)) as engine:
        engine.add_package(entry)
        picture = submit(engine, base, sheet, rows=args.rows, path=out).wait().data
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]}, {entry.id}, seeds {first}..{first + args.rows - 1})")
    _to_gallery(out, base, "sheet")
    return 0


def _to_gallery(path: Path, request, source: str) -> None:
    """A sheet or grid the command wrote joins the window's gallery (its viewer opens them); a gallery that cannot be
    written is a note, never a failed command."""
    import sqlite3

    from studio.app.gallery import Gallery

    try:
        gallery = Gallery.open()
        try:
            gallery.add(path, request, source)
        finally:
            gallery.close()
    except (StudioError, sqlite3.Error) as exc:
        print(f"latent-studio: note: {path.name} is not in the gallery: {exc}", file=sys.stderr)


def cmd_grid(args) -> int:
    """An X/Y plot: the same request over the values of two parameters, one labelled image."""
    from studio.engine import Engine
    from studio.engine.work import grid, grid_cells, parse_grid_axis, submit
    from studio.export import check_writable_folder
    from studio.library import DEFAULT_MODEL_ID

    roots = _roots(args)
    entry = _resolve(args.model or DEFAULT_MODEL_ID, roots)
    kind = _manifest(entry).output.kind
    if kind != "image":
        raise StudioError(f"{entry.id} makes {kind}: a grid is made of images")
    out = Path(args.out) if args.out else Path(f"{entry.id}-grid.png")
    check_writable_folder(out)
    rows, cols = (parse_grid_axis(entry.parameters, text, option)
                  for option, text in (("--rows", args.rows), ("--cols", args.cols)))
    base = _request_from_args(args, entry)
    from studio import limits
    limits.check(len(rows[1]) * len(cols[1]), limits.MAX_GRID_CELLS, "a grid of", field="--rows × --cols",
                 unit=" cells")
    grid_cells(entry.parameters.check, base, rows, cols)  # a value the model does not take: before any render
    with Engine(device=args.device, roots=roots, threads=_threads(args)) as engine:
        engine.add_package(entry)
        picture = submit(engine, base, grid, rows=rows, cols=cols, path=out, title=args.title).wait().data
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]}, {len(rows[1])} × {len(cols[1])} cells, {entry.id})")
    _to_gallery(out, base, "grid")
    return 0


def cmd_animate(args) -> int:
    """Render a project's timeline to a video (MP4, WebM, GIF or a folder of PNGs) with a progress bar."""
    import dataclasses

    from studio.engine import Engine
    from studio.engine.work import export_video, video_plan
    from studio.export import check_writable_folder
    from studio.library import project_models
    from studio.project import load_document
    from studio.train.progress import ProgressBar

    project = Path(args.project)
    document = load_document(project)
    if args.fps is not None:
        try:
            document.timeline = dataclasses.replace(document.timeline, fps=args.fps)
        except StudioError as exc:
            raise StudioError(f"--fps: {exc.problem}") from None
    out = Path(args.out)
    check_writable_folder(out)
    output_size = _output_size(args, args.size)  # a whole factor or a filter: the frames' output size
    size = _parse_size(args.size) if args.size and output_size is None else None
    roots = _roots(args)
    try:
        document.timeline.check_playable()
        # the project's models among the installed packages: a folder it names is never loaded on its own
        document, entries = project_models(document, roots, project)
        timeline = document.timeline
        plan = video_plan(timeline, out, project.parent, entries[0].parameters.default)
    except StudioError as exc:
        raise StudioError(exc.problem, exc.path or project, exc.field) from None
    bar = ProgressBar(len(plan.frames), unit="frame")

    def on_event(event) -> None:
        if event.kind == "progress":
            bar.update(event.step, 1)

    with Engine(device=args.device, roots=roots) as engine:
        for entry in entries:
            engine.add_package(entry)
        job = export_video(engine, plan, out, metadata=document.to_json(), size=size, on_event=on_event,
                           output_size=output_size)
        job.wait()
    bar.close()
    start, end = timeline.span
    between = f" from {start:g} s to {end:g} s (the in/out points)" if (timeline.in_point, timeline.out_point) != \
        (None, None) else ""
    print(f"wrote {out} ({len(plan.frames)} frames at {timeline.fps:g} fps{between}, {job.seconds:.1f} s on "
          f"{job.info.get('device')})")
    return 0


def _out_folder(text: str, field: str) -> Path:
    """The folder a package is written to, from an option: its last part must be a plain name (not `..`, not empty)."""
    from studio.files import check_name

    out = Path(text)
    check_name(out.name, "folder name", field=field)
    return out


def cmd_wrap(args) -> int:
    """A TorchScript or ONNX generator file made into a package: the module copied beside a model.toml that says
    its latent, conditions and output (the sidecar the torchscript / onnx families read), checked by loading it."""
    import shutil

    import tomli_w

    from studio.files import check_name
    from studio.io.atomic import temporary_beside
    from studio.io.package import check_replaceable, swap_into_place
    from studio.library import resolve
    from studio.manifest import package_id_from
    from studio.paths import user_models_dir

    source = Path(args.file)
    if not source.is_file():
        raise StudioError("no such file", source)
    suffix = source.suffix.lower()
    family = "onnx" if suffix == ".onnx" else "torchscript" if suffix in (".pt", ".pth", ".ts", ".torchscript") \
        else None
    if family is None:
        raise StudioError("expected a TorchScript module (.pt, .pth, .ts) or an ONNX file (.onnx)", source)
    try:
        latent = [int(v) for v in args.latent.lower().replace("x", ",").split(",") if v.strip()]
    except ValueError:
        latent = []
    if not latent or min(latent) < 1:
        raise StudioError(f"--latent takes the latent's shape, e.g. 512 or 4x16x16, got {args.latent!r}")
    if bool(args.image) == bool(args.audio):
        raise StudioError("give the output: --image WxHxC (e.g. 256x256x3) or --audio RATE:SAMPLES[:CHANNELS]")
    if args.image:
        parts = args.image.lower().split("x")
        try:
            width, height, channels = (int(v) for v in (parts + ["3"])[:3])
        except ValueError:
            raise StudioError(f"--image takes WxH or WxHxC, got {args.image!r}") from None
        output = {"kind": "image", "width": width, "height": height, "channels": channels}
    else:
        try:
            rate, length, *rest = (int(v) for v in args.audio.split(":"))
        except ValueError:
            raise StudioError(f"--audio takes RATE:SAMPLES[:CHANNELS], got {args.audio!r}") from None
        output = {"kind": "audio", "sample_rate": rate, "length": length, "channels": rest[0] if rest else 1}
    labels = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else []
    model_id = check_name(args.id, "package id", field="--id") if args.id is not None else \
        package_id_from(source.stem, "generator")  # checked before it is part of any path
    out = _out_folder(args.out, "--out") if args.out else user_models_dir() / model_id
    if os.path.lexists(out):
        if not args.force:
            raise StudioError("a package is already there (use --force to replace it, or --out/--id)", out)
        check_replaceable(out)  # --force replaces a model package, never a folder of the user's
    manifest = {
        "format": 1, "id": model_id, "name": args.name or source.stem, "family": family, "version": "1.0.0",
        "license": args.license or "unknown (check the generator's own licence)",
        "description": f"{source.name}, a {'ONNX' if family == 'onnx' else 'TorchScript'} generator.",
        "weights": f"generator{suffix}", "output": output, "latent": {"shape": latent, "prior": "normal"},
        "conditions": {"kind": "class", "labels": labels, "default": labels[0]} if labels else {"kind": "none"},
        "architecture": {"range": args.range},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(out, out.parent, folder=True)  # a unique name of ours: no sibling of the user's is touched
    shutil.copyfile(source, tmp / f"generator{suffix}")
    (tmp / "model.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
    try:  # a wrong latent or output shape is found now, not when the artist first opens it
        from studio import limits
        from studio.engine.sandbox import trial_render
        from studio.request import RenderRequest

        # in a worker process, as the engine runs it: the module's code never runs here, and an endless forward
        # is ended after the limit
        trial_render(resolve(str(tmp)), RenderRequest(model_id), limits.MAX_TRIAL_SECONDS)
    except StudioError as exc:  # the module or the options did not fit: name what the user gave, not our copy
        shutil.rmtree(tmp, ignore_errors=True)
        raise _wrap_error(exc, tmp, source, "--image" if args.image else "--audio") from None
    except BaseException:  # Ctrl+C: nothing is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        swap_into_place(tmp, out)  # refuses (again) anything at `out` that is not a model package
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out} ({model_id}, {family}: latent {'x'.join(map(str, latent))}, {output['kind']})")
    return 0


def _wrap_error(exc: StudioError, tmp: Path, source: Path, output_option: str) -> StudioError:
    """An error about wrap's temporary package as the user sees it: the module file they gave, and for the
    model.toml wrap wrote from their options, the option (--latent, --image/--audio, --classes) that set the field."""
    if exc.path is None or not Path(exc.path).is_relative_to(tmp):
        return exc
    field = exc.field
    if Path(exc.path).name == "model.toml":
        top = (field or "").split(".")[0].split("[")[0]
        field = {"latent": "--latent", "output": output_option, "conditions": "--classes",
                 "architecture": "--range", "id": "--id", "name": "--name"}.get(top, field)
    return type(exc)(exc.problem, source, field)


def cmd_import(args) -> int:
    """A checkpoint (pickle or safetensors) mapped onto the architecture of an installed package, written as a new
    safetensors package. Pickles are read only with torch's weights-only loader: nothing in them is executed."""
    from studio.families import get_family
    from studio.files import check_name
    from studio.importers.checkpoint import import_like
    from studio.manifest import read_manifest

    if args.nn_tilde:  # an nn~ TorchScript file (RAVE): read in a worker process, written as a package
        from studio.importers.nn_tilde import import_nn_tilde

        if args.like or args.sd:
            raise StudioError("give --nn-tilde alone (an nn~ / RAVE .ts file), not with --like or --sd")
        folder = import_nn_tilde(args.file, _out_folder(args.out, "--out") if args.out else None,
                                 args.seconds if args.seconds is not None else 4.0, args.id, args.name, args.license,
                                 force=args.force)
        print(f"wrote {folder} ({read_manifest(folder).id}, nn-tilde family: {read_manifest(folder).description})")
        return 0
    if not args.sd and not args.like:
        from studio.families.registry import importing_family

        family = importing_family(Path(args.file))  # by content: an NVIDIA network pickle, say
        if family is not None:
            given = [flag for flag, value in (("--id", args.id), ("--name", args.name), ("--license", args.license),
                                               ("--strip-prefix", args.strip_prefix)) if value is not None]
            if given:
                raise StudioError(f"{', '.join(given)} apply to --like imports; a network pickle's package is named "
                                  "after the file (rename it, or choose the folder with --out)")
            folder = family.import_file(args.file, _out_folder(args.out, "--out") if args.out else None,
                                        force=args.force)
            converted = read_manifest(folder)
            print(f"wrote {folder} ({converted.id}, {converted.family} family, converted from "
                  f"{Path(args.file).name}; nothing in it was run)")
            if converted.training.get("import_note"):
                print(f"note: {converted.training['import_note']}")
            return 0
    if args.sd:
        if args.like:
            raise StudioError("give --sd (a Stable Diffusion checkpoint) or --like MODEL, not both")
        out = get_family("stable-diffusion").import_file(args.file, args.out, force=args.force)
        print(f"wrote {out} (Stable Diffusion 1.x; open it with --model {out} or File → Open Model File…)")
        return 0
    if not args.like:
        raise StudioError("import needs --like MODEL (the installed package whose architecture the checkpoint fits), "
                          "--sd for a Stable Diffusion checkpoint, or --nn-tilde for an nn~ / RAVE .ts file (an NVIDIA "
                          "network pickle is recognised on its own)")
    if args.id is not None:
        check_name(args.id, "package id", field="--id")  # before anything: it becomes a folder's name
    out_folder = _out_folder(args.out, "--out") if args.out else None
    template = _resolve(args.like, _roots(args))
    folder = import_like(args.file, template, out_folder, args.id, args.name, args.license, args.strip_prefix,
                         force=args.force)
    print(f"wrote {folder} ({read_manifest(folder).id}, {_manifest(template).family} family, the architecture of "
          f"{template.id})")
    return 0


def _scale_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--scale", type=int, metavar="N", help=f"write {what} N times larger (1..16; the request "
                        "stored in the file stays the model's, the file's parameters note the scale)")
    parser.add_argument("--filter", choices=("nearest", "smooth"),
                        help="how to scale: nearest keeps pixels crisp (the default), smooth is Lanczos")


def _stored_output_size(path: str):
    """The output size a picture's `parameters` record ("Export size: 1024x256 (×4 nearest)"), or None."""
    from studio.export.image import EXPORT_SIZE
    from studio.export.scale import OutputSize
    from studio.io.foreign import parse_parameters, picture_texts

    try:
        text = picture_texts(path).get("parameters", "")
        stored = dict(parse_parameters(text, path).other).get(EXPORT_SIZE) if text else None
        return OutputSize.from_description(stored) if stored else None
    except StudioError:  # a damaged or odd note: the model's own size
        return None


def _output_size(args, size: str | None = None):
    """The export's OutputSize from --scale / --filter (and --size for videos), or None when neither is given."""
    if args.scale is None and args.filter is None:
        return None
    from studio.export.scale import OutputSize

    return OutputSize.parse(args.scale, args.filter, size)


def _parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 1:
        from studio.limits import quote
        raise StudioError(f"--size takes WIDTHxHEIGHT in pixels (e.g. 512x256), got {quote(text)}")
    from studio import limits
    for side in size:
        limits.check(side, limits.MAX_SIDE, "a side of", field="--size", unit=" px")
    limits.check(size[0] * size[1], limits.MAX_PIXELS, "a picture of", field="--size", unit=" px")
    return size


def _encode_inputs(args, cell: int) -> tuple[list, list[str], str]:
    """Images and their characters from --font FILE or --image FILE --chars TEXT."""
    if args.font:
        from studio.train.fonts import CHARSET, render_font

        from studio.files import check_regular
        check_regular(args.font, StudioError, "--font", "font file")  # a FIFO would block the font reader
        chars = args.chars or "AaBbGgRr"
        bad = [c for c in chars if c not in CHARSET]
        if bad:
            raise StudioError(f"--chars: cannot take {''.join(bad)!r} from a font (use A-Z a-z 0-9)")
        glyphs = render_font(args.font, size=cell, charset=chars)
        if glyphs is None:
            raise StudioError(f"cannot render the characters {chars!r} from this font (not a font file, or "
                              "characters missing)", args.font)
        return list(glyphs), list(chars), f"font {args.font}"
    if not args.image or not args.chars:
        raise StudioError("encode needs --font FILE, or --image FILE with --chars TEXT (one character per cell "
                          "of the image, left to right)")
    from studio.export.image import read_glyph_strip

    images, chars = read_glyph_strip(args.image, args.chars, cell)
    return list(images), chars, f"image {args.image}"


def cmd_encode(args) -> int:
    """A latent from glyphs (a font or an image strip) or a sound, encoded on the engine's export lane; a model that
    encodes by projection (long) shows a progress bar on stderr."""
    import numpy as np

    from studio.engine import Engine
    from studio.engine.work import encode_image, submit
    from studio.params import Capability
    from studio.request import RenderRequest

    roots = _roots(args)
    entry = _resolve(args.model, roots)
    manifest = _manifest(entry)
    kind = manifest.output.kind
    if Capability.ENCODE not in entry.capabilities:
        raise StudioError(f"{entry.id} ({manifest.family} family) cannot encode {kind}")
    if kind == "audio":
        work, options, what, source = _encode_sound(args, entry)
    else:
        if args.sound:
            raise StudioError(f"{entry.id} makes images: encode glyphs with --font or --image")
        if getattr(entry.family, "encodes_pictures", False):  # a StyleGAN network: one picture, any size, in colour
            from studio.engine.work import glyph_strip

            if not args.image or args.font:
                raise StudioError(f"{entry.id} projects a picture: give --image FILE (no --font)")
            pictures, _ = glyph_strip(manifest, args.image, "")
            work, options, what = encode_image, {"images": pictures, "labels": None}, {}
            source = f"image {args.image}"
        else:
            images, labels, source = _encode_inputs(args, manifest.output["width"])
            work, options, what = encode_image, {"images": np.stack(images), "labels": labels}, \
                {"chars": "".join(labels)}
    progress = _LongWork() if Capability.PROJECT in entry.capabilities else None
    if progress is not None:
        print(f"latent-studio: projecting {source} onto {entry.id}: a long optimisation (Ctrl+C stops it)",
              file=sys.stderr)
    with Engine(device=args.device, roots=roots, threads=_threads(args)) as engine:
        engine.add_package(entry)
        job = submit(engine, RenderRequest(entry.id), work, on_event=progress.on_event if progress else None,
                     **options)
        try:
            output = job.wait()
        finally:
            if progress is not None:
                progress.close()
    rate = output.info.get("resampled_from")
    if rate:
        source += f", resampled from {rate} Hz"
    record = {"model_id": entry.id, "model_hash": job.info.get("model_sha256", ""), "source": source, **what,
              "latent": [float(v) for v in output.data]}
    text = json.dumps(record, indent=1)
    if args.out:
        from studio.export import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out} ({len(record['latent'])} numbers from {source})")
    else:
        print(text)
    return 0


def _encode_sound(args, entry) -> tuple:
    """What encodes --sound FILE (read at the model's rate on the worker) as the class --label (default: the
    model's default class): (work function, its options, what the record says, the source)."""
    from studio.engine.work import encode_sound, sound_label

    if not args.sound:
        raise StudioError(f"{entry.id} makes sounds: give --sound FILE (and --label CLASS)")
    if args.font or args.image:
        raise StudioError(f"{entry.id} makes sounds: encode a sound file with --sound, not glyphs")
    try:
        label = sound_label(entry.manifest, args.label)
    except StudioError as exc:
        raise StudioError(f"--label: {exc.problem}") from None
    return encode_sound, {"path": Path(args.sound), "label": label}, {"label": label}, f"sound {args.sound}"


class _LongWork:
    """A progress bar on stderr for long work whose length its steps say (a projection): redrawn in place on a
    terminal, a line every few seconds into a log (step/total, time left). Ctrl+C stops the work: the engine cancels
    at the next step and nothing is written."""

    def __init__(self, unit: str = "step", log_interval: float = 5.0):
        from studio.train.progress import ProgressBar

        self.unit = unit
        self.bar: ProgressBar | None = None
        self.interval = 0.5 if sys.stderr.isatty() else log_interval

    def on_event(self, event) -> None:  # on the engine's worker
        from studio.train.progress import ProgressBar

        if event.kind in ("progress", "preview") and event.total > 1:
            if self.bar is None or self.bar.total != event.total:
                self.bar = ProgressBar(event.total, unit=self.unit, min_interval=self.interval)
            self.bar.update(event.step, 1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _read_latent(path: str) -> list[float]:
    from studio.files import read_json

    data = read_json(path, StudioError, what="latent file")  # a regular file only, size- and depth-checked
    try:
        values = data["latent"] if isinstance(data, dict) else data
        return [float(v) for v in values]
    except (KeyError, TypeError, ValueError):
        raise StudioError("not a latent file (JSON with a 'latent' list of numbers, as `encode` writes)",
                          path) from None


def _latent_from_args(args, entry=None) -> tuple[float, ...] | None:
    """--latent A.json [--toward B.json --t T --path slerp|lerp] → explicit latent values (of `entry`'s model: a
    GAN's w and w+ walk as w+, the w repeated per layer)."""
    if not getattr(args, "latent", None):
        if getattr(args, "toward", None):
            raise StudioError("--toward needs --latent (the start of the walk)")
        return None
    a = _read_latent(args.latent)
    if not args.toward:
        return tuple(a)
    import torch

    from studio.latent.seeds import lerp, slerp

    b = _read_latent(args.toward)
    if len(a) != len(b):
        from studio.latent.kinds import pair

        family = entry.family if entry is not None else None
        kinds = family.latent_kinds(entry.manifest) if family is not None and entry.manifest is not None else ()
        try:
            a, b = (list(values) for values in pair(kinds, a, b))
        except ValueError as exc:
            raise StudioError(f"--latent has {len(a)} numbers but --toward has {len(b)} ({exc})") from None
    ta, tb = torch.tensor(a), torch.tensor(b)
    z = (slerp if args.path == "slerp" else lerp)(ta, tb, args.t)
    return tuple(float(v) for v in z)


def cmd_train(args) -> int:
    import torch

    from studio.train import registry
    from studio.train.recipe import read_recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data:
        return _train_on_folder(args)
    given = [flag for flag, value in _folder_options(args).items() if value is not None]
    if given:
        raise StudioError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --data FOLDER (a recipe "
                          "sets its own)")
    if not args.recipe:
        raise StudioError("train needs a RECIPE.toml, or --family vae|gan|diffusion|audio --data FOLDER to train on "
                          "your own pictures or sounds")
    recipe = read_recipe(args.recipe)  # its [package.id] is checked there, before it names any folder
    out = _out_folder(args.out, "--out") if args.out else Path("models") / recipe.package["id"]
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / recipe.package["id"]
    registry.run(recipe, out, run_dir, resume=args.resume)
    return 0


_PICTURE_OPTIONS = {"--size": "size", "--fit": "fit"}
_SOUND_OPTIONS = {"--seconds": "seconds", "--sample-rate": "sample_rate"}
_SHARED_OPTIONS = {"--family": "family", "--steps": "steps", "--batch": "batch", "--device": "device",
                   "--id": "id", "--name": "name"}


def _folder_options(args) -> dict[str, object]:
    """The options that only `train --data FOLDER` takes, by flag, with their values (None: not given)."""
    flags = {**_SHARED_OPTIONS, **_PICTURE_OPTIONS, **_SOUND_OPTIONS}
    return {flag: getattr(args, dest) for flag, dest in flags.items()}


def _train_on_folder(args) -> int:
    """`train --family vae|gan|diffusion|audio --data FOLDER`: a recipe for the folder, run; the package lands in the
    user models folder."""
    from studio.files import check_name
    from studio.manifest import package_id_from
    from studio.paths import user_data_dir, user_models_dir
    from studio.train.folder import train_folder
    from studio.train.registry import FOLDER_FAMILIES

    if args.recipe:
        raise StudioError("give either a RECIPE.toml or --data FOLDER, not both")
    family = args.family or "vae"
    if family not in FOLDER_FAMILIES:
        raise StudioError(f"training on your own data takes --family {', '.join(FOLDER_FAMILIES[:-1])} or "
                          f"{FOLDER_FAMILIES[-1]}, not {family!r}")
    sounds = family == "audio"
    wrong = [flag for flag, dest in (_PICTURE_OPTIONS if sounds else _SOUND_OPTIONS).items()
             if getattr(args, dest) is not None]
    if wrong:
        kind = "pictures (--family vae, gan or diffusion)" if sounds else "sounds (--family audio)"
        raise StudioError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for training on {kind}")
    folder = Path(args.data)
    model_id = check_name(args.id, "package id", field="--id") if args.id is not None else \
        package_id_from(folder.resolve().name, "mine")  # checked before it is part of any path
    out = _out_folder(args.out, "--out") if args.out else user_models_dir() / model_id
    run_dir = Path(args.run_dir) if args.run_dir else user_data_dir() / "runs" / model_id
    settings = {"steps": args.steps, "batch": args.batch, "device": args.device, "name": args.name}
    options = _SOUND_OPTIONS if sounds else _PICTURE_OPTIONS
    settings.update({dest: getattr(args, dest) for dest in options.values()})
    train_folder(folder, out, run_dir, model_id, family=family, resume=args.resume, **settings)
    return 0


def _gui_argv(argv: list[str]) -> list[str]:
    """Put "gui" after the top-level options so that `latent-studio [--debug] [PATH…]` opens the app."""
    top: list[str] = []
    rest = list(argv)
    while rest and rest[0] in ("--debug", "--models-dir", "--self-test"):
        top.append(rest.pop(0))
        if top[-1] == "--models-dir" and rest:
            top.append(rest.pop(0))
    return [*top, "gui", *rest]


def build_parser() -> argparse.ArgumentParser:
    from studio.request import SEED_MODES

    def common(parser: argparse.ArgumentParser, top: bool) -> None:
        # Accepted before or after the verb; on a verb the default is SUPPRESS so it never hides the top-level value.
        parser.add_argument("--debug", action="store_true", help="show tracebacks for errors",
                            default=False if top else argparse.SUPPRESS)
        parser.add_argument("--models-dir", action="append", metavar="DIR",
                            help="another folder of model packages (repeatable)",
                            default=None if top else argparse.SUPPRESS)

    p = argparse.ArgumentParser(prog="latent-studio", description="Offline studio for local generative models.")
    p.add_argument("--version", action="version", version=f"latent-studio {__version__}")
    p.add_argument("--self-test", action="store_true",
                   help="check this installation offscreen (window, every shipped model, every export format) and exit")
    common(p, top=True)
    shared = argparse.ArgumentParser(add_help=False)
    common(shared, top=False)
    sub = p.add_subparsers(dest="verb")

    m = sub.add_parser("models", parents=[shared], help="list installed model packages")
    m.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser("render", parents=[shared], help="render an image or a sound")
    r.add_argument("--model", help="package id or package folder, a diffusers Stable Diffusion folder or an SD "
                   "1.x / 2.x .safetensors file (default: the shipped default model)")
    r.add_argument("--from", dest="from_file", metavar="FILE", help="re-render the request stored in FILE")
    r.add_argument("--seed", type=int)
    r.add_argument("--prompt", help="text condition (for the glyph model: the text to draw)")
    r.add_argument("--label", help="class condition (for the sound model: kick, snare, pad …)")
    r.add_argument("--negative", help="negative prompt, where the family uses one")
    r.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a request field (steps, guidance, width, …) or a latent edit (d0, z3, truncation, …)")
    r.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    r.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    r.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    r.add_argument("--latent", metavar="FILE.json", help="start from this latent (as `encode` writes) instead of a seed")
    r.add_argument("--toward", metavar="FILE.json", help="interpolate from --latent toward this latent")
    r.add_argument("--t", type=float, default=0.5, help="how far toward --toward (0..1, default 0.5)")
    r.add_argument("--path", choices=("slerp", "lerp"), default="slerp", help="interpolation path (default slerp)")
    r.add_argument("--init", metavar="IMAGE", help="image-to-image: start from this picture (fitted to the prompt's "
                   "sheet; --set strength=0.6 by default)")
    r.add_argument("--sample-format", choices=("PCM_16", "PCM_24", "FLOAT"),
                   help="sample format of a WAV or FLAC sound (default PCM_16; FLAC takes PCM_16 or PCM_24)")
    r.add_argument("--out", help="output image (.png, .jpg, .webp) or sound (.wav, .flac, .ogg, .mp3); with --count or "
                   "--batch-size, the files are named after it: OUT-0001-sSEED.png, …")
    r.add_argument("--count", type=int, default=1, metavar="N", help="render N batches (default 1)")
    r.add_argument("--batch-size", type=int, default=1, metavar="B", help="renders per batch (default 1)")
    r.add_argument("--seed-mode", choices=SEED_MODES, default="increment",
                   help="seeds of --count × --batch-size renders: one after another from --seed (increment, the "
                   "default, and fixed), or each drawn at random (random; every file's name and metadata say it)")
    _scale_options(r, "the picture")

    c = sub.add_parser("sheet", parents=[shared], help="a contact sheet: one row per seed")
    c.add_argument("--model", help="package id or package folder (default: the shipped default model)")
    c.add_argument("--seed", type=int, help="the first seed (default 0)")
    c.add_argument("--rows", type=int, default=8, help="how many seeds (default 8)")
    c.add_argument("--prompt", help="text condition (for glyph models: the text to draw)")
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="a request field or latent edit, as for render")
    c.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    c.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    c.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    c.add_argument("--out", help="output image (default <model>-sheet.png)")

    x = sub.add_parser("grid", parents=[shared], help="an X/Y plot: one request over two parameters, labelled")
    x.add_argument("--model", help="package id or package folder (default: the shipped default model)")
    x.add_argument("--rows", required=True, metavar="NAME=V1,V2,…", help="the row parameter: seed, a request field "
                   "(steps, guidance, eta, strength) or a latent edit (d0, truncation …) and its values")
    x.add_argument("--cols", required=True, metavar="NAME=V1,V2,…", help="the column parameter, as --rows")
    x.add_argument("--seed", type=int)
    x.add_argument("--prompt", help="text condition (for glyph models: the text to draw)")
    x.add_argument("--label", help="class condition")
    x.add_argument("--set", action="append", metavar="NAME=VALUE", help="a request field or latent edit, as for render")
    x.add_argument("--title", help="the grid's title (default: model and parameters)")
    x.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    x.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    x.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    x.add_argument("--out", help="output image (default <model>-grid.png)")

    a = sub.add_parser("animate", parents=[shared], help="render a project's timeline to a video")
    a.add_argument("project", help="a .lstudio project with a timeline of two or more keyframes")
    a.add_argument("--out", required=True, help="video file: .mp4 (H.264 + AAC), .webm (VP9 + Opus), .gif, or a "
                   "folder name without a suffix for PNG frames")
    a.add_argument("--fps", type=float, help="frames per second (default: the timeline's)")
    a.add_argument("--size", help="scale the frames to WIDTHxHEIGHT (smooth, or as --filter says)")
    _scale_options(a, "every frame")
    a.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")

    i = sub.add_parser("import", parents=[shared], help="import a checkpoint (.ckpt/.pt/.pth/.pkl, never executed) "
                       "onto an installed package's architecture")
    i.add_argument("file", help="the checkpoint: a PyTorch pickle (read weights-only) or a .safetensors file; an "
                   "NVIDIA StyleGAN network pickle (network-snapshot-*.pkl) is recognised and converted on its own")
    i.add_argument("--like", metavar="MODEL", help="the installed package whose architecture it fits")
    i.add_argument("--sd", action="store_true",
                   help="a Stable Diffusion 1.x .ckpt: write it as a .safetensors file beside it (or at --out)")
    i.add_argument("--nn-tilde", action="store_true",
                   help="an nn~ TorchScript file (RAVE v1/v2, nn_tilde modules, .ts): read in a worker process and "
                   "written as a sound model package")
    i.add_argument("--seconds", type=float, help="with --nn-tilde: how long its sounds are (default 4)")
    i.add_argument("--id", help="the new package's id (default: from the file name)")
    i.add_argument("--name", help="the new package's name")
    i.add_argument("--license", help="the checkpoint's licence, recorded in model.toml")
    i.add_argument("--strip-prefix", help="a key prefix to remove (default: common ones are tried)")
    i.add_argument("--out", help="the package folder (default: the user models folder); with --sd, the file")
    i.add_argument("--force", action="store_true", help="replace a package (or with --sd, a file) already at --out")

    w = sub.add_parser("wrap", parents=[shared], help="make a TorchScript or ONNX generator into a model package")
    w.add_argument("file", help="the module: TorchScript (.pt/.pth/.ts, saved with torch.jit.save) or ONNX (.onnx)")
    w.add_argument("--latent", required=True, help="the latent's shape: 512, or 4x16x16")
    w.add_argument("--image", metavar="WxHxC", help="it makes images of this size (C: 1 grey, 3 colour)")
    w.add_argument("--audio", metavar="RATE:SAMPLES[:CHANNELS]", help="it makes sounds of this rate and length")
    w.add_argument("--classes", help="comma-separated class names, when it takes a class index as a second input")
    w.add_argument("--range", choices=("-1..1", "0..1"), default="-1..1", help="its output range (default -1..1)")
    w.add_argument("--id", help="the package id (default: from the file name)")
    w.add_argument("--name", help="the package name")
    w.add_argument("--license", help="the generator's licence, recorded in model.toml")
    w.add_argument("--out", help="the package folder (default: the user models folder)")
    w.add_argument("--force", action="store_true", help="replace a package already there")

    e = sub.add_parser("encode", parents=[shared],
                       help="encode glyphs (a font file or an image strip) or a sound file to a latent")
    e.add_argument("--model", default=None, help="package id or folder (default: the shipped default model)")
    e.add_argument("--font", help="a font file: its glyphs are rendered the way the model was trained")
    e.add_argument("--image", help="an image strip of glyphs, one equal-width cell per character of --chars; for a "
                   "StyleGAN network, any picture (projected into w+)")
    e.add_argument("--chars", help="the characters shown (with --image), or to take from --font (default AaBbGgRr)")
    e.add_argument("--sound", help="a sound file (WAV, FLAC, OGG, MP3 …; resampled to the model's rate)")
    e.add_argument("--label", help="the class of --sound (default: the model's default class)")
    e.add_argument("--device", default="auto")
    e.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    e.add_argument("--out", help="write the latent here as JSON (default: print it)")

    d = sub.add_parser("directions", parents=[shared], help="named directions: list, share (export) or import sets")
    d.add_argument("action", choices=("list", "export", "import"))
    d.add_argument("file", nargs="?", help="import: the .lsdirs file to read")
    d.add_argument("--out", help="export: the .lsdirs file to write")
    d.add_argument("--model", help="package id or folder (list: only this model; export: whose names)")
    d.add_argument("--set", help="export: the set to share, by name (default: the set in use; 'default': the "
                   "model's default)")
    d.add_argument("--default", action="store_true", help="import: also make it the model's default names (beside "
                   "the package when its folder can be written, else in your data folder)")

    g = sub.add_parser("gui", parents=[shared], help="open the desktop app (the default with no verb)")
    g.add_argument("paths", nargs="*", metavar="PATH",
                   help="projects (.lstudio), model folders or images to open (as if dropped on the window)")
    g.add_argument("--model", help="the model to start with (default: the shipped default model)")
    g.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: settings, else auto)")
    g.add_argument("--threads", type=int, help="torch threads for the render worker (default: all cores but one)")
    g.add_argument("--exit-after-ms", type=int, help=argparse.SUPPRESS)  # end-to-end tests
    g.add_argument("--report-geometry", metavar="FILE", help=argparse.SUPPRESS)  # end-to-end tests

    t = sub.add_parser("train", parents=[shared], help="train a model package from a recipe, or on your own "
                       "pictures or sounds (--data FOLDER)")
    t.add_argument("recipe", nargs="?", help="recipe.toml (or use --family FAMILY --data FOLDER)")
    t.add_argument("--data", metavar="FOLDER", help="train on your own data: a folder of pictures (PNG/JPEG/WebP/BMP "
                   "of any size) for vae, gan and diffusion, or of sounds (WAV/FLAC/OGG/MP3; sub-folders such as "
                   "kick/ and snare/ become classes) for audio")
    t.add_argument("--family", help="with --data: the family to train: vae (default), gan, diffusion or audio")
    t.add_argument("--size", type=int, help="with --data, pictures: the square size they are fitted to "
                   "(vae 64, gan and diffusion 32)")
    t.add_argument("--fit", choices=("crop", "pad", "stretch"),
                   help="with --data, pictures: how a picture becomes square (crop the centre (default), pad, or "
                   "stretch)")
    t.add_argument("--seconds", type=float, help="with --data, sounds: the length of the model's sounds (1.0)")
    t.add_argument("--sample-rate", type=int, help="with --data, sounds: the model's sample rate in Hz (22050)")
    t.add_argument("--steps", type=int, help="with --data: training steps (vae 2000, gan 3000, diffusion 3000, "
                   "audio 2000)")
    t.add_argument("--batch", type=int, help="with --data: examples per step (vae 64, the others 16)")
    t.add_argument("--device", help="with --data: cpu (default), cuda, cuda:N, mps or auto")
    t.add_argument("--id", help="with --data: the new package's id (default: the folder's name)")
    t.add_argument("--name", help="with --data: the new package's name (default: its id)")
    t.add_argument("--out", help="package folder to write (default: models/<id>; with --data the user models "
                   "folder)")
    t.add_argument("--run-dir", help="where checkpoints go (default: runs/<id>)")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    t.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return p


VERBS = ("models", "render", "sheet", "grid", "animate", "encode", "import", "wrap", "gui", "train", "directions")


def cmd_gui(args) -> int:
    from studio.sysdeps import qt_start_problem

    problem = qt_start_problem()  # before Qt loads: a missing library is named, not Qt's abort and core dump
    if problem:
        print(f"latent-studio: {problem}", file=sys.stderr)
        return 1
    model, models_dirs = _gui_model(args)
    from studio.ui.app import run

    return run(model=model, open_paths=args.paths, device=args.device, models_dirs=models_dirs,
               threads=args.threads, exit_after_ms=args.exit_after_ms, report=args.report_geometry)


def _gui_model(args) -> tuple[str | None, list[str] | None]:
    """--model for the window, read as the other verbs read it and checked before the window opens (an unknown id or
    a bad path is said on the terminal): a path (a package, pipeline folder or .safetensors file) becomes one more
    model folder and the id of what is in it; an installed id stays that id."""
    model = args.model
    if not model:
        return model, args.models_dir
    entry = _resolve(model, _roots(args))
    if entry.folder != Path(model).expanduser().absolute():  # the installed package of that id
        return entry.id, args.models_dir
    return entry.id, [*(args.models_dir or []), str(entry.folder)]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a verb: raised in the main thread, like Ctrl-C, so that every `with` and `finally` on
    the way out runs (the engine cancels and joins its export, atomic writes remove their temporaries)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _end_cleanly_on_signals(enabled: bool = True) -> Callable[[], None]:
    """From now on SIGTERM and SIGHUP raise Terminated in the main thread (once: a second signal while the first is
    being handled is ignored, so the cleanup is not cut short). Returns what puts the old handlers back."""
    import signal
    import threading

    previous: dict[int, Any] = {}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    if not enabled or threading.current_thread() is not threading.main_thread():
        return restore
    raised: list[int] = []

    def terminate(signum, _frame) -> None:
        if not raised:
            raised.append(signum)
            raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            try:
                previous[signum] = signal.signal(signum, terminate)
            except (OSError, ValueError):
                pass
    return restore


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in VERBS for a in argv) and not any(a in ("-h", "--help", "--version") for a in argv):
        argv = _gui_argv(argv)  # no verb: the desktop app
    args = build_parser().parse_args(argv)
    restore_signals = _end_cleanly_on_signals(enabled=not args.self_test and args.verb != "gui")  # a window: its own
    try:
        if args.self_test:
            from studio.ui.selftest import run_self_test
            return run_self_test(debug=args.debug)
        if args.verb == "models":
            return cmd_models(args)
        if args.verb == "directions":
            return cmd_directions(args)
        if args.verb == "train":
            return cmd_train(args)
        if args.verb == "encode":
            if args.model is None:
                from studio.library import DEFAULT_MODEL_ID
                args.model = DEFAULT_MODEL_ID
            return cmd_encode(args)
        if args.verb == "gui":
            return cmd_gui(args)
        if args.verb == "import":
            return cmd_import(args)
        if args.verb == "wrap":
            return cmd_wrap(args)
        if args.verb == "grid":
            return cmd_grid(args)
        if args.verb == "animate":
            return cmd_animate(args)
        if args.verb == "sheet":
            return cmd_sheet(args)
        return cmd_render(args)
    except StudioError as exc:
        return _fail(args, one_line(str(exc)))
    except KeyboardInterrupt as exc:
        from studio.io.atomic import remove_live

        remove_live()  # a temporary whose writer did not get to clean up (the engine's join timed out)
        if isinstance(exc, Terminated):
            import signal

            name = signal.Signals(exc.signum).name
            print(f"latent-studio: stopped by {name}; nothing partial was written", file=sys.stderr)
            return 128 + exc.signum
        print("latent-studio: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system said no: a file the user can act on, not a bug
        from studio.io.atomic import remove_live

        remove_live()
        return _fail(args, _os_error_message(exc, args))
    except Exception as exc:  # a bug: no check caught this (the hostile-input suite proves bad input never gets here)
        from studio.io.atomic import remove_live

        remove_live()  # a bug must not leave a half-written file or package folder behind either
        text = one_line(f"{type(exc).__name__}: {exc}")
        return _fail(args, f"unexpected error: {text} (run with --debug for details)", label="")
    finally:
        restore_signals()


MAX_MESSAGE = 1000  # characters of one error line: a message that quotes a huge value is cut, never echoed whole

# errno values of a write that failed for want of room or rights: the command's output is the file to name
_WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO"}


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message as one line (a parser's multi-line report joined) of at most `limit` characters."""
    text = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def _os_error_message(exc: OSError, args) -> str:
    """An OSError as the user's problem: the file it names (or the command's output, for a failed write) and why."""
    import errno

    why = exc.strerror or str(exc) or type(exc).__name__
    name = exc.filename if exc.filename is not None else None
    if name is None and errno.errorcode.get(exc.errno or -1) in _WRITE_ERRNOS and getattr(args, "out", None):
        return one_line(f"{args.out}: cannot write: {why}")
    if name is None:
        return one_line(f"{why} ({type(exc).__name__})")
    where = os.fsdecode(name) if isinstance(name, (str, bytes)) else str(name)
    if exc.filename2 is not None:
        where += f" → {os.fsdecode(exc.filename2)}"
    return one_line(f"{where}: {why}")


def _fail(args, message: str, label: str = "error: ") -> int:
    """Print one line (and with --debug the traceback first); the exit code of a refusal."""
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"latent-studio: {label}{message}", file=sys.stderr)
    return 1


def entry() -> NoReturn:
    """The `latent-studio` command, `python -m studio` and the frozen app: main(), then end the process."""
    end_process(main())


def end_process(code: int) -> NoReturn:
    """Exit with `code`. Normally through sys.exit; but when an engine worker is still inside a job after its
    shutdown gave up waiting (the window closed or Ctrl+C while a large model was loading), Python's finalization
    would kill that thread in the middle of a torch call and the C++ runtime would abort the process (status 134,
    "terminate called without an active exception"). Then the process ends at once instead, with `code`, after
    removing unfinished temporaries and flushing the logs: every file the app owns is written by then (atomic
    writes, the window's settings and autosave are saved on close)."""
    from studio.engine.scheduler import busy_workers

    busy = busy_workers()
    if not busy:
        sys.exit(code)
    import logging

    from studio.io.atomic import remove_live

    remove_live()
    logging.getLogger(__name__).info("ending at once: %s still busy after shutdown",
                                     ", ".join(t.name for t in busy))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)

