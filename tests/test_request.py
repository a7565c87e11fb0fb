"""RenderRequest: validation, JSON round trips, immutability (studio.request)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from studio.errors import RequestError
from studio.latent.seeds import MAX_SEED, sample_prior
from studio.request import REQUEST_VERSION, RenderRequest


def _round_trips(req: RenderRequest) -> None:
    via_json = RenderRequest.from_json(req.to_json())
    via_dict = RenderRequest.from_dict(req.to_dict())
    via_dict_json = RenderRequest.from_dict(json.loads(json.dumps(req.to_dict())))
    for back in (via_json, via_dict, via_dict_json):
        assert back == req
        assert hash(back) == hash(req)
        assert back.to_json() == req.to_json()


def test_defaults_round_trip():
    req = RenderRequest("tiny")
    assert req.seed == 0 and req.latent is None and req.edits == () and req.dtype == "float32"
    _round_trips(req)
    data = json.loads(req.to_json())
    assert data["version"] == REQUEST_VERSION
    assert data["model_id"] == "tiny"


def test_json_is_canonical():
    a = RenderRequest("tiny", seed=3, edits=(("z1", 1.0), ("d0", 2.0)))
    b = RenderRequest("tiny", seed=3, edits=(("d0", 2.0), ("z1", 1.0)))
    assert a.to_json() == b.to_json()
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


def test_edits_are_stored_sorted_and_round_trip():
    req = RenderRequest("tiny", edits=(("z3", 0.5), ("truncation", 0.7), ("d1", -1.0), ("mix_seed", 4)))
    names = [name for name, _ in req.edits]
    assert names == sorted(names)
    assert dict(req.edits) == {"z3": 0.5, "truncation": 0.7, "d1": -1.0, "mix_seed": 4.0}
    assert all(type(v) is float for _, v in req.edits)
    _round_trips(req)


def test_all_sampler_fields_round_trip():
    req = RenderRequest("tiny", model_hash="ab" * 32, seed=MAX_SEED, edits=(("d0", 1.5),), prompt="Ab\nc",
                        negative_prompt="blurry", label="cat", steps=25, guidance=7.5, eta=0.0, width=320,
                        height=200, dtype="bfloat16")
    _round_trips(req)
    back = RenderRequest.from_json(req.to_json())
    assert back.seed == MAX_SEED and back.steps == 25 and back.guidance == 7.5 and back.eta == 0.0
    assert back.width == 320 and back.height == 200 and back.dtype == "bfloat16" and back.label == "cat"
    assert back.prompt == "Ab\nc" and back.negative_prompt == "blurry" and back.model_hash == "ab" * 32
    assert isinstance(RenderRequest("tiny", guidance=7).guidance, float)


def test_missing_version_reads_as_current():
    data = RenderRequest("tiny", seed=5).to_dict()
    del data["version"]
    assert RenderRequest.from_dict(data) == RenderRequest("tiny", seed=5)


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
    ({"edits": (("bogus", 1.0),)}, "edits"),
    ({"edits": (("d1", math.inf),)}, "edits"),
    ({"edits": (("d1", "x"),)}, "edits"),
    ({"edits": ("d1",)}, "edits"),
    ({"steps": 0}, "steps"),
    ({"steps": -3}, "steps"),
    ({"steps": 2.0}, "steps"),
    ({"width": 0}, "width"),
    ({"height": True}, "height"),
    ({"guidance": math.nan}, "guidance"),
    ({"eta": "0.5"}, "eta"),
    ({"dtype": "float64"}, "dtype"),
    ({"model_id": ""}, "model_id"),
])
def test_invalid_fields_raise_request_error_naming_the_field(kwargs, field):
    with pytest.raises(RequestError) as info:
        RenderRequest(**{"model_id": "tiny", **kwargs})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_invalid_values_in_json_are_refused_with_the_field():
    good = RenderRequest("tiny").to_dict()
    for key, value in [("seed", -5), ("seed", 1.5), ("steps", 0), ("dtype", "int8"), ("latent", [1.0, 1e999]),
                       ("edits", [["nope", 1.0]]), ("width", -2), ("guidance", "high")]:
        with pytest.raises(RequestError) as info:
            RenderRequest.from_json(json.dumps({**good, key: value}))
        assert info.value.field == key, (key, value)
        assert key in str(info.value)


def test_non_finite_latent_in_json():
    text = RenderRequest("tiny").to_json().replace('"latent":null', '"latent":[1.0,NaN]')
    assert "NaN" in text
    with pytest.raises(RequestError, match="latent"):
        RenderRequest.from_json(text)


_LATENT_BUG = ("studio/request.py:45 converts latent values with float() outside any try, and from_dict "
               "(studio/request.py:111) calls tuple() on it unguarded: a non-numeric or non-list latent escapes as a "
               "bare ValueError/TypeError (or a RequestError without field='latent') instead of RequestError(field="
               "'latent')")


@pytest.mark.parametrize("latent", [["a"], [1.0, None], 5, "abc"])
def test_non_numeric_latent_raises_request_error_naming_latent(latent):
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict({"model_id": "tiny", "latent": latent})
    assert info.value.field == "latent"


@pytest.mark.parametrize("key", ["prompt", "negative_prompt", "label", "model_hash"])
def test_text_fields_must_be_strings(key):
    with pytest.raises(RequestError) as info:
        RenderRequest.from_dict({"model_id": "tiny", key: ["a"]})
    assert info.value.field == key


def test_unknown_field_in_json_names_it():
    data = {**RenderRequest("tiny").to_dict(), "temperature": 0.5}
    with pytest.raises(RequestError, match="temperature"):
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


def test_edits_not_pairs_in_json():
    data = {**RenderRequest("tiny").to_dict(), "edits": [1, 2]}
    with pytest.raises(RequestError, match="edits"):
        RenderRequest.from_dict(data)


# --- immutability ----------------------------------------------------------------------------------------------


def test_edit_returns_a_new_request():
    base = RenderRequest("tiny", seed=3)
    a = base.edit("d0", 1.0)
    assert a is not base and base.edits == () and a.edits == (("d0", 1.0),)
    b = a.edit("d0", 2.0).edit("z1", -1)
    assert dict(b.edits) == {"d0": 2.0, "z1": -1.0}
    assert dict(a.edits) == {"d0": 1.0}
    c = b.edit("d0", None)
    assert c.edits == (("z1", -1.0),)
    assert c.edit("d5", None) == c
    with pytest.raises(RequestError):
        base.edit("nonsense", 1.0)


def test_with_returns_a_new_validated_request():
    base = RenderRequest("tiny", seed=3)
    moved = base.with_(seed=4, prompt="x")
    assert (moved.seed, moved.prompt) == (4, "x") and (base.seed, base.prompt) == (3, "")
    with pytest.raises(RequestError):
        base.with_(steps=0)


def test_requests_are_frozen_and_hashable():
    req = RenderRequest("tiny", seed=3, latent=[0.5, 1.0], edits=[("z0", 1.0)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.seed = 4  # type: ignore[misc]
    same = RenderRequest("tiny", seed=3, latent=(0.5, 1.0), edits=(("z0", 1.0),))
    assert req == same and hash(req) == hash(same)
    assert len({req, same, req.edit("z0", 2.0)}) == 2
    assert {req: "x"}[same] == "x"
