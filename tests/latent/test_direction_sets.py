"""The direction set file (.lsdirs, studio.latent.direction_sets): a round trip, every refusal of an untrusted file
(each naming the file and the field), and placing names on a model's directions by cosine."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from studio.errors import DirectionsError
from studio.latent.direction_sets import (FORMAT, MATCH_COSINE, MAX_SET_BYTES, DirectionEntry, DirectionSet, loads,
                                          match, read_set)


def _basis(k: int = 4, d: int = 8, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q.T[:k].astype(np.float32)


def _set(vectors: np.ndarray) -> DirectionSet:
    s = DirectionSet("tiny", "Styles")
    s = s.renamed(0, "Bold", vectors[0]).renamed(2, "Slant", vectors[2])
    custom = DirectionEntry("Wide", None, vectors[3] * 1.0, (0, 4), 1.5)
    return DirectionSet(s.model_id, s.name, (*s.entries, custom), "ab" * 32, s.dimension)


def _doc(**changes) -> dict:
    doc = {"format": FORMAT, "version": 1, "name": "S", "model": {"id": "tiny", "dimension": 3},
           "directions": [{"index": 0, "name": "Bold", "vector": [1.0, 0.0, 0.0]}]}
    doc.update(changes)
    return doc


def test_round_trip_keeps_names_indices_vectors_layers_and_amounts(tmp_path):
    vectors = _basis()
    original = _set(vectors)
    path = tmp_path / "styles.lsdirs"
    path.write_text(original.dumps(), "utf-8")
    back = read_set(path)
    assert back.same_as(original)
    assert [(e.name, e.index) for e in back.entries] == [("Bold", 0), ("Slant", 2), ("Wide", None)]
    np.testing.assert_array_equal(back.entries[1].vector, vectors[2])  # float32 exactly (base64 of the bytes)
    assert back.entries[2].layers == (0, 4) and back.entries[2].amount == 1.5
    text = path.read_text("utf-8")
    assert json.loads(text)["format"] == FORMAT and "Slant" in text  # human-readable JSON
    assert back.find("slant") is back.entries[1]  # names are found whatever their case


def test_vectors_as_lists_of_numbers_are_read_and_made_unit():
    s = loads(json.dumps(_doc(directions=[{"index": 1, "name": "A", "vector": [3, 4, 0]}])))
    np.testing.assert_allclose(s.entries[0].vector, [0.6, 0.8, 0.0], rtol=1e-6)


@pytest.mark.parametrize("doc, field, words", [
    ("{not json", None, "not valid JSON"),
    ('{"format": "latent-studio-directions", "version": 1, "name": "S", "model": {"id": "tiny"}, '
     '"directions": [{"index": 0, "name": "A", "vector": [NaN, 1, 0]}]}', None, "NaN"),
    (_doc(format="something-else"), "format", "not a direction set"),
    (_doc(version=2), "version", "newer Latent Studio"),
    (_doc(version="1"), "version", "whole number"),
    (_doc(model={"id": ""}), "model.id", "must name the model"),
    (_doc(model={"id": "tiny", "sha256": "xyz"}), "model.sha256", "64 hex digits"),
    (_doc(extra=1), "extra", "unknown key"),
    (_doc(directions=[{"index": 0, "name": "A", "vector": [1.0, 0.0]}, {"index": 1, "name": "B"}]),
     "directions[0].vector", "has 2 values but the set's directions have 3"),
    (_doc(directions=[{"index": 0, "name": "A", "vector": [1e309, 0, 0]}]), None, None),
    (_doc(directions=[{"index": 0, "name": "A", "vector": [0, 0, 0]}]), "directions[0].vector", "zero length"),
    (_doc(directions=[{"index": 0, "name": "A", "vector": "!!!"}]), "directions[0].vector", "base64"),
    (_doc(directions=[{"index": 0, "name": "A",
                       "vector": base64.b64encode(np.array([1, np.nan, 0], "<f4").tobytes()).decode()}]),
     "directions[0].vector", "NaN"),
    (_doc(directions=[{"index": 0, "name": "A"}, {"index": 0, "name": "B"}]), "directions[1].index", "twice"),
    (_doc(directions=[{"index": 0, "name": "A"}, {"index": 1, "name": "a"}]), "directions[1].name", "names two"),
    (_doc(directions=[{"name": "A"}]), "directions[0]", "needs an index"),
    (_doc(directions=[{"index": -1, "name": "A"}]), "directions[0].index", "between"),
    (_doc(directions=[{"index": 0, "name": ""}]), "directions[0].name", "empty"),
    (_doc(directions=[{"index": 0, "name": "A\u0007"}]), "directions[0].name", "control character"),
    (_doc(directions=[{"index": 0, "name": "A", "layers": [4, 2]}]), "directions[0].layers", "before"),
    (_doc(directions=[{"index": 0, "name": "A", "amount": True}]), "directions[0].amount", "finite number"),
    (_doc(directions={"0": "A"}), "directions", "must be a list"),
    ("[" * 100 + "]" * 100, None, "nested"),
])
def test_every_bad_file_is_refused_naming_the_file_and_field(tmp_path, doc, field, words):
    path = tmp_path / "bad.lsdirs"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), "utf-8")
    with pytest.raises(DirectionsError) as info:
        read_set(path)
    assert info.value.path == str(path)
    if field is not None:
        assert info.value.field == field, str(info.value)
    if words is not None:
        assert words in info.value.problem, str(info.value)


def test_a_huge_file_is_refused_by_its_size_before_it_is_read(tmp_path):
    path = tmp_path / "huge.lsdirs"
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # a sparse 2 GiB file of zeros: were it read, it would fail as "not UTF-8"/"not JSON"
    with pytest.raises(DirectionsError) as info:
        read_set(path)
    assert info.value.path == str(path)
    assert info.value.problem == f"is {2 << 30:,} bytes, over the limit of {MAX_SET_BYTES:,} for a direction set"


def test_names_stay_where_their_vectors_still_match():
    vectors = _basis()
    result = match(_set(vectors), vectors, 4)
    assert {k: e.name for k, e in result.names.items()} == {0: "Bold", 2: "Slant", 3: "Wide"}
    assert not result.warnings and not result.notes


def test_a_name_follows_its_vector_to_another_index_and_says_so():
    vectors = _basis()
    reordered = vectors[[2, 1, 0, 3]]  # the reader's PCA swapped d0 and d2
    result = match(_set(vectors), reordered, 4)
    assert {k: e.name for k, e in result.names.items()} == {2: "Bold", 0: "Slant", 3: "Wide"}
    assert len(result.notes) == 2 and "now lies along d2" in " ".join(result.notes)


def test_a_name_whose_vector_no_longer_matches_is_not_shown_and_warned():
    vectors = _basis()
    other = _basis(seed=5)  # directions of other weights under the same id
    result = match(_set(vectors), other, 4)
    assert not result.names
    assert len(result.warnings) == 3
    assert all("no longer matches" in w and "not shown" in w for w in result.warnings)
    assert "'Bold' (d0)" in result.warnings[0] and "cosine" in result.warnings[0]
    flipped = match(_set(vectors), -vectors, 4)  # the same axes pointing the other way
    assert not flipped.names and "points the other way" in flipped.warnings[0]


def test_names_without_vectors_go_by_index_and_too_high_an_index_is_warned():
    s = DirectionSet("tiny", "S").renamed(1, "Round").renamed(7, "Tall")
    result = match(s, None, 4)
    assert {k: e.name for k, e in result.names.items()} == {1: "Round"}
    assert "d0…d3" in result.warnings[0]


def test_slight_tilt_within_the_threshold_still_matches():
    vectors = _basis()
    tilted = vectors.copy()
    tilted[0] = vectors[0] * 0.98 + vectors[1] * np.sqrt(1 - 0.98 ** 2)
    assert 0.98 > MATCH_COSINE
    assert match(_set(vectors), tilted, 4).names[0].name == "Bold"


def test_renaming_refuses_a_taken_name_and_clears_with_none():
    s = DirectionSet("tiny", "S").renamed(0, "Bold")
    with pytest.raises(DirectionsError, match="already called"):
        s.renamed(1, "bold")
    assert not s.renamed(0, None).entries
    assert s.renamed(0, "  Very   bold ").entries[0].name == "Very bold"
