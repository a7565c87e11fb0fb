"""Code-bearing model files (TorchScript, ONNX) as an attacker writes them: a payload that reads or writes the
user's files, or never returns, must be refused before it runs — by `wrap`, by `render` of a package that holds it,
and by `models` listing it — naming the file and the operator (or node / tensor)."""

from __future__ import annotations

import pytest

import builders
from studio.limits import MAX_TRIAL_SECONDS
from harness import TIMEOUT, Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()

# payload kind → the operator a refusal should name
TS_PAYLOADS = {"from-file-write": "from_file", "from-file-read": "from_file", "save": "save",
               "helper-method": "from_file", "dormant-branch": "save", "exported-method": "from_file"}


def _ts_target(ctx, kind):
    return str(ctx.secret) if kind == "from-file-read" else str(ctx.marker(kind))


def _wrap_ts(kind):
    def build(ctx):
        module = builders.torchscript(kind, ctx.root / f"{kind}.pt", _ts_target(ctx, kind))
        out = ctx.work / "pkg"
        return Spec(["wrap", module, "--latent", "8", "--image", "8x8x1", "--out", out],
                    names=(module, TS_PAYLOADS[kind]), outputs=(out,))
    return build


def _render_ts(kind):
    def build(ctx):
        pkg = ctx.pkg(ctx.corpus.ts_package)
        builders.torchscript(kind, pkg / "generator.pt", _ts_target(ctx, kind))
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "ts-gen", "--out", out],
                    names=(pkg / "generator.pt", TS_PAYLOADS[kind]), outputs=(out,))
    return build


def _render_ts_by_folder(kind):
    def build(ctx):
        pkg = ctx.pkg(ctx.corpus.ts_package)
        builders.torchscript(kind, pkg / "generator.pt", _ts_target(ctx, kind))
        out = ctx.out()
        return Spec(["render", "--model", pkg, "--out", out], names=(pkg / "generator.pt", TS_PAYLOADS[kind]),
                    outputs=(out,))
    return build


for _kind in TS_PAYLOADS:
    cases.add(f"wrap-torchscript-{_kind}", _wrap_ts(_kind))
    cases.add(f"render-torchscript-{_kind}", _render_ts(_kind))
cases.add("render-torchscript-from-file-write-by-folder", _render_ts_by_folder("from-file-write"))


@cases.add("wrap-torchscript-endless-loop")
def _(ctx):
    module = builders.torchscript("loop", ctx.root / "loop.pt")
    out = ctx.work / "pkg"
    # wrap ends the trial render after limits.MAX_TRIAL_SECONDS: a hang is a run well past that
    return Spec(["wrap", module, "--latent", "8", "--image", "8x8x1", "--out", out], names=(module,), outputs=(out,),
                timeout=max(TIMEOUT, MAX_TRIAL_SECONDS + 30))


@cases.add("models-lists-torchscript-payload-without-running-it")
def _(ctx):
    pkg = ctx.pkg(ctx.corpus.ts_package)
    builders.torchscript("from-file-write", pkg / "generator.pt", str(ctx.marker("listing")))
    ctx.pkg()
    return Spec(["models", "--models-dir", ctx.models], rc=(0, 1), check=lambda ctx, r: _listed(r, "tiny"))


def _listed(result, model_id):
    assert any(line.split()[:1] == [model_id] for line in result.out.splitlines()), \
        f"the valid package {model_id!r} is not listed:\n{result.out}"


# --- ONNX ------------------------------------------------------------------------------------------------------------


def _wrap_onnx(kind, location, names):
    def build(ctx):
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        files = ctx.root / "downloads"
        files.mkdir()
        where = location(ctx) if callable(location) else location
        model = builders.onnx_model(kind, files / f"{kind}.onnx", where)
        out = ctx.work / "pkg"
        return Spec(["wrap", model, "--latent", "8", "--image", "8x8x1", "--out", out], names=(model, *names),
                    outputs=(out,))
    return build


def _render_onnx(kind, location, names):
    def build(ctx):
        pytest.importorskip("onnx")
        pkg = ctx.pkg(ctx.corpus.onnx_package)
        where = location(ctx) if callable(location) else location
        builders.onnx_model(kind, pkg / "generator.onnx", where)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "onnx-gen", "--out", out],
                    names=(pkg / "generator.onnx", *names), outputs=(out,))
    return build


ONNX = {
    "custom-domain": ("", ("com.evil.ops",)),
    "external-data-outside-folder": ("../secret.txt", ("W",)),
    "external-data-absolute-path": (lambda ctx: str(ctx.secret), ("W",)),
    "external-data-parent-chain": ("../../../../../../../../etc/hostname", ("W",)),
}
for _name, (_where, _names) in ONNX.items():
    _kind = "custom-domain" if _name == "custom-domain" else "external"
    cases.add(f"wrap-onnx-{_name}", _wrap_onnx(_kind, _where, _names))
    cases.add(f"render-onnx-{_name}", _render_onnx(_kind, _where, _names))


@pytest.mark.parametrize("name, build", cases.params)
def test_code_bearing_model(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)


def test_benign_torchscript_still_wraps_and_renders(tmp_path, corpus, runner):
    """The control: the same harness passes a well-behaved module (the refusals above are not refusals of all)."""
    def build(ctx):
        out = ctx.work / "pkg"
        return Spec(["wrap", ctx.corpus.benign_ts, "--latent", "8", "--image", "8x8x1", "--id", "good",
                     "--out", out], rc=0, outputs=(out,))
    run_case("wrap-benign", build, tmp_path / "wrap", corpus, runner)

    def render(ctx):
        ctx.pkg(ctx.corpus.ts_package)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "ts-gen", "--out", out], rc=0, outputs=(out,))
    run_case("render-benign", render, tmp_path / "render", corpus, runner)
