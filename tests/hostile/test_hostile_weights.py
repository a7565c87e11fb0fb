"""Weights that would render silent garbage or crash the loader: NaN, Inf, integer and boolean tensors, NaN principal
directions, truncated files and safetensors headers that lie. Each is refused at load (the listing marks the package
broken at once) with one line naming the file and the tensor."""

from __future__ import annotations

import pytest
import torch

import builders
from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()


def _tensor_case(change, tensor_in_message=True, verb="render"):
    def build(ctx):
        pkg = ctx.pkg()
        weights = pkg / "weights.safetensors"
        seen = {}

        def edit(tensors):
            name = builders.first_float_tensor(tensors)
            seen["name"] = name
            change(tensors, name)
        builders.rewrite_tensors(weights, edit)
        names = (weights, seen["name"]) if tensor_in_message else (weights,)
        if verb == "models":
            return Spec(["models", "--models-dir", ctx.models], names=names)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], names=names,
                    outputs=(out,))
    return build


def _all_nan(tensors, name):
    for key, value in tensors.items():
        if value.is_floating_point():
            tensors[key] = torch.full_like(value, float("nan"))


def _first_nan(tensors, name):
    tensors[name] = torch.full_like(tensors[name], float("nan"))


def _one_inf(tensors, name):
    value = tensors[name].clone()
    value.view(-1)[0] = float("inf")
    tensors[name] = value


def _one_neg_inf(tensors, name):
    value = tensors[name].clone()
    value.view(-1)[-1] = float("-inf")
    tensors[name] = value


def _as(dtype):
    def change(tensors, name):
        tensors[name] = tensors[name].to(dtype)
    return change


TENSORS = {"all-nan": _all_nan, "one-tensor-nan": _first_nan, "one-inf": _one_inf, "one-minus-inf": _one_neg_inf,
           "int32": _as(torch.int32), "bool": _as(torch.bool), "int8": _as(torch.int8), "uint8": _as(torch.uint8)}
for _name, _change in TENSORS.items():
    cases.add(f"weights-{_name}-render", _tensor_case(_change, tensor_in_message=_name != "all-nan"))
cases.add("weights-all-nan-render-names-a-tensor", _tensor_case(_all_nan))


def _directions(change):
    def build(ctx):
        pkg = ctx.pkg()
        directions = pkg / "directions.safetensors"
        builders.rewrite_tensors(directions, change)
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--set", "d0=2", "--out", out],
                    rc=(0, 1), names=(directions,), outputs=(out,), check=_warned_or_refused(directions))
    return build


def _warned_or_refused(path):
    def check(ctx, result):
        assert path.name in result.err, f"NaN directions neither refused nor warned about, naming {path.name}:\n" \
                                        f"{result.err}"
    return check


def _nan_all(tensors):
    for key, value in tensors.items():
        if value.is_floating_point():
            tensors[key] = torch.full_like(value, float("nan"))


def _inf_one(tensors):
    key = builders.first_float_tensor(tensors)
    value = tensors[key].clone()
    value.view(-1)[0] = float("inf")
    tensors[key] = value


cases.add("directions-all-nan", _directions(_nan_all))
cases.add("directions-one-inf", _directions(_inf_one))


# --- files that lie ------------------------------------------------------------------------------------------------


def _file_case(make, verb):
    def build(ctx):
        pkg = ctx.pkg()
        weights = pkg / "weights.safetensors"
        make(weights)
        if verb == "models":
            ctx.pkg(name="tiny-ok")
            manifest = ctx.models / "tiny-ok" / "model.toml"
            manifest.write_text(manifest.read_text().replace('id = "tiny"', 'id = "tiny-ok"', 1))
            return Spec(["models", "--models-dir", ctx.models], names=(weights,))
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], names=(weights,),
                    outputs=(out,))
    return build


def _truncate(fraction):
    def make(path):
        data = path.read_bytes()
        header, start = builders.safetensors_header(path)
        path.write_bytes(data[:start + int((len(data) - start) * fraction)])
    return make


def _offsets_past_end(path):
    header, start = builders.safetensors_header(path)
    data = path.read_bytes()[start:]
    name = next(k for k in sorted(header) if k != "__metadata__")
    a, b = header[name]["data_offsets"]
    header[name]["data_offsets"] = [a, b + (1 << 40)]
    builders.raw_header(path, header, data)


def _huge_shape(path):
    header, start = builders.safetensors_header(path)
    data = path.read_bytes()[start:]
    name = next(k for k in sorted(header) if k != "__metadata__")
    header[name]["shape"] = [1 << 20, 1 << 20, 1 << 20]
    builders.raw_header(path, header, data)


def _header_length_huge(path):
    data = path.read_bytes()
    path.write_bytes((1 << 62).to_bytes(8, "little") + data[8:])


def _header_deep(path):
    builders.raw_header(path, builders.deep_json(100_000, "object"))


def _header_not_json(path):
    builders.raw_header(path, "{" + "x" * 1000)


def _header_overlapping(path):
    header, start = builders.safetensors_header(path)
    data = path.read_bytes()[start:]
    for key in header:
        if key != "__metadata__":
            header[key]["data_offsets"] = [0, header[key]["data_offsets"][1] - header[key]["data_offsets"][0]]
    builders.raw_header(path, header, data)


def _header_many_tensors(path):
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(300_000)}
    builders.raw_header(path, header)


FILES = {"truncated-half": _truncate(0.5), "truncated-one-byte-short": _truncate(0.999),
         "offsets-past-end": _offsets_past_end, "shape-2e60": _huge_shape, "header-length-2e62": _header_length_huge,
         "header-deep-json": _header_deep, "header-not-json": _header_not_json,
         "overlapping-tensors": _header_overlapping, "header-300000-tensors": _header_many_tensors}
for _name, _make in FILES.items():
    cases.add(f"weights-{_name}-models", _file_case(_make, "models"))
    cases.add(f"weights-{_name}-render", _file_case(_make, "render"))


@pytest.mark.parametrize("name, build", cases.params)
def test_hostile_weights(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)


def test_a_good_package_is_listed_and_renders(tmp_path, corpus, runner):
    """The control: the untouched package passes the same checks."""
    def build(ctx):
        ctx.pkg()
        out = ctx.out()
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], rc=0, outputs=(out,))
    run_case("render-good", build, tmp_path, corpus, runner)
