"""Parameter specs (studio.params): each kind's check and parse, range against span, indexed names, `when`, a model's
table checking and normalising requests, unknown names naming the known ones, render-only params, settings."""

from __future__ import annotations

import math

import pytest

from studio.errors import RequestError
from studio.params import (CONDITION_GROUPS, CONDITIONS, DIRECTIONS, INIT, MAX_PICTURE_TEXT, MAX_TEXT, RAW, SAMPLER,
                           SHAPING, Capability, Kind, ParamSpec, ParamTable, apply_settings)
from studio.request import MAX_SEED, RenderRequest


def refused(spec: ParamSpec, value, field: str | None = None, match: str | None = None) -> RequestError:
    with pytest.raises(RequestError, match=match) as info:
        spec.check(value)
    assert info.value.field == (field or f"params.{spec.name}")
    return info.value


# --- each kind --------------------------------------------------------------------------------------------------


def test_a_seed_is_a_whole_number_up_to_2_to_the_64_minus_1():
    spec = ParamSpec("mix_seed", Kind.SEED)
    for value in (0, 1, 2**53 + 1, 2**63, MAX_SEED):
        assert spec.check(value) == value and type(spec.check(value)) is int
    assert spec.check(12.0) == 12 and type(spec.check(12.0)) is int  # a whole float (JSON, version 1) is the int
    for bad in (-1, MAX_SEED + 1, 2.5, True, "12", None, math.nan):
        refused(spec, bad, match="whole number in 0..18446744073709551615")
    assert spec.parse("12") == 12 and spec.parse(" 18446744073709551615 ") == MAX_SEED
    for bad in ("1.5", "x", "", "-1", "18446744073709551616"):
        with pytest.raises(RequestError):
            spec.parse(bad)


def test_an_int_is_a_whole_number_in_its_range():
    spec = ParamSpec("steps", Kind.INT, range=(1, 1000))
    assert spec.check(25) == 25 and type(spec.check(25)) is int
    assert spec.check(3.0) == 3 and type(spec.check(3.0)) is int
    assert spec.check(1) == 1 and spec.check(1000) == 1000  # the limits are inside
    refused(spec, 0, match="between 1 and 1000, got 0")
    refused(spec, 1001, match="between 1 and 1000")
    for bad in (2.5, True, "3", None, math.inf):
        refused(spec, bad, match="whole number")
    assert spec.parse(" 7 ") == 7
    with pytest.raises(RequestError, match="needs a whole number, got '7.5'"):
        spec.parse("7.5")
    assert ParamSpec("layer", Kind.INT).check(-12) == -12  # no range: any whole number


def test_a_float_is_a_finite_number_in_its_range():
    spec = ParamSpec("strength", Kind.FLOAT, range=(0.01, 1.0))
    assert spec.check(0.5) == 0.5
    assert spec.check(1) == 1.0 and type(spec.check(1)) is float  # ints become floats
    refused(spec, 0.0, match="between 0.01 and 1, got 0")
    refused(spec, 1.5, match="between 0.01 and 1")
    for bad in (math.nan, math.inf, -math.inf):
        refused(spec, bad, match="finite")
    for bad in (True, "0.5", None, [0.5]):
        refused(spec, bad, match="must be a number")
    assert spec.parse(" 0.25 ") == 0.25 and type(spec.parse("1")) is float
    for bad in ("nan", "inf"):
        with pytest.raises(RequestError, match="finite"):
            spec.parse(bad)
    with pytest.raises(RequestError, match="needs a number, got 'big'"):
        spec.parse("big")


def test_a_choice_is_one_of_its_values():
    spec = ParamSpec("sampler", Kind.CHOICE, choices=(("ddim", "DDIM"), ("euler", "Euler")), default="ddim")
    assert spec.choice_values() == ("ddim", "euler")
    assert spec.check("euler") == "euler"
    refused(spec, "plms", match="must be one of ddim, euler, got 'plms'")
    refused(spec, "DDIM", match="one of ddim, euler")  # the value, not its label
    refused(spec, "", match="one of")
    refused(spec, 1, match="must be text")
    assert spec.parse(" euler ") == "euler"
    with pytest.raises(ValueError, match="needs choices"):
        ParamSpec("sampler", Kind.CHOICE)


def test_a_text_is_any_text_up_to_its_length():
    spec = ParamSpec("prompt", Kind.TEXT, charset="AB")
    assert spec.check("Ab\nc 音") == "Ab\nc 音"  # what a model can draw is the family's to say, with the prompt named
    assert spec.check("") == ""
    assert spec.check("x" * MAX_TEXT) == "x" * MAX_TEXT
    refused(spec, "x" * (MAX_TEXT + 1), match=f"at most {MAX_TEXT}")
    refused(spec, 5, match="must be text")
    refused(spec, None, match="must be text")
    assert spec.parse("  two  spaces ") == "  two  spaces "  # typed text is kept as typed


@pytest.mark.parametrize("kind", [Kind.IMAGE, Kind.SOUND])
def test_a_picture_or_a_sound_is_text_up_to_its_size(kind):
    spec = ParamSpec("init_image", kind)
    assert spec.check("iVBORw0KGgo=") == "iVBORw0KGgo="
    assert len(spec.check("a" * (MAX_TEXT + 1))) == MAX_TEXT + 1  # pictures may be longer than a prompt
    refused(spec, "a" * (MAX_PICTURE_TEXT + 1), match=f"at most {MAX_PICTURE_TEXT}")
    refused(spec, b"png", match="must be text")


def test_a_parse_error_names_the_same_field_as_a_check_error():
    spec = ParamSpec("d", Kind.FLOAT, range=(-3.0, 3.0), count=4)
    for text in ("x", "5"):
        with pytest.raises(RequestError) as info:
            spec.parse(text, "d2")
        assert info.value.field == "params.d2", text
    with pytest.raises(RequestError) as info:
        ParamSpec("steps", Kind.INT).parse("many")
    assert info.value.field == "params.steps"


# --- range and span ---------------------------------------------------------------------------------------------


def test_range_limits_what_a_request_holds_and_span_only_what_a_slider_shows():
    shown = ParamSpec("truncation", Kind.FLOAT, default=1.0, span=(0.0, 1.5))
    assert shown.range is None and shown.slider_span == (0.0, 1.5)
    assert shown.check(-4.0) == -4.0 and shown.check(9.0) == 9.0  # beyond the slider, still valid
    limited = ParamSpec("truncation", Kind.FLOAT, default=1.0, range=(-1.0, 2.0))
    assert limited.slider_span == (-1.0, 2.0)  # the span defaults to the range
    assert limited.check(2.0) == 2.0 and limited.check(-1.0) == -1.0
    refused(limited, 2.5, match="between -1 and 2")
    both = ParamSpec("mix_strength", Kind.FLOAT, range=(0.0, 1.0), span=(0.2, 0.8))
    assert both.slider_span == (0.2, 0.8) and both.check(0.9) == 0.9
    refused(both, 1.1)
    assert ParamSpec("x", Kind.FLOAT).slider_span is None


# --- names ------------------------------------------------------------------------------------------------------


def test_an_indexed_spec_covers_name0_to_its_count():
    spec = ParamSpec("d", Kind.FLOAT, default=0.0, count=3)
    assert spec.names() == ["d0", "d1", "d2"]
    assert ParamSpec("truncation", Kind.FLOAT).names() == ["truncation"]
    table = ParamTable([spec, ParamSpec("z", Kind.FLOAT, count=12), ParamSpec("x", Kind.FLOAT)])
    assert table.find("d0") is spec and table.find("d2") is spec
    assert table.find("z11").name == "z" and table.find("x").name == "x"
    for name in ("d3", "d", "d02", "d-1", "D1", "z12", "x0", "dz1", "", "d1x"):
        assert table.find(name) is None, name
    assert table.known_names() == ["d0…d2", "z0…z11", "x"]
    assert table.get("d") is spec and table.get("d0") is None  # `get` is by the spec's own name
    assert table.default("d1") == 0.0 and table.default("d9") is None


def test_bad_specs_are_refused_when_declared():
    with pytest.raises(ValueError, match="lower-case"):
        ParamSpec("Steps", Kind.INT)
    with pytest.raises(ValueError, match="lower-case"):
        ParamSpec("two words", Kind.INT)
    with pytest.raises(ValueError, match="must not end in a digit"):
        ParamSpec("layer2", Kind.FLOAT, count=4)
    with pytest.raises(ValueError, match="share a name"):
        ParamTable([ParamSpec("x", Kind.FLOAT), ParamSpec("x", Kind.INT)])


def test_titles_groups_and_core_specs():
    assert ParamSpec("mix_seed", Kind.SEED).title == "Mix seed"
    assert ParamSpec("truncation", Kind.FLOAT, "ψ").title == "ψ"
    assert ParamSpec("prompt", Kind.TEXT).group == CONDITIONS
    assert CONDITION_GROUPS == (CONDITIONS, SAMPLER, INIT)
    assert not {DIRECTIONS, RAW, SHAPING} & set(CONDITION_GROUPS)  # these go to the latent panel
    assert ParamSpec("width", Kind.INT).is_core and ParamSpec("seed", Kind.SEED).is_core
    assert not ParamSpec("steps", Kind.INT).is_core


def test_capabilities_are_flags():
    caps = Capability.SAMPLE | Capability.ENCODE | Capability.PROJECT
    assert Capability.ENCODE in caps and Capability.IMG2IMG not in caps
    assert Capability.SAMPLE | Capability.PROJECT in caps
    assert not Capability.NONE and Capability.NONE == Capability(0)
    assert {c.name for c in Capability if c in caps} == {"SAMPLE", "ENCODE", "PROJECT"}


# --- a model's table --------------------------------------------------------------------------------------------


def table() -> ParamTable:
    return ParamTable([
        ParamSpec("prompt", Kind.TEXT, default="Ab", render_only=True),
        ParamSpec("sampler", Kind.CHOICE, choices=(("ddim", "DDIM"), ("euler", "Euler")), default="ddim",
                  group=SAMPLER, render_only=True),
        ParamSpec("steps", Kind.INT, default=25, range=(1, 1000), group=SAMPLER, render_only=True),
        ParamSpec("eta", Kind.FLOAT, default=1.0, range=(0.0, 1.0), group=SAMPLER, render_only=True,
                  when=("sampler", ("ddim",))),
        ParamSpec("truncation", Kind.FLOAT, default=1.0, span=(0.0, 1.5), group=SHAPING),
        ParamSpec("mix_seed", Kind.SEED, group=SHAPING),
        ParamSpec("mix_strength", Kind.FLOAT, default=0.5, range=(0.0, 1.0), group=SHAPING, when=("mix_seed", ())),
        ParamSpec("width", Kind.INT, default=512, range=(64, 2048), step=8, group=SAMPLER),
        ParamSpec("d", Kind.FLOAT, default=0.0, span=(-3.0, 3.0), count=4, group=DIRECTIONS),
    ])


def test_check_normalises_ints_and_floats_and_keeps_the_rest():
    t = table()
    request = RenderRequest("m", params={"steps": 10.0, "truncation": 1, "mix_seed": 7.0, "d1": 2, "prompt": "Hi",
                                         "mix_strength": 0.25})
    checked = t.check(request)
    assert checked.params == {"steps": 10, "truncation": 1.0, "mix_seed": 7, "d1": 2.0, "prompt": "Hi",
                              "mix_strength": 0.25}
    assert type(checked.param("steps")) is int and type(checked.param("mix_seed")) is int
    assert type(checked.param("truncation")) is float and type(checked.param("d1")) is float
    assert (checked.model_id, checked.seed, checked.latent) == (request.model_id, request.seed, request.latent)
    assert t.check(checked) == checked  # already normal: unchanged
    assert request.param("steps") == 10.0 and type(request.param("steps")) is float  # the request itself is frozen
    empty = RenderRequest("m")
    assert t.check(empty) == empty


def test_check_refuses_a_bad_value_naming_the_param():
    t = table()
    for params, field in (({"steps": 0}, "params.steps"), ({"sampler": "plms"}, "params.sampler"),
                          ({"d3": "x"}, "params.d3"), ({"mix_seed": -1}, "params.mix_seed"),
                          ({"prompt": 5}, "params.prompt"), ({"eta": 1.5}, "params.eta")):
        with pytest.raises(RequestError) as info:
            t.check(RenderRequest("m", params=params))
        assert info.value.field == field, params
    with pytest.raises(RequestError) as info:  # a core field a spec describes is checked by it
        t.check(RenderRequest("m", width=32))
    assert info.value.field == "width" and "between 64 and 2048" in str(info.value)
    assert t.check(RenderRequest("m", width=64)).width == 64
    assert ParamTable([]).check(RenderRequest("m", width=32)).width == 32  # no spec: any positive size


def test_an_unknown_name_is_refused_naming_the_known_ones():
    t = table()
    for name in ("wobble", "d4", "z0", "label", "d04"):
        with pytest.raises(RequestError) as info:
            t.check(RenderRequest("m", params={name: 1.0}))
        err = info.value
        assert err.field == f"params.{name}" and repr(name) in str(err)
        assert "it takes: prompt, sampler, steps, eta, truncation, mix_seed, mix_strength, width, d0…d3" in str(err)
        with pytest.raises(RequestError) as again:
            t.spec(name)
        assert str(again.value) == str(err)
    assert t.spec("d3").name == "d" and t.spec("steps").kind is Kind.INT


def test_when_says_what_a_param_depends_on_and_does_not_make_it_invalid_alone():
    t = table()
    assert t.get("eta").when == ("sampler", ("ddim",)) and t.get("mix_strength").when == ("mix_seed", ())
    assert t.get("steps").when is None
    # η with another sampler, or a mix strength without a mix seed, is a valid request: it just has no effect
    assert t.check(RenderRequest("m", params={"sampler": "euler", "eta": 0.5})).param("eta") == 0.5
    assert t.check(RenderRequest("m", params={"mix_strength": 0.3})).param("mix_strength") == 0.3


def test_values_and_defaults():
    t = table()
    request = RenderRequest("m", params={"steps": 10, "d2": 1.5})
    assert t.value(request, "steps") == 10 and t.value(request, "sampler") == "ddim"
    assert t.value(request, "mix_seed") is None  # unset by default: no mixing
    assert t.value(request, "d2") == 1.5 and t.value(request, "d1") is None and t.value(request, "wobble") is None
    values = t.values(request)
    assert values == {"prompt": "Ab", "sampler": "ddim", "steps": 10, "eta": 1.0, "truncation": 1.0,
                      "mix_seed": None, "mix_strength": 0.5, "d2": 1.5}
    assert "width" not in values  # core fields are the request's own
    assert t.default("steps") == 25 and t.default("d0") == 0.0 and t.default("wobble") is None


def test_render_only_params_are_the_ones_kept_with_a_computed_latent():
    t = table()
    request = RenderRequest("m", params={"prompt": "Hi", "sampler": "euler", "steps": 9, "truncation": 0.5,
                                         "mix_seed": 3, "d0": 1.0, "wobble": 2.0})
    assert t.render_only(request) == {"prompt": "Hi", "sampler": "euler", "steps": 9}
    # the latent edits are inside the computed latent already: applying them again would move it twice
    assert t.render_only(RenderRequest("m", params={"d1": 1.0, "truncation": 0.7})) == {}


def test_parse_setting_reads_core_fields_and_params():
    t = table()
    assert t.parse_setting("seed", " 18446744073709551615 ") == ("seed", MAX_SEED)
    assert t.parse_setting("width", "640") == ("width", 640)
    assert t.parse_setting("height", "100") == ("height", 100)  # no height spec: any positive whole number
    assert t.parse_setting("dtype", " float16 ") == ("dtype", "float16")
    assert t.parse_setting("steps", "12") == ("steps", 12)
    assert t.parse_setting("d3", "-1.5") == ("d3", -1.5)
    assert t.parse_setting("mix_seed", "99") == ("mix_seed", 99)
    assert t.parse_setting("sampler", "euler") == ("sampler", "euler")
    for name, text, field, match in (("seed", "x", "seed", "whole number"), ("seed", "-1", "seed", "0.."),
                                     ("width", "32", "width", "between 64 and 2048"),
                                     ("height", "0", "height", "between 1"),
                                     ("steps", "1.5", "params.steps", "whole number"),
                                     ("wobble", "1", "params.wobble", "it takes: prompt"),
                                     ("d4", "1", "params.d4", "d0…d3")):
        with pytest.raises(RequestError, match=match) as info:
            t.parse_setting(name, text)
        assert info.value.field == field, (name, text)
    assert t.settable() == ["seed", "width", "height", "dtype", "prompt", "sampler", "steps", "eta", "truncation",
                            "mix_seed", "mix_strength", "d0…d3"]  # a core field a spec describes is named once


def test_apply_settings_puts_core_fields_on_the_request_and_the_rest_in_params():
    t = table()
    base = RenderRequest("m", seed=1, params={"prompt": "Hi", "steps": 5})
    settings = [t.parse_setting(name, text) for name, text in (("seed", "7"), ("width", "640"), ("dtype", "float16"),
                                                               ("steps", "12"), ("d0", "2"))]
    out = apply_settings(base, settings)
    assert (out.seed, out.width, out.dtype) == (7, 640, "float16")
    assert out.params == {"prompt": "Hi", "steps": 12, "d0": 2.0}
    assert base.seed == 1 and base.params == {"prompt": "Hi", "steps": 5}  # a new request
    assert apply_settings(base, []) == base
    assert t.check(out) == out
    with pytest.raises(RequestError) as info:  # core fields are still checked by the request
        apply_settings(base, [("seed", -1)])
    assert info.value.field == "seed"


def test_at_most_keeps_one_param_at_or_below_another_with_their_defaults():
    table = ParamTable([ParamSpec("low", Kind.INT, default=0, range=(0, 8), at_most="high"),
                        ParamSpec("high", Kind.INT, default=8, range=(0, 8))])
    assert table.check(RenderRequest("m", params={"low": 3, "high": 3})).params == {"low": 3, "high": 3}
    assert table.check(RenderRequest("m", params={"low": 8})).params == {"low": 8}  # high's default is 8
    for params in ({"low": 5, "high": 4}, {"low": 2, "high": 1}, {"high": -1 + 1, "low": 1}):
        with pytest.raises(RequestError) as info:
            table.check(RenderRequest("m", params=params))
        assert info.value.field == "params.low" and "at most high" in info.value.problem
