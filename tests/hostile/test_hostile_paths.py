"""Shared files never choose a model by path: a picture, a sound or a project that names a model folder (or file)
outside the installed packages is refused with one line naming the path and how to add it (`--models-dir`); the
folder's code never runs."""

from __future__ import annotations

import json

import pytest

import builders
from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()


def _evil_folder(ctx, kind):
    """A package planted outside the models folders (say, in Downloads): plain, or with a TorchScript payload."""
    downloads = ctx.root / "Downloads"
    downloads.mkdir(exist_ok=True)
    if kind == "plain":
        return ctx.pkg(name="evil", into=downloads)
    pkg = ctx.pkg(ctx.corpus.ts_package, name="evil-ts", into=downloads)
    builders.torchscript("from-file-write", pkg / "generator.pt", str(ctx.marker("opened-picture")))
    return pkg


def _png_naming(target):
    def build(ctx):
        ctx.pkg()
        evil = _evil_folder(ctx, target[0])
        model_id = target[1](ctx, evil)
        params = {} if target[0] == "ts" else {"prompt": "Ab"}
        picture = builders.png(ctx.work / "shared.png", texts={
            "latent-studio": ctx.corpus.request_json(model_id=model_id, model_hash="", params=params)})
        out = ctx.out("again.png")
        return Spec(["render", "--from", picture, "--models-dir", ctx.models, "--out", out],
                    names=(model_id, "--models-dir"), outputs=(out,))
    return build


TARGETS = {
    "folder": ("plain", lambda ctx, evil: str(evil)),
    "torchscript-folder": ("ts", lambda ctx, evil: str(evil)),
    "relative-folder": ("plain", lambda ctx, evil: "../Downloads/evil"),
    "weights-file": ("plain", lambda ctx, evil: str(evil / "weights.safetensors")),
    "home-tilde-folder": ("plain", lambda ctx, evil: "~/../Downloads/evil"),
}
for _name, _target in TARGETS.items():
    cases.add(f"png-names-model-{_name}", _png_naming(_target))


@cases.add("wav-names-model-folder")
def _(ctx):
    ctx.pkg(ctx.corpus.tiny_audio)
    downloads = ctx.root / "Downloads"
    evil = ctx.pkg(ctx.corpus.tiny_audio, name="evil-audio", into=downloads)
    request = json.loads(ctx.corpus.request_json(model_id=str(evil), model_hash="", latent=[0.1] * 4,
                                                 params={"label": "kick"}))
    sound = builders.wav(ctx.work / "shared.wav", json.dumps(request))
    out = ctx.out("again.wav")
    return Spec(["render", "--from", sound, "--models-dir", ctx.models, "--out", out], names=(evil, "--models-dir"),
                outputs=(out,))


def _project(ctx, model_id="tiny", folder="", keyframes=3, sha="", params=None, **timeline):
    """A .lstudio project written by the app's own writer, with models[] naming `folder`."""
    from studio.project import Document, save_document
    from studio.project.document import ModelRef
    from studio.project.timeline import Keyframe, Timeline
    from studio.request import RenderRequest

    keys = tuple(Keyframe(RenderRequest(model_id, params={"prompt": "Ab"} if params is None else params,
                                        latent=tuple(float((i + j) % 3 - 1) for j in range(8))), duration=0.25)
                 for i in range(keyframes))
    doc = Document(request=keys[0].request, timeline=Timeline(keys, **timeline))
    if folder:
        doc.models.append(ModelRef(id=model_id, sha256=sha or "0" * 64, name="Evil", folder=folder))
    return save_document(doc, ctx.work / "shared.lstudio")


@cases.add("project-models-folder-points-outside")
def _(ctx):
    ctx.pkg()
    evil = _evil_folder(ctx, "plain")
    _rename_id(evil, "evil")
    project = _project(ctx, "evil", folder=str(evil))
    out = ctx.out("walk.gif")
    return Spec(["animate", project, "--models-dir", ctx.models, "--out", out], names=(evil, "--models-dir"),
                outputs=(out,))


@cases.add("project-models-folder-torchscript-payload")
def _(ctx):
    ctx.pkg()
    evil = _evil_folder(ctx, "ts")
    project = _project(ctx, "ts-gen", folder=str(evil), params={})
    out = ctx.out("walk.gif")
    return Spec(["animate", project, "--models-dir", ctx.models, "--out", out], names=(evil, "--models-dir"),
                outputs=(out,))


@cases.add("project-request-names-model-folder")
def _(ctx):
    ctx.pkg()
    evil = _evil_folder(ctx, "plain")
    project = _project(ctx, str(evil))
    out = ctx.out("walk.gif")
    return Spec(["animate", project, "--models-dir", ctx.models, "--out", out], names=(evil, "--models-dir"),
                outputs=(out,))


@cases.add("png-model-id-traversal")
def _(ctx):
    ctx.pkg()
    _evil_folder(ctx, "plain")
    picture = builders.png(ctx.work / "shared.png",
                           texts={"latent-studio": ctx.corpus.request_json(model_id="../../Downloads/evil")})
    out = ctx.out("again.png")
    # the path is never followed: the installed package with the weights the file names renders instead
    return Spec(["render", "--from", picture, "--models-dir", ctx.models, "--out", out], rc=0, outputs=(out,))


def _rename_id(folder, new_id):
    manifest = folder / "model.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace('id = "tiny"', f'id = "{new_id}"', 1))


@pytest.mark.parametrize("name, build", cases.params)
def test_file_never_chooses_a_model_by_path(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)


def test_the_installed_model_by_id_still_renders_from_a_picture(tmp_path, corpus, runner):
    """The control: a picture naming an installed model by id and hash re-renders."""
    def build(ctx):
        ctx.pkg()
        picture = builders.png(ctx.work / "shared.png", texts={"latent-studio": ctx.corpus.request_json()})
        out = ctx.out("again.png")
        return Spec(["render", "--from", picture, "--models-dir", ctx.models, "--out", out], rc=0, outputs=(out,))
    run_case("png-by-id", build, tmp_path, corpus, runner)
