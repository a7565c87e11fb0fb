"""`latent-studio`: the app's command line. With no verb it renders the default model (the window comes later).

Verbs:
  models [--json]                 list installed model packages, with errors for invalid ones
  render --model ID|FOLDER ...    render to an image with the request in its metadata
  render --from FILE.png ...      re-render exactly what made FILE.png
  train RECIPE.toml               train a model package from a recipe
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from studio import __version__
from studio.errors import StudioError


def _parse_set(items: list[str]) -> tuple[dict, dict]:
    """--set name=value → (request field changes, latent edits)."""
    from studio.latent.edits import parse_edit_name
    from studio.request import SETTABLE_FIELDS

    fields, edits = {}, {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise StudioError(f"--set takes name=value, got {item!r}")
        if name in SETTABLE_FIELDS:
            if name in ("steps", "width", "height", "seed"):
                try:
                    fields[name] = int(value)
                except ValueError:
                    raise StudioError(f"--set {name} needs a whole number, got {value!r}") from None
            elif name in ("guidance", "eta"):
                try:
                    fields[name] = float(value)
                except ValueError:
                    raise StudioError(f"--set {name} needs a number, got {value!r}") from None
            else:
                fields[name] = value
            continue
        try:
            parse_edit_name(name)
        except ValueError as exc:
            settable = ", ".join(sorted(SETTABLE_FIELDS))
            raise StudioError(f"--set: {exc}; request fields: {settable}") from None
        try:
            edits[name] = float(value)
        except ValueError:
            raise StudioError(f"--set {name} needs a number, got {value!r}") from None
    return fields, edits


def _roots(args) -> list[Path]:
    from studio.library import default_roots
    from studio.settings import load_settings

    return default_roots([*load_settings().model_folders, *(args.models_dir or [])])


def cmd_models(args) -> int:
    from studio.library import scan

    entries = scan(_roots(args))
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
    else:
        if not entries:
            print("no model packages found in: " + ", ".join(str(r) for r in _roots(args)))
        for e in entries:
            d = e.to_dict()
            if e.ok:
                print(f"{d['id']:<20} {d['family']:<10} {d['output']:<6} {d['sha256'][:12]}  {d['path']}")
            else:
                print(f"{d['id']:<20} INVALID  {d['error']}")
    return 0 if all(e.ok for e in entries) or args.json else 1


def cmd_render(args) -> int:
    from studio.engine import EXPORT, Engine
    from studio.export import check_writable_folder, read_request, save_image
    from studio.library import resolve
    from studio.request import RenderRequest

    out = Path(args.out) if args.out else None
    roots = _roots(args)
    if args.from_file:
        request = read_request(args.from_file)
        if out is None:
            raise StudioError("--from needs --out (the file to write)")
    else:
        request = None
    entry = None
    model = args.model or (request.model_id if request else None)
    if model is None:
        from studio.library import DEFAULT_MODEL_ID
        model = DEFAULT_MODEL_ID
    entry = resolve(model, roots)
    if out is None:
        out = Path(f"{entry.id}-{args.seed if args.seed is not None else 0}.png")
    check_writable_folder(out)  # fail before any work
    fields, edits = _parse_set(args.set or [])
    if request is None:
        request = RenderRequest(model_id=entry.id, seed=args.seed or 0)
    else:
        request = request.with_(model_id=entry.id) if args.model else request
        if args.seed is not None:
            request = request.with_(seed=args.seed)
    if args.prompt is not None:
        request = request.with_(prompt=args.prompt)
    if args.negative is not None:
        request = request.with_(negative_prompt=args.negative)
    if args.dtype:
        fields["dtype"] = args.dtype
    if fields:
        request = request.with_(**fields)
    for name, value in edits.items():
        request = request.edit(name, value)
    with Engine(device=args.device, roots=roots) as engine:
        engine.add_package(entry)
        job = engine.submit(request, EXPORT)
        output = job.wait()
        if output.kind != "image":
            raise StudioError(f"{entry.id} makes {output.kind}, and `render` writes images")
        save_image(out, output.data, request, model_name=job.info.get("model_name", ""),
                   model_sha256=job.info.get("model_sha256", ""))
    note = job.info.get("fallback") or job.info.get("dtype_note")
    print(f"wrote {out} ({output.size[0]}x{output.size[1]}, {entry.id}, seed {request.seed}, "
          f"{job.seconds * 1000:.0f} ms on {job.info.get('device')})" + (f"; {note}" if note else ""))
    return 0


def cmd_train(args) -> int:
    import torch

    from studio.train.recipe import read_recipe

    recipe = read_recipe(args.recipe)
    if args.threads:
        torch.set_num_threads(args.threads)
    if recipe.trainer == "glyph-vae":
        from studio.train import glyphs as trainer
    else:
        raise StudioError(f"unknown trainer {recipe.trainer!r} (known: glyph-vae)", recipe.path, "trainer")
    out = Path(args.out) if args.out else Path("models") / recipe.package["id"]
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / recipe.package["id"]
    trainer.train(recipe, out, run_dir, resume=args.resume)
    return 0


def build_parser() -> argparse.ArgumentParser:
    def common(parser: argparse.ArgumentParser, top: bool) -> None:
        # Accepted before or after the verb; on a verb the default is SUPPRESS so it never hides the top-level value.
        extra = {} if top else {"default": argparse.SUPPRESS}
        parser.add_argument("--debug", action="store_true", help="show tracebacks for errors", **extra)
        parser.add_argument("--models-dir", action="append", metavar="DIR",
                            help="another folder of model packages (repeatable)", **extra)

    p = argparse.ArgumentParser(prog="latent-studio", description="Offline studio for local generative models.")
    p.add_argument("--version", action="version", version=f"latent-studio {__version__}")
    common(p, top=True)
    shared = argparse.ArgumentParser(add_help=False)
    common(shared, top=False)
    sub = p.add_subparsers(dest="verb")

    m = sub.add_parser("models", parents=[shared], help="list installed model packages")
    m.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser("render", parents=[shared], help="render an image")
    r.add_argument("--model", help="package id or package folder (default: the shipped default model)")
    r.add_argument("--from", dest="from_file", metavar="FILE", help="re-render the request stored in FILE")
    r.add_argument("--seed", type=int)
    r.add_argument("--prompt", help="text condition (for the glyph model: the text to draw)")
    r.add_argument("--negative", help="negative prompt, where the family uses one")
    r.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a request field (steps, guidance, width, …) or a latent edit (d0, z3, truncation, …)")
    r.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    r.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    r.add_argument("--out", help="output image (.png, .jpg, .webp)")

    t = sub.add_parser("train", parents=[shared], help="train a model package from a recipe")
    t.add_argument("recipe", help="recipe.toml")
    t.add_argument("--out", help="package folder to write (default: models/<id>)")
    t.add_argument("--run-dir", help="where checkpoints go (default: runs/<id>)")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    t.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "models":
            return cmd_models(args)
        if args.verb == "train":
            return cmd_train(args)
        if args.verb is None:  # the app's main job until the window exists: render the default model
            top = (["--debug"] if args.debug else []) + [x for d in args.models_dir or [] for x in ("--models-dir", d)]
            args = build_parser().parse_args([*top, "render"])
        return cmd_render(args)
    except StudioError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"latent-studio: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("latent-studio: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"latent-studio: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)",
                  file=sys.stderr)
        return 1
