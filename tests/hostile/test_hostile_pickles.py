"""Checkpoints that are pickles built to hurt: a tiny "billion laughs" (shared children walked as a tree), a state
dict that holds itself, lists that share children, and pickles whose __reduce__ runs code. `import --like` and
`import --sd` refuse each quickly with one line naming the file, run nothing, and write nothing."""

from __future__ import annotations

import pytest

import builders
from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()

PICKLES = {
    "billion-laughs-dicts": lambda ctx, path: builders.billion_laughs(path),
    "billion-laughs-dicts-30-levels": lambda ctx, path: builders.billion_laughs(path, levels=30),
    "self-referencing-state-dict": lambda ctx, path: builders.self_referencing(path),
    "billion-laughs-lists-raw-pickle": lambda ctx, path: builders.list_laughs(path),
    "reduce-runs-code-torch-zip": lambda ctx, path: builders.reduce_trap(path, ctx.marker("unpickled")),
    "reduce-runs-code-raw-pickle": lambda ctx, path: builders.raw_reduce_trap(path, ctx.marker("unpickled")),
}


def _like(make):
    def build(ctx):
        ctx.pkg()
        ckpt = make(ctx, ctx.work / "model.ckpt")
        out = ctx.work / "imported"
        return Spec(["import", ckpt, "--like", "tiny", "--models-dir", ctx.models, "--out", out], names=(ckpt,),
                    outputs=(out,))
    return build


def _like_default_folder(make):
    def build(ctx):
        ctx.pkg()
        ckpt = make(ctx, ctx.work / "model.ckpt")
        return Spec(["import", ckpt, "--like", "tiny", "--models-dir", ctx.models, "--id", "imported"],
                    names=(ckpt,), outputs=(ctx.data / "models" / "imported",))
    return build


def _sd(make):
    def build(ctx):
        ckpt = make(ctx, ctx.work / "sd.ckpt")
        out = ctx.work / "sd.safetensors"
        return Spec(["import", ckpt, "--sd", "--out", out], names=(ckpt,), outputs=(out,))
    return build


def _sd_beside(make):
    def build(ctx):
        ckpt = make(ctx, ctx.work / "sd.ckpt")
        return Spec(["import", ckpt, "--sd"], names=(ckpt,), outputs=(ctx.work / "sd.safetensors",))
    return build


for _name, _make in PICKLES.items():
    cases.add(f"import-like-{_name}", _like(_make))
    cases.add(f"import-sd-{_name}", _sd(_make))
cases.add("import-like-into-user-models-billion-laughs", _like_default_folder(PICKLES["billion-laughs-dicts"]))
cases.add("import-sd-beside-self-referencing", _sd_beside(PICKLES["self-referencing-state-dict"]))


@pytest.mark.parametrize("name, build", cases.params)
def test_hostile_pickle(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
