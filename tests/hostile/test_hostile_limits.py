"""Limits before allocation: nesting past any parser's recursion (TOML, JSON in packages, pictures, sounds, projects,
latents, pipelines), sizes past any memory (manifests, stored requests, command-line options, picture headers,
compressed text chunks, init images, timelines), and a tokenizer that is not one. Each is refused with one line
naming the file and the field, quoting at most a little of the bad value; one broken package never breaks another."""

from __future__ import annotations

import json
import tomllib
import zlib

import pytest
import tomli_w

import builders
from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()


def _edit_manifest(folder, change):
    path = folder / "model.toml"
    data = tomllib.loads(path.read_text())
    change(data)
    path.write_text(tomli_w.dumps(data))
    return path


def _listed(model_id):
    def check(ctx, result):
        assert any(line.split()[:1] == [model_id] for line in result.out.splitlines()), \
            f"the valid package {model_id!r} is no longer listed:\n{result.out}\n{result.err}"
    return check


def _two_packages(ctx):
    """'tiny' (to break) and 'tiny-ok' beside it."""
    broken = ctx.pkg()
    ok = ctx.pkg(name="tiny-ok")
    _edit_manifest(ok, lambda d: d.update(id="tiny-ok"))
    return broken, ok


def _render(ctx, model="tiny", out="out.png", *extra):
    path = ctx.out(out)
    return ["render", "--models-dir", ctx.models, "--model", model, *extra, "--out", path], path


# --- nesting ----------------------------------------------------------------------------------------------------------


def _deep_manifest(text):
    def build_models(ctx):
        broken, _ = _two_packages(ctx)
        manifest = broken / "model.toml"
        manifest.write_text(text + "\n" + manifest.read_text())
        return Spec(["models", "--models-dir", ctx.models], names=(manifest,), check=_listed("tiny-ok"))

    def build_render_other(ctx):
        broken, _ = _two_packages(ctx)
        manifest = broken / "model.toml"
        manifest.write_text(text + "\n" + manifest.read_text())
        argv, out = _render(ctx, "tiny-ok")
        return Spec(argv, rc=0, outputs=(out,))

    def build_render(ctx):
        broken, _ = _two_packages(ctx)
        manifest = broken / "model.toml"
        manifest.write_text(text + "\n" + manifest.read_text())
        argv, out = _render(ctx, "tiny")
        return Spec(argv, names=(manifest,), outputs=(out,))
    return build_models, build_render_other, build_render


for _name, _text in {"arrays": "junk = " + builders.deep_toml_value(),
                     "inline-tables": "junk = " + "{a = " * 100_000 + "1" + "}" * 100_000}.items():
    _m, _o, _r = _deep_manifest(_text)
    cases.add(f"manifest-deep-{_name}-models", _m)
    cases.add(f"manifest-deep-{_name}-render-other-model", _o)
    cases.add(f"manifest-deep-{_name}-render", _r)


@cases.add("settings-deep-arrays")
def _(ctx):
    ctx.pkg()
    settings = ctx.data / "settings.toml"
    settings.write_text("model_folders = " + builders.deep_toml_value() + "\n")
    return Spec(["models", "--models-dir", ctx.models], rc=0, says=(settings,), check=_listed("tiny"),
                allow_gone=("home/data/settings.toml*",), allow_new=("home/data/settings.toml*",))


@cases.add("recipe-deep-arrays")
def _(ctx):
    recipe = ctx.work / "recipe.toml"
    recipe.write_text('trainer = "glyph-vae"\njunk = ' + builders.deep_toml_value() + "\n")
    return Spec(["train", recipe, "--out", ctx.work / "trained"], names=(recipe,), outputs=(ctx.work / "trained",))


def _picture_with(text_of):
    def build(ctx):
        ctx.pkg()
        picture = builders.png(ctx.work / "shared.png", texts={"latent-studio": text_of(ctx)})
        out = ctx.out("again.png")
        return Spec(["render", "--models-dir", ctx.models, "--from", picture, "--out", out], names=(picture,),
                    outputs=(out,))
    return build


cases.add("png-request-deep-json-lists", _picture_with(lambda ctx: builders.deep_json(100_000)))
cases.add("png-request-deep-json-objects", _picture_with(lambda ctx: builders.deep_json(100_000, "object")))
cases.add("png-request-deep-json-in-params", _picture_with(
    lambda ctx: ctx.corpus.request_json(params={"prompt": "Ab", "x": None}).replace("null", builders.deep_json())))


@cases.add("wav-request-deep-json")
def _(ctx):
    ctx.pkg(ctx.corpus.tiny_audio)
    sound = builders.wav(ctx.work / "shared.wav", builders.deep_json(100_000))
    out = ctx.out("again.wav")
    return Spec(["render", "--models-dir", ctx.models, "--from", sound, "--out", out], names=(sound,),
                outputs=(out,))


@cases.add("project-deep-json")
def _(ctx):
    ctx.pkg()
    project = ctx.work / "walk.lstudio"
    project.write_text('{"format": "latent-studio-project", "version": 2, "latents": ' + builders.deep_json() + "}")
    out = ctx.out("walk.gif")
    return Spec(["animate", project, "--models-dir", ctx.models, "--out", out], names=(project,), outputs=(out,))


@cases.add("latent-file-deep-json")
def _(ctx):
    ctx.pkg()
    latent = ctx.work / "style.json"
    latent.write_text('{"latent": ' + builders.deep_json() + "}")
    argv, out = _render(ctx, "tiny", "out.png", "--latent", latent)
    return Spec(argv, names=(latent,), outputs=(out,))


@cases.add("pipeline-model-index-deep-json")
def _(ctx):
    folder = ctx.models / "sd-deep"
    folder.mkdir()
    index = folder / "model_index.json"
    index.write_text('{"_class_name": "StableDiffusionPipeline", "unet": ' + builders.deep_json() + "}")
    out = ctx.out()
    return Spec(["render", "--model", folder, "--out", out], names=(index,), outputs=(out,))


# --- a tokenizer that is not one --------------------------------------------------------------------------------------


def _vocab(text):
    def build(ctx):
        pipeline = ctx.pkg(ctx.corpus.sd_pipeline, name="sd-tiny")
        vocab = pipeline / "tokenizer" / "vocab.json"
        vocab.write_text(text)
        out = ctx.out()
        return Spec(["render", "--model", pipeline, "--prompt", "a cat", "--set", "steps=2", "--out", out],
                    names=(vocab,), outputs=(out,), timeout=max(120.0, _timeout()))
    return build


def _timeout():
    from harness import TIMEOUT
    return TIMEOUT


cases.add("sd-vocab-json-a-list", _vocab("[1, 2, 3]"))
cases.add("sd-vocab-json-wrong-types", _vocab('{"a": "b", "c": [1]}'))
cases.add("sd-vocab-json-not-json", _vocab("{not json"))
cases.add("sd-vocab-json-deep", _vocab(builders.deep_json(100_000, "object")))


# --- sizes in manifests -----------------------------------------------------------------------------------------------


def _manifest_size(change, field):
    def build(ctx):
        pkg = ctx.pkg()
        manifest = _edit_manifest(pkg, change)
        argv, out = _render(ctx)
        return Spec(argv, names=(manifest, field), outputs=(out,))
    return build


def _set(table, key, value):
    def change(data):
        data[table][key] = value
    return change


cases.add("manifest-output-width-1e6", _manifest_size(_set("output", "width", 1_000_000), "output."))
cases.add("manifest-image-size-1e6", _manifest_size(
    lambda d: (d["output"].update(width=1_000_000, height=1_000_000), d["architecture"].update(image_size=1_000_000)),
    "image_size"))
cases.add("manifest-hidden-2e31", _manifest_size(_set("architecture", "hidden", 2**31), "hidden"))
cases.add("manifest-width-2e31", _manifest_size(_set("architecture", "width", 2**31), "width"))
cases.add("manifest-latent-1e9", _manifest_size(_set("latent", "shape", [1_000_000_000]), "latent"))
cases.add("manifest-latent-negative", _manifest_size(_set("latent", "shape", [-8]), "latent"))
cases.add("manifest-channels-1e6", _manifest_size(_set("output", "channels", 1_000_000), "channels"))


@cases.add("manifest-audio-length-1e12")
def _(ctx):
    pkg = ctx.pkg(ctx.corpus.tiny_audio)
    manifest = _edit_manifest(pkg, _set("output", "length", 10**12))
    argv, out = _render(ctx, "tiny-audio", "out.wav")
    return Spec(argv, names=(manifest, "length"), outputs=(out,))


@cases.add("manifest-labels-1e6")
def _(ctx):
    pkg = ctx.pkg(ctx.corpus.tiny_audio)
    manifest = _edit_manifest(pkg, lambda d: d["conditions"].update(labels=[f"l{i}" for i in range(200_000)]))
    argv, out = _render(ctx, "tiny-audio", "out.wav")
    return Spec(argv, names=(manifest,), outputs=(out,))


# --- sizes in stored requests and options -----------------------------------------------------------------------------


def _stored(model_source, model_id, change, field, out_name="again.png"):
    def build(ctx):
        ctx.pkg(getattr(ctx.corpus, model_source))
        data = json.loads(ctx.corpus.request_json())
        data.update(model_id=model_id, model_hash="")
        change(data)
        picture = builders.png(ctx.work / "shared.png", texts={"latent-studio": json.dumps(data)})
        out = ctx.out(out_name)
        return Spec(["render", "--models-dir", ctx.models, "--from", picture, "--out", out], names=(picture, field),
                    outputs=(out,))
    return build


cases.add("png-request-60000x60000", _stored("tiny", "tiny", lambda d: d.update(width=60000, height=60000), "width"))
cases.add("png-request-60000x60000-diffusion", _stored(
    "tiny_diffusion", "tiny-diffusion", lambda d: d.update(width=60000, height=60000, latent=None), "width"))
cases.add("png-request-steps-1e9", _stored(
    "tiny_diffusion", "tiny-diffusion", lambda d: d.update(latent=None, params={"prompt": "Ab", "steps": 10**9}),
    "steps"))
cases.add("png-request-latent-1e6-values", _stored("tiny", "tiny", lambda d: d.update(latent=[0.5] * 1_000_000),
                                                   "latent"))
cases.add("png-request-seed-2e80", _stored("tiny", "tiny", lambda d: d.update(seed=2**80), "seed"))
# a stored request over limits.MAX_METADATA_TEXT is refused whole, before it is parsed: the text chunk is the field
cases.add("png-request-5mb-prompt", _stored("tiny", "tiny", lambda d: d["params"].update(prompt="A" * 5_000_000),
                                            "latent-studio"))
cases.add("png-request-1mb-model-id", _stored("tiny", "tiny", lambda d: d.update(model_id="x" * 1_000_000),
                                              "model_id"))
cases.add("png-request-1e6-params", _stored(
    "tiny", "tiny", lambda d: d["params"].update({f"p{i}": i for i in range(300_000)}), "latent-studio"))


@cases.add("cli-set-size-60000-diffusion")
def _(ctx):
    ctx.pkg(ctx.corpus.tiny_diffusion)
    argv, out = _render(ctx, "tiny-diffusion", "out.png", "--set", "width=60000", "--set", "height=60000")
    return Spec(argv, names=("width",), outputs=(out,))


@cases.add("cli-set-steps-1e9")
def _(ctx):
    ctx.pkg(ctx.corpus.tiny_diffusion)
    argv, out = _render(ctx, "tiny-diffusion", "out.png", "--set", "steps=1000000000")
    return Spec(argv, names=("steps",), outputs=(out,))


@cases.add("sheet-rows-1e9")
def _(ctx):
    ctx.pkg()
    out = ctx.out("sheet.png")
    return Spec(["sheet", "--models-dir", ctx.models, "--model", "tiny", "--rows", "1000000000", "--out", out],
                names=("--rows",), outputs=(out,))


@cases.add("wrap-latent-1e9")
def _(ctx):
    out = ctx.work / "pkg"
    return Spec(["wrap", ctx.corpus.benign_ts, "--latent", "1000000000", "--image", "8x8x1", "--out", out],
                names=("--latent",), outputs=(out,))


@cases.add("wrap-image-100000-square")
def _(ctx):
    out = ctx.work / "pkg"
    return Spec(["wrap", ctx.corpus.benign_ts, "--latent", "8", "--image", "100000x100000x3", "--out", out],
                names=("--image",), outputs=(out,))


# --- pictures past any memory -----------------------------------------------------------------------------------------


def _init(make, name="init.png"):
    def build(ctx):
        ctx.pkg(ctx.corpus.tiny_diffusion)
        init = make(ctx, ctx.work / name)
        argv, out = _render(ctx, "tiny-diffusion", "out.png", "--set", "steps=2", "--init", init)
        return Spec(argv, names=(init,), outputs=(out,))
    return build


def _corpus_big_png(side):
    def make(ctx, path):
        source = ctx.corpus.root / f"big-{side}.png"
        if not source.exists():
            builders.big_png(source, side)
        path.symlink_to(source)  # a link to a regular file: followed, as a user's would be
        return path
    return make


cases.add("init-png-header-100000-square", _init(lambda ctx, p: builders.png(p, 100_000, 100_000)))
cases.add("init-png-real-30000-square", _init(_corpus_big_png(30_000)))
cases.add("init-png-real-12000-square", _init(_corpus_big_png(12_000)))


@cases.add("encode-strip-png-header-100000-square")
def _(ctx):
    ctx.pkg()
    strip = builders.png(ctx.work / "strip.png", 100_000, 100_000)
    return Spec(["encode", "--models-dir", ctx.models, "--model", "tiny", "--image", strip, "--chars", "Ab"],
                names=(strip,))


@cases.add("from-png-header-100000-square")
def _(ctx):
    ctx.pkg()
    picture = builders.png(ctx.work / "shared.png", 100_000, 100_000,
                           texts={"latent-studio": ctx.corpus.request_json()})
    out = ctx.out("again.png")
    return Spec(["render", "--models-dir", ctx.models, "--from", picture, "--out", out], rc=(0, 1),
                names=(picture,), outputs=(out,))


def _bomb_text(chunk):
    def build(ctx):
        ctx.pkg()
        data = zlib.compress(b"A" * (40 << 20), 9)  # 40 MB of text in ~40 kB
        kwargs = {"ztexts": {"latent-studio": data}} if chunk == "ztxt" else {"itxts": {"latent-studio": data}}
        picture = builders.png(ctx.work / "shared.png", **kwargs)
        out = ctx.out("again.png")
        return Spec(["render", "--models-dir", ctx.models, "--from", picture, "--out", out], names=(picture,),
                    outputs=(out,))
    return build


cases.add("png-40mb-compressed-ztxt-request", _bomb_text("ztxt"))
cases.add("png-40mb-compressed-itxt-request", _bomb_text("itxt"))


@cases.add("wav-40mb-request-chunk")
def _(ctx):
    ctx.pkg(ctx.corpus.tiny_audio)
    sound = builders.wav(ctx.work / "shared.wav", '{"model_id": "' + "A" * (40 << 20) + '"}')
    out = ctx.out("again.wav")
    return Spec(["render", "--models-dir", ctx.models, "--from", sound, "--out", out], names=(sound,),
                outputs=(out,))


@cases.add("wav-chunk-claims-4gb")
def _(ctx):
    ctx.pkg(ctx.corpus.tiny_audio)
    sound = builders.wav(ctx.work / "shared.wav", None)
    with open(sound, "ab") as f:
        f.write(b"lsrq" + (0xFFFFFFF0).to_bytes(4, "little") + b"{")
    out = ctx.out("again.wav")
    return Spec(["render", "--models-dir", ctx.models, "--from", sound, "--out", out], names=(sound,),
                outputs=(out,))


# --- timelines --------------------------------------------------------------------------------------------------------


def _project_json(ctx, keyframes=3, duration=0.25, **timeline):
    from studio.project import Document, save_document
    from studio.project.timeline import Keyframe, Timeline
    from studio.request import RenderRequest

    keys = tuple(Keyframe(RenderRequest("tiny", params={"prompt": "Ab"},
                                        latent=tuple(float((i + j) % 3 - 1) for j in range(8))), duration=0.25)
                 for i in range(min(keyframes, 3)))
    path = save_document(Document(request=keys[0].request, timeline=Timeline(keys)), ctx.work / "walk.lstudio")
    data = json.loads(path.read_text())
    frames = data["timeline"]["keyframes"]
    while len(frames) < keyframes:
        frames.append(frames[len(frames) % 3])
    for frame in frames:
        frame["duration"] = duration
    data["timeline"].update(timeline)
    path.write_text(json.dumps(data))
    return path


def _animate(field, *extra, **project):
    def build(ctx):
        ctx.pkg()
        path = _project_json(ctx, **project)
        out = ctx.out("walk.gif")
        return Spec(["animate", path, "--models-dir", ctx.models, "--out", out, *extra],
                    names=(field,) if extra else (path, field), outputs=(out,))
    return build


cases.add("timeline-keyframe-lasting-1e6-s", _animate("duration", duration=1e6))
cases.add("timeline-keyframe-lasting-1e300-s", _animate("duration", duration=1e300))
cases.add("timeline-100000-keyframes", _animate("keyframes", keyframes=100_000))
cases.add("timeline-fps-1e9", _animate("fps", fps=1e9))
cases.add("timeline-fps-nan", _animate("fps", fps=float("nan")))
cases.add("animate-cli-fps-1e9", _animate("--fps", "--fps", "1000000000"))
cases.add("animate-cli-size-100000-square", _animate("--size", "--size", "100000x100000"))


@pytest.mark.parametrize("name, build", cases.params)
def test_limit(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
