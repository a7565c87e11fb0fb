"""Checkpoints that are pickles built to hurt: a tiny "billion laughs" (shared children walked as a tree), a state
dict that holds itself, lists that share children, and pickles whose __reduce__ runs code. `import --like` and
`import --sd` refuse each quickly with one line naming the file, run nothing, and write nothing. So does a bare
`import FILE.pkl` of NVIDIA network pickles built to hurt: a module that holds itself, modules nested 200 deep, and
an os.mkdir call beside a real generator."""

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


# `import FILE.pkl` alone: a file naming NVIDIA's persistence reconstructor goes to the network-pickle reader
NETWORK_PICKLES = {
    "module-loop": (lambda ctx, path: builders.network_pickle_loop(path), "holds one of its own parents"),
    "modules-200-deep": (lambda ctx, path: builders.network_pickle_deep(path), "nest more than"),
    "mkdir-trap": (lambda ctx, path: builders.network_pickle_trap(path, ctx.marker("unpickled")), "mkdir"),
}


def _network(make, says, into_user_models=False):
    def build(ctx):
        pkl = make(ctx, ctx.work / "network-snapshot-000000.pkl")
        if into_user_models:
            return Spec(["import", pkl], names=(pkl, says), outputs=(ctx.data / "models" / pkl.stem,))
        out = ctx.work / "imported"
        return Spec(["import", pkl, "--out", out], names=(pkl, says), outputs=(out,))
    return build


for _name, (_make, _says) in NETWORK_PICKLES.items():
    cases.add(f"import-network-pickle-{_name}", _network(_make, _says))
cases.add("import-network-pickle-into-user-models-mkdir-trap", _network(*NETWORK_PICKLES["mkdir-trap"], True))


@pytest.mark.parametrize("name, build", cases.params)
def test_hostile_pickle(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
