"""Project documents (.lstudio): round trips, atomic saves, precise errors for every bad input (studio.project)."""

from __future__ import annotations

import copy
import json
import os
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from studio import __version__
from studio.errors import ProjectError
from studio.project import (FORMAT, FORMAT_VERSION, HISTORY_LIMIT, SUFFIX, Document, HistoryEntry, ModelRef,
                            SavedLatent, load_document, save_document)
from studio.request import RenderRequest

SHA = "ab" * 32
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\x00\xfe"  # a PNG header plus bytes that are not UTF-8
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def float32_values(n: int, seed: int = 0) -> tuple[float, ...]:
    values = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    values[0] = np.float32(1e-38)
    values[1] = np.float32(-3.4e38)
    values[2] = np.float32(0.1)  # not exactly representable: float(0.1f) has 17 significant digits
    return tuple(float(v) for v in values)


def full_document() -> Document:
    request = RenderRequest("tiny", model_hash=SHA, seed=7, latent=float32_values(8), width=32, height=16,
                            dtype="float16", params={"prompt": "Hé\nlo ✓", "negative_prompt": "blur", "label": "cat",
                                                     "d0": 1.5, "truncation": 0.7, "steps": 20, "guidance": 3.5,
                                                     "eta": 0.0, "mix_seed": 2**64 - 1})
    doc = Document(request=request)
    doc.latents.append(SavedLatent("favourite", "tiny", SHA, float32_values(8, seed=1), PNG))
    doc.latents.append(SavedLatent("no thumb", "tiny-plain", "", (1, 2.5, -3)))
    doc.add_history(HistoryEntry(request.with_(seed=1, latent=None), 0.25, "2026-11-28T19:02:00+00:00", PNG))
    doc.add_history(HistoryEntry(request, 1.5, "2026-11-28T19:03:00+00:00"))
    doc.models.append(ModelRef("tiny", SHA, "Tiny", "/models/tiny"))
    doc.models.append(ModelRef("tiny-plain"))
    return doc


def bits(values: tuple[float, ...] | None) -> bytes:
    assert values is not None
    return struct.pack(f"<{len(values)}d", *values)


# --- round trips ---------------------------------------------------------------------------------------------------
def test_full_document_round_trips_exactly(tmp_path):
    doc = full_document()
    path = save_document(doc, tmp_path / f"poster{SUFFIX}")
    assert path == tmp_path / "poster.lstudio"
    back = load_document(path)
    assert back == doc
    assert back is not doc and back.latents is not doc.latents
    assert bits(back.request.latent) == bits(doc.request.latent)
    assert bits(back.latents[0].latent) == bits(doc.latents[0].latent)
    assert bits(back.history[1].request.latent) == bits(doc.history[1].request.latent)
    assert back.latents[0].thumbnail_png == PNG and back.history[0].thumbnail_png == PNG
    assert back.latents[1].latent == (1.0, 2.5, -3.0) and all(type(v) is float for v in back.latents[1].latent)
    assert back.request.param("prompt") == "Hé\nlo ✓" and back.request.param("label") == "cat"
    assert {k: back.request.param(k) for k in ("d0", "truncation")} == {"d0": 1.5, "truncation": 0.7}
    assert back.request.params == doc.request.params and back.request.param("steps") == 20
    assert back.request.param("mix_seed") == 2**64 - 1 and type(back.request.param("mix_seed")) is int
    assert back.models[0] == ModelRef("tiny", SHA, "Tiny", "/models/tiny")
    assert back.to_json() == doc.to_json()
    # float32 values come back as the same float32 bits
    np.testing.assert_array_equal(np.asarray(back.request.latent, np.float32).view(np.uint32),
                                  np.asarray(doc.request.latent, np.float32).view(np.uint32))


def test_to_dict_layout_and_json_text(tmp_path):
    doc = full_document()
    data = doc.to_dict()
    assert data["format"] == FORMAT == "latent-studio-project" and data["version"] == FORMAT_VERSION == 2
    assert data["app_version"] == __version__
    assert set(data) == {"format", "version", "app_version", "request", "latents", "history", "models", "timeline"}
    assert isinstance(data["latents"][0]["thumbnail_png"], str)  # base64 text, not bytes
    assert data["history"][0]["request"]["seed"] == 1
    assert doc.to_json() == json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False)
    text = save_document(doc, tmp_path / "a").read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(doc.to_json())


def test_empty_document_round_trips(tmp_path):
    back = load_document(save_document(Document(), tmp_path / "empty"))
    assert back == Document() and back.request is None


def test_unknown_top_level_keys_are_ignored(tmp_path):
    data = full_document().to_dict()
    data["future_panel"] = {"zoom": [1, 2, {"x": None}]}
    data["app_version"] = "9.9.9"
    path = tmp_path / "future.lstudio"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_document(path) == full_document()


@pytest.mark.parametrize("version", [1, FORMAT_VERSION])  # 1: projects made before requests carried params
def test_missing_lists_read_as_empty(version):
    doc = Document.from_dict({"format": FORMAT, "version": version})
    assert doc == Document()


# --- saving --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, final", [("poster", "poster.lstudio"), ("poster.lstudio", "poster.lstudio"),
                                         ("notes.json", "notes.json")])
def test_save_adds_the_suffix_only_when_missing(tmp_path, name, final):
    assert save_document(Document(), tmp_path / name) == tmp_path / final
    assert sorted(p.name for p in tmp_path.iterdir()) == [final]


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path):
    path = save_document(Document(), tmp_path / "p")
    doc = full_document()
    assert save_document(doc, path) == path
    assert load_document(path) == doc
    assert [p.name for p in tmp_path.iterdir()] == ["p.lstudio"]


def test_save_into_a_path_whose_parent_is_a_file_fails_cleanly(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    target = blocker / "p.lstudio"
    with pytest.raises(ProjectError) as info:
        save_document(full_document(), target)
    assert str(target) in str(info.value) and "cannot save" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_save_into_a_missing_folder_fails_cleanly(tmp_path):
    target = tmp_path / "nope" / "p.lstudio"
    with pytest.raises(ProjectError, match="does not exist") as info:
        save_document(Document(), target)
    assert info.value.path == str(target)
    assert not (tmp_path / "nope").exists()


@pytest.mark.skipif(IS_ROOT or os.name == "nt", reason="permissions do not apply to root / POSIX modes only")
def test_save_into_an_unwritable_folder_leaves_the_old_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = save_document(Document(), folder / "p")
    before = path.read_bytes()
    folder.chmod(0o555)
    try:
        with pytest.raises(ProjectError) as info:
            save_document(full_document(), path)
        assert str(path) in str(info.value)
        assert path.read_bytes() == before
        assert [p.name for p in folder.iterdir()] == ["p.lstudio"]
    finally:
        folder.chmod(0o755)


# --- history and copies --------------------------------------------------------------------------------------------
def test_history_keeps_the_newest_entries_in_order():
    doc = Document()
    for seed in range(HISTORY_LIMIT + 10):
        doc.add_history(HistoryEntry(RenderRequest("tiny", seed=seed)))
    assert len(doc.history) == HISTORY_LIMIT == 50
    assert [h.request.seed for h in doc.history] == list(range(10, HISTORY_LIMIT + 10))
    with pytest.raises(TypeError):
        doc.add_history(RenderRequest("tiny"))  # type: ignore[arg-type]


def test_copy_is_independent():
    doc = full_document()
    twin = doc.copy()
    assert twin == doc
    twin.latents.pop()
    twin.history.clear()
    twin.models.append(ModelRef("other"))
    twin.request = None
    assert doc == full_document()


def test_records_check_their_fields():
    with pytest.raises(ProjectError) as info:
        SavedLatent("", "tiny", "", (1.0,))
    assert info.value.field == "name"
    with pytest.raises(ProjectError) as info:
        SavedLatent("a", "tiny", "", (1.0, float("nan")))
    assert info.value.field == "latent"
    with pytest.raises(ProjectError) as info:
        HistoryEntry(RenderRequest("tiny"), seconds=-1)
    assert info.value.field == "seconds"
    with pytest.raises(ProjectError) as info:
        ModelRef("tiny", sha256="xyz")
    assert info.value.field == "sha256"
    assert SavedLatent("a", "tiny", "", np.ones(3, np.float32)).latent == (1.0, 1.0, 1.0)  # type: ignore[arg-type]


# --- bad input -----------------------------------------------------------------------------------------------------
def _set(key_path: tuple[Any, ...], value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in key_path[:-1]:
            target = target[key]
        target[key_path[-1]] = value
    return change


def _drop(key_path: tuple[Any, ...]) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in key_path[:-1]:
            target = target[key]
        del target[key_path[-1]]
    return change


BIG = 10 ** 400  # JSON allows it; float() overflows

BAD_FIELDS = [
    (_drop(("format",)), "format", "not a Latent Studio project"),
    (_set(("format",), "something-else"), "format", "not a Latent Studio project"),
    (_set(("format",), None), "format", "not a Latent Studio project"),
    (_set(("version",), 3), "version", "made by a newer Latent Studio (format 3); this app reads up to 2"),
    (_set(("version",), "1"), "version", "whole number"),
    (_set(("version",), True), "version", "whole number"),
    (_set(("version",), 1.0), "version", "whole number"),
    (_set(("version",), 0), "version", "not supported"),
    (_drop(("version",)), "version", "missing"),
    (_set(("request",), 5), "request", "must be an object"),
    (_set(("request", "seed"), -1), "request.seed", "seed"),
    (_set(("request", "model_id"), ""), "request.model_id", "model_id"),
    (_set(("request", "latent"), [1.0, BIG]), "request.latent", "finite"),
    (_set(("request", "latent"), [1.0, "x"]), "request.latent", "number"),
    (_set(("request", "dtype"), "float64"), "request.dtype", "dtype"),
    (_set(("request", "surprise"), 1), "request", "unknown field"),
    (_set(("request", "version"), 99), "request.version", "not supported"),
    (_set(("latents",), {}), "latents", "must be a list"),
    (_set(("latents", 1), "x"), "latents[1]", "must be an object"),
    (_set(("latents", 1, "name"), ""), "latents[1].name", "non-empty"),
    (_set(("latents", 1, "name"), 5), "latents[1].name", "text"),
    (_drop(("latents", 0, "name")), "latents[0].name", "missing"),
    (_drop(("latents", 0, "model_id")), "latents[0].model_id", "missing"),
    (_set(("latents", 1, "model_id"), None), "latents[1].model_id", "text"),
    (_set(("latents", 0, "model_hash"), 5), "latents[0].model_hash", "text"),
    (_set(("latents", 1, "latent"), []), "latents[1].latent", "non-empty"),
    (_set(("latents", 1, "latent"), "1,2"), "latents[1].latent", "list of numbers"),
    (_set(("latents", 1, "latent"), [1, "2"]), "latents[1].latent", "item 1 must be a number"),
    (_set(("latents", 1, "latent"), [True]), "latents[1].latent", "item 0 must be a number"),
    (_set(("latents", 1, "latent"), [1, float("nan")]), "latents[1].latent", "finite"),
    (_set(("latents", 1, "latent"), [float("inf")]), "latents[1].latent", "finite"),
    (_set(("latents", 1, "latent"), [BIG]), "latents[1].latent", "finite"),
    (_set(("latents", 0, "thumbnail_png"), "not base64!!"), "latents[0].thumbnail_png", "base64"),
    (_set(("latents", 0, "thumbnail_png"), "ab=c"), "latents[0].thumbnail_png", "base64"),
    (_set(("latents", 0, "thumbnail_png"), "é"), "latents[0].thumbnail_png", "base64"),
    (_set(("latents", 0, "thumbnail_png"), 5), "latents[0].thumbnail_png", "base64"),
    (_set(("history",), "x"), "history", "must be a list"),
    (_set(("history", 0), []), "history[0]", "must be an object"),
    (_drop(("history", 0, "request")), "history[0].request", "missing"),
    (_set(("history", 0, "request"), None), "history[0].request", "must be an object"),
    (_set(("history", 0, "request", "seed"), "x"), "history[0].request.seed", "seed"),
    (_set(("history", 1, "request", "params", "steps"), [0]), "history[1].request.params.steps", "number"),
    (_set(("history", 1, "request", "params", "d0"), True), "history[1].request.params.d0", "number"),
    (_set(("history", 1, "request", "params", "Bad name"), 1.0), "history[1].request.params", "parameter name"),
    (_set(("history", 1, "request", "latent"), [BIG]), "history[1].request.latent", "finite"),
    (_set(("history", 1, "request", "params"), 5), "history[1].request.params", "params"),
    (_set(("history", 1, "request", "edits"), 5), "history[1].request", "edits"),  # a version-1 field in version 2
    (_set(("history", 0, "seconds"), -1), "history[0].seconds", ">= 0"),
    (_set(("history", 0, "seconds"), "1"), "history[0].seconds", "number"),
    (_set(("history", 0, "seconds"), True), "history[0].seconds", "number"),
    (_set(("history", 0, "seconds"), float("nan")), "history[0].seconds", "finite"),
    (_set(("history", 0, "seconds"), BIG), "history[0].seconds", "finite"),
    (_set(("history", 0, "created"), 5), "history[0].created", "text"),
    (_set(("history", 0, "created"), "yesterday"), "history[0].created", "ISO-8601"),
    (_set(("history", 1, "thumbnail_png"), "%%%"), "history[1].thumbnail_png", "base64"),
    (_set(("models",), None), "models", "must be a list"),
    (_set(("models", 0), 3), "models[0]", "must be an object"),
    (_set(("models", 1, "id"), ""), "models[1].id", "non-empty"),
    (_drop(("models", 1, "id")), "models[1].id", "missing"),
    (_set(("models", 0, "sha256"), 5), "models[0].sha256", "text"),
    (_set(("models", 0, "sha256"), "abc"), "models[0].sha256", "64 hex"),
    (_set(("models", 0, "name"), None), "models[0].name", "text"),
    (_set(("models", 0, "folder"), ["x"]), "models[0].folder", "text"),
]


@pytest.mark.parametrize("change, field, problem", BAD_FIELDS,
                         ids=[f"{i}-{f}" for i, (_, f, _) in enumerate(BAD_FIELDS)])
def test_bad_field_names_file_and_field(tmp_path, change, field, problem):
    data = copy.deepcopy(full_document().to_dict())
    change(data)
    path = tmp_path / "bad.lstudio"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProjectError) as info:
        load_document(path)
    err = info.value
    assert err.path == str(path) and err.field == field
    assert str(err).startswith(f"{path} [{field}]: ")
    assert problem in err.problem
    with pytest.raises(ProjectError) as again:  # the same check without a file: the field, no path
        Document.from_dict(data)
    assert again.value.field == field and again.value.path is None


def test_newer_version_is_refused_with_a_clear_message(tmp_path):
    data = Document().to_dict()
    data["version"] = FORMAT_VERSION + 4
    data["something_new"] = True
    path = tmp_path / "new.lstudio"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProjectError) as info:
        load_document(path)
    assert str(info.value) == f"{path} [version]: made by a newer Latent Studio (format 6); this app reads up to 2"


BAD_FILES = [
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"{\"format\": ", "invalid JSON"),
    (b"not json at all", "invalid JSON"),
    (b"[1, 2]", "not a Latent Studio project (the file holds a list"),
    (b"\"text\"", "not a Latent Studio project"),
    (b"null", "not a Latent Studio project"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
    (b"1" * 5000, "invalid JSON"),  # an integer longer than Python's int-parsing limit
]


@pytest.mark.parametrize("content, problem", BAD_FILES, ids=[p for _, p in BAD_FILES])
def test_bad_file_content_names_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.lstudio"
    path.write_bytes(content)
    with pytest.raises(ProjectError) as info:
        load_document(path)
    assert info.value.path == str(path) and str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.lstudio"
    path.write_bytes(b"\xef\xbb\xbf" + full_document().to_json().encode("utf-8"))
    assert load_document(path) == full_document()


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ProjectError, match="no such file") as info:
        load_document(tmp_path / "missing.lstudio")
    assert info.value.path == str(tmp_path / "missing.lstudio")
    folder = tmp_path / "folder.lstudio"
    folder.mkdir()
    with pytest.raises(ProjectError, match="is a folder") as info:
        load_document(folder)
    assert info.value.path == str(folder)


@pytest.mark.skipif(IS_ROOT or os.name == "nt", reason="permissions do not apply to root / POSIX modes only")
def test_unreadable_file(tmp_path):
    path = save_document(Document(), tmp_path / "secret")
    path.chmod(0)
    try:
        with pytest.raises(ProjectError, match="permission denied") as info:
            load_document(path)
        assert info.value.path == str(path)
    finally:
        path.chmod(0o644)


def test_unreadable_file_as_root_is_reported(tmp_path, monkeypatch):
    """Root can read anything, so simulate the failure of the read itself."""
    path = save_document(Document(), tmp_path / "secret")

    real_open = os.open

    def refuse(name, *args, **kwargs):  # the project is read through studio.files, which opens with os.open
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ProjectError, match="permission denied") as info:
        load_document(path)
    assert info.value.path == str(path)


def test_a_timeline_is_saved_and_read_back_and_old_projects_have_an_empty_one(tmp_path):
    from studio.project.timeline import AudioMapping, Keyframe, Timeline

    doc = full_document()
    keys = tuple(Keyframe(RenderRequest("tiny", latent=(float(i), 1.0)), duration=1.5, easing="cubic")
                 for i in range(3))
    doc.timeline = Timeline(keys, fps=12, loop=True, audio="beat.wav", mappings=(AudioMapping("low", "d1"),))
    back = load_document(save_document(doc, tmp_path / "t"))
    assert back.timeline == doc.timeline
    data = doc.to_dict()
    del data["timeline"]
    assert Document.from_dict(data).timeline == Timeline()
    data["timeline"] = {"keyframes": [{"request": {"model_id": "tiny", "latent": [1.0]}, "easing": "bounce"}]}
    with pytest.raises(ProjectError) as info:
        Document.from_dict(data, tmp_path / "x.lstudio")
    assert info.value.field == "timeline.keyframes[0].easing" and "x.lstudio" in str(info.value)
