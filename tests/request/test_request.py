"""RenderRequest: validation, JSON round trips, immutability, params, reading version-1 requests (studio.request)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from studio.errors import RequestError
from studio.latent.seeds import MAX_SEED, sample_prior
from studio.library import resolve
from studio.request import REQUEST_VERSION, Params, RenderRequest

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def glyphs():
    """The shipped VAE's parameter specs (a text prompt, latent edits, 16 directions)."""
    return resolve(str(MODELS / "glyphs")).parameters


@pytest.fixture(scope="module")
def diffusion():
    """The shipped diffusion model's parameter specs (sampler settings, image to image)."""
    return resolve(str(MODELS / "glyph-diffusion")).parameters


def _round_trips(req: RenderRequest) -> None:
    via_json = RenderRequest.from_json(req.to_json())
    via_dict = RenderRequest.from_dict(req.to_dict())
    via_dict_json = RenderRequest.from_dict(json.loads(json.dumps(req.to_dict())))
    for back in (via_json, via_dict, via_dict_json):
        assert back == req
        assert hash(back) == hash(req)
        assert back.to_json() == req.to_json()
        assert [type(v) for v in back.params.values()] == [type(v) for v in req.params.values()]


def test_defaults_round_trip():
    req = RenderRequest("tiny")
    assert req.seed == 0 and req.latent is None and req.params == {} and len(req.params) == 0
    assert req.dtype == "float32"
    _round_trips(req)
    data = json.loads(req.to_json())
    assert data["version"] == REQUEST_VERSION == 2
    assert data["model_id"] == "tiny"
    assert data["params"] == {}


def test_json_is_canonical():
    a = RenderRequest("tiny", seed=3, params={"z1": 1.0, "d0": 2.0})
    b = RenderRequest("tiny", seed=3, params={"d0": 2.0, "z1": 1.0})
    assert a.to_json() == b.to_json()
    assert a == b and hash(a) == hash(b)
    assert " " not in a.to_json()


def test_float32_latent_keeps_exact_bits():
    z = sample_prior(123, (16,))
    z[0] = 1e-38  # a subnormal-adjacent float32
    z[1] = -3.4e38
    req = RenderRequest("tiny", latent=tuple(z.tolist()))
    _round_trips(req)
    back = RenderRequest.from_json(req.to_json())
    restored = torch.tensor(back.latent, dtype=torch.float32)
    assert restored.numpy().tobytes() == z.numpy().tobytes()


def test_latent_given_as_list_is_stored_as_tuple_of_floats():
    req = RenderRequest("tiny", latent=[1, 2.5, -3])
    assert req.latent == (1.0, 2.5, -3.0)
    assert all(type(v) is float for v in req.latent)
    hash(req)


def test_params_are_stored_sorted_and_round_trip():
    req = RenderRequest("tiny", params={"z3": 0.5, "truncation": 0.7, "d1": -1.0, "mix_seed": 4})
    names = list(req.params)
    assert names == sorted(names)
    assert dict(req.params) == {"z3": 0.5, "truncation": 0.7, "d1": -1.0, "mix_seed": 4}
    assert type(req.params["mix_seed"]) is int  # seeds stay whole numbers
    assert all(type(req.params[k]) is float for k in ("z3", "truncation", "d1"))
    _round_trips(req)


def test_all_sampler_fields_round_trip(diffusion):
    req = RenderRequest("tiny", model_hash="ab" * 32, seed=MAX_SEED, width=320, height=200, dtype="bfloat16",
                        params={"d0": 1.5, "prompt": "Ab\nc", "negative_prompt": "blurry", "label": "cat",
                                "steps": 25, "guidance": 7.5, "eta": 0.0, "sampler": "euler", "strength": 0.25})
    _round_trips(req)
    back = RenderRequest.from_json(req.to_json())
    assert back.seed == MAX_SEED and back.param("steps") == 25 and back.param("guidance") == 7.5
    assert back.param("eta") == 0.0 and type(back.param("steps")) is int
    assert back.width == 320 and back.height == 200 and back.dtype == "bfloat16" and back.param("label") == "cat"
    assert back.param("prompt") == "Ab\nc" and back.param("negative_prompt") == "blurry"
    assert back.model_hash == "ab" * 32 and back.param("sampler") == "euler" and back.param("strength") == 0.25
    # a whole number where the family takes a number is normalised by the model's specs
    checked = diffusion.check(RenderRequest("tiny", params={"guidance": 7}))
    assert checked.param("guidance") == 7.0 and isinstance(checked.param("guidance"), float)


def test_seeds_up_to_2_to_the_64_minus_1_round_trip_exactly():
    assert MAX_SEED == 2**64 - 1
    for seed in (0, 1, 2**53 + 1, 2**63, MAX_SEED - 1, MAX_SEED):
        req = RenderRequest("tiny", seed=seed, params={"mix_seed": seed, "variation_seed": MAX_SEED - seed})
        _round_trips(req)
        back = RenderRequest.from_json(req.to_json())
        assert back.seed == seed and type(back.seed) is int
        assert back.param("mix_seed") == seed and type(back.param("mix_seed")) is int
        assert back.param("variation_seed") == MAX_SEED - seed
        assert f'"seed":{seed}' in req.to_json()  # written as a JSON integer, not a float that rounds
    with pytest.raises(RequestError) as info:
        RenderRequest("tiny", seed=MAX_SEED + 1)
    assert info.value.field == "seed"


def test_seed_params_are_checked_as_seeds_by_the_model(glyphs):
    assert glyphs.check(RenderRequest("tiny", params={"mix_seed": MAX_SEED})).param("mix_seed") == MAX_SEED
    whole = glyphs.check(RenderRequest("tiny", params={"mix_seed": 12.0}))
    assert whole.param("mix_seed") == 12 and type(whole.param("mix_seed")) is int
    for bad in (MAX_SEED + 1, -1, 2.5, "12"):
        with pytest.raises(RequestError) as info:
            glyphs.check(RenderRequest("tiny", params={"mix_seed": bad}))
        assert info.value.field == "params.mix_seed", bad


def test_missing_version_reads_as_current():
    req = RenderRequest("tiny", seed=5, params={"d0": 1.0, "prompt": "Ab", "mix_seed": 3})
    data = req.to_dict()
    del data["version"]
    assert RenderRequest.from_dict(data) == req
    data = RenderRequest("tiny", seed=5).to_dict()
    del data["version"]
    assert RenderRequest.from_dict(data) == RenderRequest("tiny", seed=5)
    old = _v1(prompt="Ab", edits=[["d0", 1.0]])  # flat fields without a version: an earlier version's
    del old["version"]
    assert RenderRequest.from_dict(old) == RenderRequest("tiny", seed=7, params={"prompt": "Ab", "d0": 1.0})


# --- version 1 (files made by 3b8dbe6) ---------------------------------------------------------------------------


def _v1(**fields) -> dict:
    """A request object as 3b8dbe6 wrote it: flat fields, edits as [name, float] pairs."""
    return {"version": 1, "model_id": "tiny", "model_hash": "", "seed": 7, "latent": None, "edits": [],
            "prompt": "", "negative_prompt": "", "label": None, "steps": None, "guidance": None, "eta": None,
            "sampler": None, "init_image": None, "strength": None, "width": None, "height": None,
            "dtype": "float32", **fields}


def test_a_version_1_request_is_converted_to_params():
    old = _v1(edits=[["d0", 1.5], ["mix_seed", 12.0], ["variation_seed", 3.0], ["variation_strength", 0.25],
                     ["mix_layer", 4.0], ["layer_start", 1.0], ["layer_end", 6.0], ["noise", 0.5]],
              prompt="Ab", label="cat", steps=30, guidance=7.5, eta=0.0, sampler="euler", strength=0.5,
              init_image="aGk=", width=64, height=32)
    req = RenderRequest.from_dict(old)
    assert req.seed == 7 and (req.width, req.height) == (64, 32)
    assert req.params == {"d0": 1.5, "mix_seed": 12, "variation_seed": 3, "variation_strength": 0.25,
                          "mix_layer": 4, "layer_start": 1, "layer_end": 6, "noise": 0.5, "prompt": "Ab",
                          "label": "cat", "steps": 30, "guidance": 7.5, "eta": 0.0, "sampler": "euler",
                          "strength": 0.5, "init_image": "aGk="}
    for name in ("mix_seed", "variation_seed", "mix_layer", "layer_start", "layer_end", "steps"):
        assert type(req.param(name)) is int, name  # floats of version 1 become whole numbers
    for name in ("d0", "variation_strength", "noise"):
        assert type(req.param(name)) is float, name
    assert RenderRequest.from_json(json.dumps(old)) == req
    assert json.loads(req.to_json())["version"] == REQUEST_VERSION
    _round_trips(req)


def test_a_version_1_request_drops_empty_and_unset_settings():
    req = RenderRequest.from_dict(_v1())
    assert req.params == {}  # "" prompts and None settings meant the family's defaults
    assert "prompt" not in req.params and "negative_prompt" not in req.params
    assert RenderRequest.from_dict(_v1(prompt="", negative_prompt="blurry")).params == {"negative_prompt": "blurry"}
    big = RenderRequest.from_dict(_v1(edits=[["mix_seed", float(2**52)]])).param("mix_seed")  # version 1: a float
    assert big == 2**52 and type(big) is int


def test_a_version_1_request_with_params_is_refused_not_emptied():
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict(_v1(params={"d0": 1.0}))
    assert info.value.field == "params"


@pytest.mark.parametrize("edits", [[["mix_seed", 2.5]], [["mix_seed", -1.0]], [["layer_end", 1.5]],
                                   [["d1", float("inf")]], [["d1", "x"]], ["d1"], 5])
def test_a_bad_version_1_edit_is_refused_naming_edits(edits):
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict(_v1(edits=edits))
    assert info.value.field == "edits"


@pytest.mark.parametrize("version", [0, 3, REQUEST_VERSION + 1, "2", None, 1.5, True, 2.0])
def test_an_unknown_version_is_refused(version):
    data = {**RenderRequest("tiny").to_dict(), "version": version}
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict(data)
    assert info.value.field == "version"
    assert "version" in str(info.value)


# --- invalid -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"seed": 1.0}, "seed"),
    ({"seed": 2.5}, "seed"),
    ({"seed": MAX_SEED + 1}, "seed"),
    ({"seed": "3"}, "seed"),
    ({"latent": (0.0, math.nan)}, "latent"),
    ({"latent": (math.inf,)}, "latent"),
    ({"latent": ()}, "latent"),
    ({"params": {"Bogus!": 1.0}}, "params"),
    ({"params": {"d1": math.inf}}, "params.d1"),
    ({"params": {"d1": [1.0]}}, "params.d1"),
    ({"params": {"d1": True}}, "params.d1"),
    ({"params": ("d1",)}, "params"),
    ({"params": 5}, "params"),
    ({"params": {"guidance": math.nan}}, "params.guidance"),
    ({"width": 0}, "width"),
    ({"height": True}, "height"),
    ({"dtype": "float64"}, "dtype"),
    ({"model_id": ""}, "model_id"),
])
def test_invalid_fields_raise_request_error_naming_the_field(kwargs, field):
    with pytest.raises(RequestError) as info:
        RenderRequest(**{"model_id": "tiny", **kwargs})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("table, params, field", [
    ("glyphs", {"bogus": 1.0}, "params.bogus"),
    ("glyphs", {"d1": "x"}, "params.d1"),
    ("glyphs", {"d16": 1.0}, "params.d16"),  # the shipped model has 16 directions, d0 … d15
    ("glyphs", {"prompt": 5}, "params.prompt"),
    ("diffusion", {"steps": 0}, "params.steps"),
    ("diffusion", {"steps": -3}, "params.steps"),
    ("diffusion", {"steps": 2.5}, "params.steps"),
    ("diffusion", {"steps": "3"}, "params.steps"),
    ("diffusion", {"eta": "0.5"}, "params.eta"),
    ("diffusion", {"eta": 1.5}, "params.eta"),
    ("diffusion", {"strength": 0.0}, "params.strength"),
    ("diffusion", {"sampler": "nope"}, "params.sampler"),
    ("diffusion", {"label": "cat"}, "params.label"),  # a text model takes no class
])
def test_params_the_model_does_not_take_raise_request_error_naming_the_param(table, params, field, request):
    req = RenderRequest("tiny", params=params)  # any int, float or text is a valid request …
    with pytest.raises(RequestError) as info:
        request.getfixturevalue(table).check(req)  # … its model's specs decide what it takes
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_a_whole_number_float_is_taken_as_the_whole_number_a_count_needs(diffusion):
    checked = diffusion.check(RenderRequest("tiny", params={"steps": 2.0}))
    assert checked.param("steps") == 2 and type(checked.param("steps")) is int


def test_invalid_values_in_json_are_refused_with_the_field(diffusion):
    good = RenderRequest("tiny").to_dict()
    for key, value in [("seed", -5), ("seed", 1.5), ("dtype", "int8"), ("latent", [1.0, 1e999]), ("width", -2),
                       ("params", [["d0", 1.0]]), ("params", "d0=1")]:
        with pytest.raises(RequestError) as info:
            RenderRequest.from_json(json.dumps({**good, key: value}))
        assert info.value.field == key, (key, value)
        assert key in str(info.value)
    for name, value in [("d0", 1e999), ("guidance", 1e999), ("prompt", ["a"]), ("prompt", None)]:
        with pytest.raises(RequestError) as info:
            RenderRequest.from_json(json.dumps({**good, "params": {name: value}}))
        assert info.value.field == f"params.{name}", (name, value)
        assert name in str(info.value)
    for name, value in [("nope", 1.0), ("steps", 0), ("guidance", "high")]:
        req = RenderRequest.from_json(json.dumps({**good, "params": {name: value}}))
        with pytest.raises(RequestError) as info:
            diffusion.check(req)
        assert info.value.field == f"params.{name}", (name, value)
        assert name in str(info.value)


def test_non_finite_latent_in_json():
    text = RenderRequest("tiny").to_json().replace('"latent":null', '"latent":[1.0,NaN]')
    assert "NaN" in text
    with pytest.raises(RequestError, match="latent"):
        RenderRequest.from_json(text)


def test_non_finite_param_in_json():
    text = RenderRequest("tiny", params={"d0": 1.0}).to_json().replace('"d0":1.0', '"d0":NaN')
    assert "NaN" in text
    with pytest.raises(RequestError) as info:
        RenderRequest.from_json(text)
    assert info.value.field == "params.d0"


_LATENT_BUG = ("studio/request.py:45 converts latent values with float() outside any try, and from_dict "
               "(studio/request.py:111) calls tuple() on it unguarded: a non-numeric or non-list latent escapes as a "
               "bare ValueError/TypeError (or a RequestError without field='latent') instead of RequestError(field="
               "'latent')")


@pytest.mark.parametrize("latent", [["a"], [1.0, None], 5, "abc"])
def test_non_numeric_latent_raises_request_error_naming_latent(latent):
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict({"model_id": "tiny", "latent": latent})
    assert info.value.field == "latent"


@pytest.mark.parametrize("key", ["prompt", "negative_prompt", "label"])
def test_text_params_must_be_strings(key, glyphs):
    with pytest.raises(RequestError) as info:  # not a value a request can hold at all
        RenderRequest.from_dict({"model_id": "tiny", "params": {key: ["a"]}})
    assert info.value.field == f"params.{key}"
    # a number where the model takes text: the glyph VAE's prompt, the sound model's class, Stable Diffusion's
    # negative prompt (declared as its family declares it)
    from studio.params import Kind, ParamSpec, ParamTable

    table = {"prompt": glyphs, "label": resolve(str(MODELS / "one-shots")).parameters,
             "negative_prompt": ParamTable([ParamSpec("negative_prompt", Kind.TEXT, default="")])}[key]
    with pytest.raises(RequestError) as info:
        table.check(RenderRequest("tiny", params={key: 5}))
    assert info.value.field == f"params.{key}"


def test_model_hash_must_be_a_string():
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict({"model_id": "tiny", "model_hash": ["a"]})
    assert info.value.field == "model_hash"


def test_unknown_field_in_json_names_it():
    data = {**RenderRequest("tiny").to_dict(), "temperature": 0.5}
    with pytest.raises(RequestError, match="temperature"):
        RenderRequest.from_json(json.dumps(data))
    # a version-1 flat field in a version-2 request is not quietly taken
    data = {**RenderRequest("tiny").to_dict(), "prompt": "Ab"}
    with pytest.raises(RequestError, match="prompt"):
        RenderRequest.from_json(json.dumps(data))


def test_wrong_version_is_refused():
    data = {**RenderRequest("tiny").to_dict(), "version": REQUEST_VERSION + 1}
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict(data)
    assert info.value.field == "version"
    assert "version" in str(info.value)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"tiny"', "{}"])
def test_malformed_json_raises_request_error(text):
    with pytest.raises(RequestError):
        RenderRequest.from_json(text)


def test_params_not_name_value_pairs_in_json():
    data = {**RenderRequest("tiny").to_dict(), "params": [1, 2]}
    with pytest.raises(RequestError, match="params") as info:
        RenderRequest.from_dict(data)
    assert info.value.field == "params"
    data = {**_v1(), "edits": [1, 2]}  # version 1's edits
    with pytest.raises(RequestError, match="edits") as info:
        RenderRequest.from_dict(data)
    assert info.value.field == "edits"


# --- immutability ----------------------------------------------------------------------------------------------


def test_with_param_returns_a_new_request(glyphs):
    base = RenderRequest("tiny", seed=3)
    a = base.with_param("d0", 1.0)
    assert a is not base and base.params == {} and a.params == {"d0": 1.0}
    b = a.with_param("d0", 2.0).with_param("z1", -1.0)
    assert dict(b.params) == {"d0": 2.0, "z1": -1.0}
    assert dict(a.params) == {"d0": 1.0}
    c = b.with_param("d0", None)
    assert c.params == {"z1": -1.0}
    assert c.with_param("d5", None) == c
    assert c.with_params({"z1": None, "d2": 0.5}).params == {"d2": 0.5}
    assert b.param("d0") == 2.0 and b.param("d9") is None and b.param("d9", 0.0) == 0.0
    with pytest.raises(RequestError):  # not a name a param can have
        base.with_param("Non sense", 1.0)
    with pytest.raises(RequestError) as info:  # a name the model does not take
        glyphs.check(base.with_param("nonsense", 1.0))
    assert info.value.field == "params.nonsense" and "truncation" in str(info.value)


def test_with_returns_a_new_validated_request(diffusion):
    base = RenderRequest("tiny", seed=3)
    moved = base.with_(seed=4).with_param("prompt", "x")
    assert (moved.seed, moved.param("prompt")) == (4, "x") and (base.seed, base.param("prompt", "")) == (3, "")
    replaced = moved.with_(params={"steps": 5})
    assert replaced.params == {"steps": 5} and moved.param("prompt") == "x"
    with pytest.raises(RequestError):
        base.with_(seed=-1)
    with pytest.raises(RequestError):
        base.with_(params={"steps": math.inf})
    with pytest.raises(RequestError):
        diffusion.check(base.with_param("steps", 0))


def test_requests_are_frozen_and_hashable():
    req = RenderRequest("tiny", seed=3, latent=[0.5, 1.0], params={"z0": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.seed = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.params = Params({})  # type: ignore[misc]
    same = RenderRequest("tiny", seed=3, latent=(0.5, 1.0), params=(("z0", 1.0),))
    assert req == same and hash(req) == hash(same)
    assert len({req, same, req.with_param("z0", 2.0)}) == 2
    assert {req: "x"}[same] == "x"


def test_params_are_immutable_hashable_and_compare_by_value_and_kind():
    source = {"d0": 1.0, "prompt": "Ab", "mix_seed": 3}
    params = Params(source)
    source["d0"] = 9.0  # the mapping it was made from does not reach it
    assert params["d0"] == 1.0
    with pytest.raises(TypeError):
        params["d0"] = 2.0  # type: ignore[index]
    with pytest.raises(TypeError):
        del params["d0"]  # type: ignore[attr-defined]
    assert not hasattr(params, "update") and not hasattr(params, "pop")
    copy = params.to_dict()
    copy["d0"] = 5.0
    assert params["d0"] == 1.0
    same = Params([("prompt", "Ab"), ("mix_seed", 3), ("d0", 1.0)])
    assert params == same and hash(params) == hash(same) and {params: 1}[same] == 1
    assert params == {"d0": 1.0, "prompt": "Ab", "mix_seed": 3}  # equal to a plain mapping of the same values
    assert params != Params({"d0": 1.0, "prompt": "Ab", "mix_seed": 4})
    assert params != Params({"d0": 1.0, "prompt": "Ab"})
    # a whole-number seed and the float of it are different requests: JSON keeps which one it was
    assert Params({"mix_seed": 3}) != Params({"mix_seed": 3.0})
    assert RenderRequest("m", params={"mix_seed": 3}) != RenderRequest("m", params={"mix_seed": 3.0})
    assert list(params) == sorted(params) and len(params) == 3
