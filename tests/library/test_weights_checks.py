"""Weights checked at load (studio.io.weights, studio.library.load_model) and safetensors headers checked in full
against their file (studio.io.safetensors.read_header): damaged weights are refused naming the file and the tensor,
damaged optional directions are dropped with a warning naming the file."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import studio.io.safetensors as st
from studio.errors import WeightsError
from studio.io.safetensors import read_header
from studio.io.weights import all_finite, check_finite, read_tensors
from studio.library import load_model, resolve
from studio.manifest import WEIGHTS_NAME
from studio.request import RenderRequest

from conftest import finish


def _rewrite(path: Path, change) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def _first_float(tensors: dict[str, torch.Tensor]) -> str:
    return sorted(name for name, t in tensors.items() if t.is_floating_point() and t.numel() > 1)[0]


# --- finite values --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_finds_one_bad_value_anywhere(dtype, bad):
    for size in (1, 7, 64, 4099, 100_003):  # (the vectorised reductions' tails too)
        for where in {0, size // 2, size - 1}:
            t = torch.randn(size).to(dtype)
            t[where] = bad
            assert not all_finite(t), (size, where)
        assert all_finite(torch.randn(size).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_large_finite_values_whose_sum_overflows_are_finite(dtype):
    big = torch.finfo(dtype).max / 2
    t = torch.full((1000,), big, dtype=dtype)
    assert not torch.isfinite(t.sum())  # the fast path fails here …
    assert all_finite(t)  # … and the exact test says so


def test_non_float_and_empty_tensors_are_finite():
    assert all_finite(torch.arange(5)) and all_finite(torch.ones(3, dtype=torch.bool))
    assert all_finite(torch.empty(0)) and not all_finite(torch.tensor([1 + 0j, complex("nan")]))


def test_check_finite_names_the_tensor_and_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(WeightsError, match=r"w\.safetensors: tensor 'b\.weight' holds NaN") as info:
        check_finite({"a.weight": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan")])}, path)
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="'a' holds infinite values"):
        check_finite({"a": torch.tensor([float("inf")])}, path)


# --- the weights of a package, at load ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["all-nan", "one-inf", "one-nan"])
def test_non_finite_weights_are_refused_naming_the_tensor(tiny_package, damage):
    weights = tiny_package / WEIGHTS_NAME
    names: list[str] = []

    def change(tensors):
        name = _first_float(tensors)
        names.append(name)
        if damage == "all-nan":
            for key, t in tensors.items():
                if t.is_floating_point():
                    tensors[key] = torch.full_like(t, float("nan"))
        else:
            tensors[name] = tensors[name].clone()
            tensors[name].view(-1)[-1] = float("inf") if damage == "one-inf" else float("nan")

    _rewrite(weights, change)
    entry = resolve(str(tiny_package))  # the header is whole: the package is listed as usable …
    with pytest.raises(WeightsError) as info:  # … and refused when loaded, naming the file and the tensor
        load_model(entry)
    message = str(info.value)
    assert str(weights) in message and repr(names[0]) in message and "\n" not in message
    assert ("NaN" if damage != "one-inf" else "infinite") in message


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.int64, torch.uint8])
def test_weights_stored_as_integers_or_bools_are_refused(tiny_package, dtype):
    weights = tiny_package / WEIGHTS_NAME
    names: list[str] = []

    def change(tensors):
        name = _first_float(tensors)
        names.append(name)
        tensors[name] = (tensors[name] * 100).to(dtype)

    _rewrite(weights, change)
    with pytest.raises(WeightsError) as info:
        load_model(resolve(str(tiny_package)))
    message = str(info.value)
    stored = str(dtype).replace("torch.", "")
    assert str(weights) in message and f"{names[0]} is stored as {stored}" in message
    assert "needs floating point" in message


def test_float16_weights_still_load(tiny_package):
    _rewrite(tiny_package / WEIGHTS_NAME, lambda t: t.update({k: v.half() for k, v in t.items()
                                                              if v.is_floating_point()}))
    model = load_model(resolve(str(tiny_package)))
    assert all(torch.isfinite(p).all() for p in model.network.parameters())


def test_nan_directions_are_dropped_with_a_warning_naming_the_file(tiny_package, caplog):
    directions = tiny_package / "directions.safetensors"
    _rewrite(directions, lambda t: t.update({k: torch.full_like(v, float("nan")) for k, v in t.items()
                                             if v.is_floating_point()}))
    entry = resolve(str(tiny_package))
    with caplog.at_level(logging.WARNING, logger="studio.library"):
        model = load_model(entry)
    assert model.directions is None
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(directions) in warned[0] and "not used" in warned[0]
    output, _ = finish(model.family.render(model, RenderRequest(model_id=entry.id, seed=3, params={"prompt": "Ab"})))
    assert output.data is not None and torch.isfinite(torch.as_tensor(output.data, dtype=torch.float32)).all()


def test_integer_directions_are_refused(tiny_package):
    directions = tiny_package / "directions.safetensors"
    _rewrite(directions, lambda t: t.update({k: v.to(torch.int32) for k, v in t.items()}))
    with pytest.raises(WeightsError, match=r"directions\.safetensors: tensor '.*' is stored as int32"):
        load_model(resolve(str(tiny_package)))


# --- headers, checked against the file ------------------------------------------------------------------------------


def _write_raw(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_a_whole_file_reads_with_its_byte_ranges(tmp_path):
    path = tmp_path / "ok.safetensors"
    save_file({"a": torch.ones(2, 3), "b": torch.zeros(4, dtype=torch.float16)}, str(path))
    header = read_header(path)
    assert header.tensors == {"a": ("F32", (2, 3)), "b": ("F16", (4,))}
    assert sorted(header.offsets.values()) == [(0, 8), (8, 32)] or sorted(header.offsets.values()) == [(0, 24),
                                                                                                          (24, 32)]
    assert header.data_start + 32 == path.stat().st_size


@pytest.mark.parametrize("header, data, match", [
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "truncated: tensor 'a' ends"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 16, "its data_offsets span 12"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 16, "run backwards"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 16, "overlap"),
    ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype 'Q4'"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "no valid shape"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, "no valid data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, True]}}, b"\0" * 8, "no valid data_offsets"),
    ({"a": [1, 2]}, b"", "not described by a table"),
])
def test_a_header_that_does_not_fit_its_file_is_refused(tmp_path, header, data, match):
    path = _write_raw(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(WeightsError, match=match) as info:
        read_header(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_too_many_tensors_and_a_huge_header_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "many.safetensors"
    save_file({f"t{i}": torch.ones(1) for i in range(5)}, str(path))
    monkeypatch.setattr(st, "MAX_TENSORS", 4)
    with pytest.raises(WeightsError, match="5 tensors is over the limit of 4"):
        read_header(path)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", st.MAX_HEADER_BYTES + 1) + b"{}")
    with pytest.raises(WeightsError, match="header length is impossible.*over the limit"):
        read_header(huge)
    deep = _write_raw(tmp_path / "deep.safetensors", {}, b"")
    deep.write_bytes(struct.pack("<Q", 2000) + b"[" * 1000 + b"]" * 1000)
    with pytest.raises(WeightsError, match="nests too deeply"):
        read_header(deep)


def test_a_truncated_weights_file_is_found_from_its_header_when_scanned(tiny_package):
    weights = tiny_package / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated: tensor") as info:
        resolve(str(tiny_package))
    assert str(weights) in str(info.value)
    with pytest.raises(WeightsError, match="truncated"):
        read_tensors(weights)
