"""Limits on render requests, typed or stored in a file: sizes, steps, latent length and prompt length are checked
while the request is parsed, and a stored request's JSON is size- and depth-checked before json.loads; each refusal
is one short line naming the file (where there is one) and the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.errors import RequestError
from studio.export.image import stored_request
from studio.limits import MAX_LATENT_SIZE, MAX_METADATA_TEXT, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS
from studio.params import Kind, ParamSpec, ParamTable
from studio.request import RenderRequest

ROOT = Path(__file__).resolve().parents[2]


def _short(exc: BaseException, *parts: str) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) < 400, message
    for part in parts:
        assert part in message, message
    return message


def _stored(**fields) -> str:
    return json.dumps({"version": 2, "model_id": "glyphs", "seed": 1, "params": {}, **fields})


def test_a_width_of_a_million_is_refused_naming_the_field():
    with pytest.raises(RequestError) as info:
        RenderRequest("glyphs", width=1_000_000)
    assert info.value.field == "width"
    _short(info.value, "1000000", f"{MAX_SIDE:,}")


def test_60000_by_60000_is_refused():
    with pytest.raises(RequestError) as info:
        RenderRequest("glyphs", width=60_000, height=60_000)
    _short(info.value, "60000")


def test_the_largest_allowed_picture_is_accepted():
    assert RenderRequest("glyphs", width=MAX_SIDE, height=MAX_SIDE).width == MAX_SIDE


def test_a_latent_longer_than_the_limit_is_refused_before_it_is_converted():
    with pytest.raises(RequestError) as info:
        RenderRequest("glyphs", latent=range(MAX_LATENT_SIZE + 1))  # never turned into 16 M floats
    assert info.value.field == "latent"
    _short(info.value, "limit")


def test_a_stored_request_a_million_pixels_wide_names_the_file_and_field(tmp_path):
    path = tmp_path / "picture.png"
    with pytest.raises(RequestError) as info:
        stored_request(_stored(width=1_000_000), path, "image")
    assert info.value.path == str(path) and info.value.field == "width"
    _short(info.value, "picture.png", "[width]", "1000000")


def test_a_stored_request_nested_100000_deep_is_refused_before_parsing(tmp_path):
    path = tmp_path / "picture.png"
    text = '{"model_id": "glyphs", "params": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(RequestError) as info:
        stored_request(text, path, "image")
    _short(info.value, "picture.png", "nested", "limit")
    with pytest.raises(RequestError) as info:
        RenderRequest.from_json("[" * 100_000 + "]" * 100_000)
    _short(info.value, "nested")


def test_a_stored_request_too_long_is_refused_before_parsing(tmp_path):
    text = _stored(latent=[0.0]) + " " * MAX_METADATA_TEXT
    with pytest.raises(RequestError) as info:
        stored_request(text, tmp_path / "sound.flac", "sound")
    _short(info.value, "sound.flac", "over the limit")


def test_an_integer_too_long_to_parse_is_one_line():
    with pytest.raises(RequestError) as info:
        RenderRequest.from_json('{"model_id": "glyphs", "seed": ' + "9" * 5000 + "}")
    _short(info.value, "JSON")


def test_steps_over_the_limit_are_refused_by_the_samplers_spec():
    from studio.families.sampling import sampler_specs

    table = ParamTable(sampler_specs({"sampler": "ddim", "steps": 25, "guidance": 2.0, "eta": 0.0}, (0.0, 20.0)))
    with pytest.raises(RequestError) as info:
        table.check(RenderRequest("m", params={"steps": MAX_STEPS + 1}))
    assert info.value.field == "params.steps"
    _short(info.value, str(MAX_STEPS + 1))


def test_a_prompt_over_the_limit_is_refused():
    spec = ParamSpec("prompt", Kind.TEXT)
    with pytest.raises(RequestError) as info:
        spec.check("x" * (MAX_PROMPT_CHARS + 1))
    assert info.value.field == "params.prompt"
    _short(info.value)


def test_set_width_over_the_limit_is_refused():
    with pytest.raises(RequestError) as info:
        ParamTable([]).parse_setting("width", "1000000")
    _short(info.value, "width")


def test_render_from_a_picture_with_a_huge_stored_width_is_one_line(tmp_path):
    from PIL import Image

    from studio.io.metadata import png_texts

    picture = tmp_path / "picture.png"
    Image.new("L", (8, 8)).save(picture, format="PNG", pnginfo=png_texts(_stored(width=1_000_000), ""))
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    result = subprocess.run(["timeout", "60", sys.executable, "-m", "studio", "render", "--from", str(picture),
                             "--out", str(tmp_path / "out.png")], cwd=tmp_path, env=env, capture_output=True,
                            text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert "picture.png" in out and "width" in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "out.png").exists()
