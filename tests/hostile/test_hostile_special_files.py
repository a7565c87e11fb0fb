"""Only regular files are read: a FIFO, a link to /dev/zero or a symlink loop where the app expects weights, a
manifest, directions, a project, settings, an init image, a stored request, a latent, a checkpoint, a module, a
sound, a font or a recipe is refused with one line naming it — never a hang, and one broken package never hangs or
breaks the listing or another model."""

from __future__ import annotations

import pytest

import builders
from builders import SPECIAL
from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()


def _listed(model_id):
    def check(ctx, result):
        assert any(line.split()[:1] == [model_id] for line in result.out.splitlines()), \
            f"the valid package {model_id!r} is no longer listed:\n{result.out}\n{result.err}"
    return check


def weights_render(kind):
    def build(ctx):
        pkg = ctx.pkg()
        builders.special(pkg / "weights.safetensors", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out],
                    names=(pkg / "weights.safetensors",), outputs=(out,))
    return build


def weights_models(kind):
    def build(ctx):
        pkg = ctx.pkg()
        ctx.pkg(name="tiny-ok")
        _rename(ctx.models / "tiny-ok", "tiny-ok")
        builders.special(pkg / "weights.safetensors", kind)
        return Spec(["models", "--models-dir", ctx.models], names=(pkg / "weights.safetensors",),
                    check=_listed("tiny-ok"))
    return build


def weights_other_model(kind):
    """A broken package beside the one asked for: the render still works."""
    def build(ctx):
        pkg = ctx.pkg()
        ctx.pkg(name="tiny-ok")
        _rename(ctx.models / "tiny-ok", "tiny-ok")
        builders.special(pkg / "weights.safetensors", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny-ok", "--out", out], rc=0,
                    outputs=(out,))
    return build


def manifest_models(kind):
    def build(ctx):
        pkg = ctx.pkg()
        ctx.pkg(name="tiny-ok")
        _rename(ctx.models / "tiny-ok", "tiny-ok")
        builders.special(pkg / "model.toml", kind)
        return Spec(["models", "--models-dir", ctx.models], names=(pkg / "model.toml",), check=_listed("tiny-ok"))
    return build


def directions_render(kind):
    def build(ctx):
        pkg = ctx.pkg()
        builders.special(pkg / "directions.safetensors", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], rc=(0, 1),
                    names=(pkg / "directions.safetensors",), says=(pkg / "directions.safetensors",), outputs=(out,))
    return build


def project_animate(kind):
    def build(ctx):
        ctx.pkg()
        project = builders.special(ctx.work / "walk.lstudio", kind)
        out = ctx.out("walk.gif")
        return Spec(["animate", project, "--models-dir", ctx.models, "--out", out], names=(project,),
                    outputs=(out,))
    return build


def settings_models(kind):
    """A settings file that cannot be read: the command works on the defaults and says so, naming the file."""
    def build(ctx):
        ctx.pkg()
        settings = builders.special(ctx.data / "settings.toml", kind)
        return Spec(["models", "--models-dir", ctx.models], rc=0, says=(settings,), check=_listed("tiny"),
                    allow_gone=("home/data/settings.toml*",), allow_new=("home/data/settings.toml*",))
    return build


def settings_render(kind):
    def build(ctx):
        ctx.pkg()
        settings = builders.special(ctx.data / "settings.toml", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], rc=0, outputs=(out,),
                    says=(settings,), allow_gone=("home/data/settings.toml*",),
                    allow_new=("home/data/settings.toml*",))
    return build


def init_render(kind):
    def build(ctx):
        ctx.pkg(ctx.corpus.tiny_diffusion)
        init = builders.special(ctx.work / "init.png", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny-diffusion", "--set", "steps=2",
                     "--init", init, "--out", out], names=(init,), outputs=(out,))
    return build


def from_render(kind):
    def build(ctx):
        ctx.pkg()
        source = builders.special(ctx.work / "shared.png", kind)
        out = ctx.out("again.png")
        return Spec(["render", "--models-dir", ctx.models, "--from", source, "--out", out], names=(source,),
                    outputs=(out,))
    return build


def from_sound_render(kind):
    def build(ctx):
        ctx.pkg(ctx.corpus.tiny_audio)
        source = builders.special(ctx.work / "shared.wav", kind)
        out = ctx.out("again.wav")
        return Spec(["render", "--models-dir", ctx.models, "--from", source, "--out", out], names=(source,),
                    outputs=(out,))
    return build


def latent_render(kind):
    def build(ctx):
        ctx.pkg()
        latent = builders.special(ctx.work / "style.json", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--latent", latent, "--out", out],
                    names=(latent,), outputs=(out,))
    return build


def checkpoint_import(kind):
    def build(ctx):
        ctx.pkg()
        ckpt = builders.special(ctx.work / "model.ckpt", kind)
        out = ctx.work / "imported"
        return Spec(["import", ckpt, "--like", "tiny", "--models-dir", ctx.models, "--out", out], names=(ckpt,),
                    outputs=(out,))
    return build


def checkpoint_import_sd(kind):
    def build(ctx):
        ckpt = builders.special(ctx.work / "sd.ckpt", kind)
        out = ctx.work / "sd.safetensors"
        return Spec(["import", ckpt, "--sd", "--out", out], names=(ckpt,), outputs=(out,))
    return build


def module_wrap(kind):
    def build(ctx):
        module = builders.special(ctx.work / "generator.pt", kind)
        out = ctx.work / "pkg"
        return Spec(["wrap", module, "--latent", "8", "--image", "8x8x1", "--out", out], names=(module,),
                    outputs=(out,))
    return build


def module_render(kind):
    def build(ctx):
        pkg = ctx.pkg(ctx.corpus.ts_package)
        builders.special(pkg / "generator.pt", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "ts-gen", "--out", out],
                    names=(pkg / "generator.pt",), outputs=(out,))
    return build


def sound_encode(kind):
    def build(ctx):
        ctx.pkg(ctx.corpus.tiny_audio)
        sound = builders.special(ctx.work / "hit.wav", kind)
        return Spec(["encode", "--models-dir", ctx.models, "--model", "tiny-audio", "--sound", sound,
                     "--label", "kick"], names=(sound,))
    return build


def font_encode(kind):
    def build(ctx):
        ctx.pkg()
        font = builders.special(ctx.work / "font.ttf", kind)
        return Spec(["encode", "--models-dir", ctx.models, "--model", "tiny", "--font", font], names=(font,))
    return build


def image_encode(kind):
    def build(ctx):
        ctx.pkg()
        strip = builders.special(ctx.work / "strip.png", kind)
        return Spec(["encode", "--models-dir", ctx.models, "--model", "tiny", "--image", strip, "--chars", "Ab"],
                    names=(strip,))
    return build


def recipe_train(kind):
    def build(ctx):
        recipe = builders.special(ctx.work / "recipe.toml", kind)
        return Spec(["train", recipe, "--out", ctx.work / "trained"], names=(recipe,),
                    outputs=(ctx.work / "trained",))
    return build


def _rename(folder, new_id):
    manifest = folder / "model.toml"
    manifest.write_text(manifest.read_text().replace('id = "tiny"', f'id = "{new_id}"', 1))


TARGETS = {
    "weights-render": weights_render, "weights-models": weights_models, "weights-beside-other-model":
    weights_other_model, "manifest-models": manifest_models, "directions-render": directions_render,
    "project-animate": project_animate, "settings-models": settings_models, "settings-render": settings_render,
    "init-image-render": init_render, "from-picture-render": from_render, "from-sound-render": from_sound_render,
    "latent-render": latent_render, "checkpoint-import": checkpoint_import, "checkpoint-import-sd":
    checkpoint_import_sd, "module-wrap": module_wrap, "module-render": module_render, "sound-encode": sound_encode,
    "font-encode": font_encode, "image-strip-encode": image_encode, "recipe-train": recipe_train,
}
for _target, _make in TARGETS.items():
    for _kind in SPECIAL:
        cases.add(f"{_target}-{_kind}", _make(_kind))


@pytest.mark.parametrize("name, build", cases.params)
def test_special_file(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
