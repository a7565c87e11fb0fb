"""Hostile direction sets (.lsdirs, issue 20 part 6) for `latent-studio directions import` and for the sets a
model's names come from when `render --set NAME=…` looks a name up: FIFOs, links to /dev/zero and symlink loops,
a 2 GiB file, deep JSON, NaN and Infinity, a vector of the wrong length, a model that is not installed, an id that
tries to climb out of the data folder. Each is refused with one line naming the file (and the field), or — for a
set in the user folder that cannot be read — skipped without a hang while the render goes on by param names."""

from __future__ import annotations

import json

import pytest

import builders
from builders import SPECIAL
from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()
FORMAT = "latent-studio-directions"


def _doc(model_id="tiny", **entry) -> str:
    return json.dumps({"format": FORMAT, "version": 1, "name": "Shared", "model": {"id": model_id},
                       "directions": [{"index": 0, "name": "Bold", **entry}]})


def special_import(kind):
    def build(ctx):
        ctx.pkg()
        shared = builders.special(ctx.work / "shared.lsdirs", kind)
        return Spec(["directions", "import", shared, "--models-dir", ctx.models], names=(shared,))
    return build


def special_stored_render(kind):
    """A FIFO (…) in place of the set the model used last, and of its last-used note: render --set by param name
    goes on."""
    def build(ctx):
        ctx.pkg()
        folder = ctx.data / "directions" / "tiny"
        builders.special(folder / "Mine.lsdirs", kind)
        builders.special(folder / "last-used", kind)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--set", "d0=1", "--out", out],
                    rc=0, outputs=(out,))
    return build


for _kind in SPECIAL:
    cases.add(f"directions-import-{_kind}", special_import(_kind))
    cases.add(f"directions-stored-render-{_kind}", special_stored_render(_kind))


def _import(text: str | bytes, *names: str, model=True):
    def build(ctx):
        if model:
            ctx.pkg()
        shared = ctx.work / "shared.lsdirs"
        shared.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return Spec(["directions", "import", shared, "--models-dir", ctx.models], names=(shared, *names))
    return build


cases.add("directions-deep-json", _import("[" * 100_000 + "]" * 100_000, "nested"))
cases.add("directions-nan", _import(_doc(vector=[float("nan")] * 8), "NaN"))  # json.dumps writes NaN
cases.add("directions-infinity-literal", _import(_doc(vector="X").replace('"X"', "[Infinity, 0, 0, 0, 0, 0, 0, 0]"),
                                                 "Infinity"))
cases.add("directions-huge-number", _import(_doc(vector="X").replace('"X"', "[1e999, 0, 0, 0, 0, 0, 0, 0]"),
                                            "directions[0].vector", "infinite"))
cases.add("directions-wrong-length", _import(_doc(vector=[1.0, 0.0, 0.0]), "model.dimension"))
cases.add("directions-not-installed", _import(_doc("nope"), "model.id", "not installed"))
cases.add("directions-climbing-id", _import(_doc("../../../victim"), "model.id", "not installed"))
cases.add("directions-pickle", _import(b"\x80\x04\x95cos\nsystem\n(S'touch PWNED'\ntR.", "not UTF-8"))


def _huge(ctx):
    ctx.pkg()
    shared = ctx.work / "huge.lsdirs"
    with open(shared, "wb") as f:
        f.truncate(2 << 30)  # sparse: refused by its size before a byte is read
    return Spec(["directions", "import", shared, "--models-dir", ctx.models], names=(shared, "over the limit"))


cases.add("directions-2gib", _huge)


@pytest.mark.parametrize("name, build", cases.params)
def test_hostile_direction_set(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
