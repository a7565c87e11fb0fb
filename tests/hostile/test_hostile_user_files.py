"""Nothing of the user's is deleted or overwritten by accident: `--force` replaces only a model package, a sibling
named `<out>.partial` is not ours to delete, ids from users and files never become paths unchecked, odd model
folders in the settings or on the command line break nothing."""

from __future__ import annotations

import pytest
import torch

from harness import SENTINEL, Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()


def _victim_files(folder):
    """A folder of the user's that is not a model package."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8 not really a jpeg " + SENTINEL)
    (folder / "notes").mkdir(exist_ok=True)
    (folder / "notes" / "todo.txt").write_bytes(SENTINEL)
    return folder


def _fitting_checkpoint(ctx):
    """A PyTorch checkpoint of tiny's own weights (fits `--like tiny`)."""
    from safetensors.torch import load_file

    ckpt = ctx.work / "model.ckpt"
    torch.save({"state_dict": load_file(str(ctx.corpus.tiny / "weights.safetensors"))}, ckpt)
    return ckpt


def _wrap(ctx, *extra):
    return ["wrap", ctx.corpus.benign_ts, "--latent", "8", "--image", "8x8x1", *extra]


@cases.add("wrap-force-over-a-user-folder")
def _(ctx):
    _victim_files(ctx.victim)
    return Spec(_wrap(ctx, "--out", ctx.victim, "--force"), names=(ctx.victim,))


@cases.add("wrap-force-over-a-user-folder-with-model-toml-name-only")
def _(ctx):
    _victim_files(ctx.victim)
    (ctx.victim / "model.toml").write_text("this is my text file, not a manifest\n")
    return Spec(_wrap(ctx, "--out", ctx.victim, "--force"), names=(ctx.victim,))


@cases.add("import-force-over-a-user-folder")
def _(ctx):
    ctx.pkg()
    _victim_files(ctx.victim)
    ckpt = _fitting_checkpoint(ctx)
    return Spec(["import", ckpt, "--like", "tiny", "--models-dir", ctx.models, "--out", ctx.victim, "--force"],
                names=(ctx.victim,))


@cases.add("import-sd-force-over-a-user-folder")
def _(ctx):
    from studio.families.stable_diffusion.files import SD1_TEXT_KEY, UNET_KEY

    _victim_files(ctx.victim)
    ckpt = ctx.work / "sd.ckpt"
    torch.save({"state_dict": {UNET_KEY: torch.zeros(4, 4), SD1_TEXT_KEY: torch.zeros(4, 4)}}, ckpt)
    return Spec(["import", ckpt, "--sd", "--out", ctx.victim, "--force"], names=(ctx.victim,))


@cases.add("wrap-beside-a-user-folder-named-out-partial")
def _(ctx):
    out = ctx.work / "pkg"
    _victim_files(ctx.work / "pkg.partial")
    return Spec(_wrap(ctx, "--out", out), rc=0, outputs=(out,))


@cases.add("wrap-beside-a-user-file-named-out-partial")
def _(ctx):
    out = ctx.work / "pkg"
    (ctx.work / "pkg.partial").write_bytes(SENTINEL)
    return Spec(_wrap(ctx, "--out", out), rc=0, outputs=(out,))


@cases.add("import-beside-a-user-folder-named-out-partial")
def _(ctx):
    ctx.pkg()
    out = ctx.work / "imported"
    _victim_files(ctx.work / "imported.partial")
    ckpt = _fitting_checkpoint(ctx)
    return Spec(["import", ckpt, "--like", "tiny", "--models-dir", ctx.models, "--out", out], rc=0,
                outputs=(out,))


BAD_IDS = {"dotdot-victim": "../../../victim", "dotdot": "..", "absolute": "/tmp/hostile-absolute-id",
           "slash": "a/b", "backslash": "a\\..\\b", "dot": ".", "nul": "a\0b", "newline": "a\nb",
           "very-long": "x" * 5000}


def _no_path_from_id(ctx, result):
    """The id is checked before it becomes a path: the message names the option, not a folder built from it."""
    models = str(ctx.data / "models")
    assert models not in result.err and ".partial" not in result.err, \
        f"the bad id was joined to a folder before it was checked:\n{result.err}"


def _wrap_id(bad):
    def build(ctx):
        _victim_files(ctx.victim)
        return Spec(_wrap(ctx, "--id", bad), names=("id",), check=_no_path_from_id)
    return build


def _import_id(bad):
    def build(ctx):
        ctx.pkg()
        _victim_files(ctx.victim)
        ckpt = _fitting_checkpoint(ctx)
        return Spec(["import", ckpt, "--like", "tiny", "--models-dir", ctx.models, "--id", bad], names=("id",),
                    check=_no_path_from_id)
    return build


for _name, _bad in BAD_IDS.items():
    if _name != "nul":  # a NUL byte cannot travel in argv
        cases.add(f"wrap-id-{_name}", _wrap_id(_bad))
for _name in ("dotdot-victim", "absolute", "slash", "dotdot"):
    cases.add(f"import-id-{_name}", _import_id(BAD_IDS[_name]))


def _recipe(bad):
    def build(ctx):
        _victim_files(ctx.victim)
        recipe = ctx.work / "recipe.toml"
        recipe.write_text(f'trainer = "glyph-vae"\n\n[package]\nid = "{bad}"\nname = "x"\nversion = "1.0.0"\n'
                          'license = "CC0-1.0"\ndescription = "x"\n\n[data]\nsource = "debian-fonts"\nsize = 16\n'
                          '\n[model]\nlatent_dim = 4\nwidth = 4\nclass_dim = 4\nhidden = 8\n\n[train]\nsteps = 1\n')
        return Spec(["train", recipe], names=(recipe, "id"))
    return build


cases.add("recipe-package-id-dotdot-victim", _recipe("../../../victim"))
cases.add("recipe-package-id-absolute", _recipe("/tmp/hostile-recipe-id"))


@cases.add("train-data-id-dotdot-victim")
def _(ctx):
    _victim_files(ctx.victim)
    from PIL import Image

    data = ctx.work / "pictures"
    data.mkdir()
    for i in range(4):
        Image.new("L", (16, 16), 40 * i).save(data / f"p{i}.png")
    return Spec(["train", "--data", data, "--id", "../../../victim", "--steps", "1"], names=("id",),
                check=_no_path_from_id)


@cases.add("manifest-id-dotdot-render-default-out")
def _(ctx):
    pkg = ctx.pkg()
    manifest = pkg / "model.toml"
    manifest.write_text(manifest.read_text().replace('id = "tiny"', 'id = "../../victim/escape"', 1))
    return Spec(["render", "--model", pkg], names=(manifest, "id"))


@cases.add("manifest-id-absolute-render-default-out")
def _(ctx):
    pkg = ctx.pkg()
    manifest = pkg / "model.toml"
    escape = ctx.victim / "escape"
    manifest.write_text(manifest.read_text().replace('id = "tiny"', f'id = "{escape}"', 1))
    return Spec(["render", "--model", pkg], names=(manifest, "id"))


# --- odd model folders ----------------------------------------------------------------------------------------------


def _settings_folders(folders, verb):
    def build(ctx):
        ctx.pkg()
        settings = ctx.data / "settings.toml"
        settings.write_text("model_folders = [" + ", ".join(f'"{f}"' for f in folders) + "]\n")
        if verb == "models":
            return Spec(["models", "--models-dir", ctx.models], rc=0, check=_listed("tiny"),
                        allow_gone=("home/data/settings.toml*",), allow_new=("home/data/settings.toml*",))
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], rc=0, outputs=(out,),
                    allow_gone=("home/data/settings.toml*",), allow_new=("home/data/settings.toml*",))
    return build


def _listed(model_id):
    def check(ctx, result):
        assert any(line.split()[:1] == [model_id] for line in result.out.splitlines()), \
            f"the valid package {model_id!r} is no longer listed:\n{result.out}\n{result.err}"
    return check


cases.add("settings-model-folders-dev-null-models", _settings_folders(["/dev/null"], "models"))
cases.add("settings-model-folders-dev-null-render", _settings_folders(["/dev/null"], "render"))
cases.add("settings-model-folders-dev-zero-and-proc-render", _settings_folders(["/dev/zero", "/proc/self"],
                                                                               "render"))


@cases.add("models-dir-dev-null-models")
def _(ctx):
    ctx.pkg()
    return Spec(["models", "--models-dir", "/dev/null", "--models-dir", ctx.models], rc=(0, 1), names=("/dev/null",),
                check=_listed("tiny"))


@cases.add("models-dir-dev-null-render")
def _(ctx):
    ctx.pkg()
    out = ctx.out()
    return Spec(["render", "--models-dir", "/dev/null", "--models-dir", ctx.models, "--model", "tiny", "--out", out],
                rc=(0, 1), names=("/dev/null",), outputs=(out,))


@cases.add("models-dir-is-a-fifo-render")
def _(ctx):
    import os

    ctx.pkg()
    fifo = ctx.root / "fifo-dir"
    os.mkfifo(fifo)
    out = ctx.out()
    return Spec(["render", "--models-dir", fifo, "--models-dir", ctx.models, "--model", "tiny", "--out", out],
                rc=(0, 1), names=(fifo,), outputs=(out,))


@cases.add("render-out-is-a-link-to-a-user-file")
def _(ctx):
    ctx.pkg()
    link = ctx.work / "out.png"
    link.symlink_to(ctx.victim / "precious.txt")
    return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", link], rc=(0, 1), names=(link,),
                allow_gone=("work/out.png",), outputs=(link,))


@cases.add("animate-frames-into-a-user-folder")
def _(ctx):
    from studio.project import Document, save_document
    from studio.project.timeline import Keyframe, Timeline
    from studio.request import RenderRequest

    ctx.pkg()
    _victim_files(ctx.victim)
    keys = tuple(Keyframe(RenderRequest("tiny", params={"prompt": "Ab"}, latent=(float(i),) * 8), duration=0.1)
                 for i in range(2))
    project = save_document(Document(request=keys[0].request, timeline=Timeline(keys)), ctx.work / "w.lstudio")
    return Spec(["animate", project, "--models-dir", ctx.models, "--out", ctx.victim], rc=(0, 1),
                names=(ctx.victim,), allow_new=("victim/frame-*",))


@pytest.mark.parametrize("name, build", cases.params)
def test_user_files_are_safe(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
