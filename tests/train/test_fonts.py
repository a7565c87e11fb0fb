"""studio.train.fonts: glyph rendering, font filtering, family split, the .npz cache (fast: real fonts, small sizes)."""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFont

from studio.train import fonts
from studio.train.fonts import (CHARSET, FontFace, GlyphSet, blocked_by, build_glyph_set, family_key,
                                find_font_files, glyph_statistics, load_or_build, missing_packages, render_font,
                                split_by_family)

DEJAVU = {Path(p).name: p for p in glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf")}
LATIN = [DEJAVU[n] for n in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
         if n in DEJAVU]
needs_dejavu = pytest.mark.skipif(len(LATIN) < 4, reason="needs fonts-dejavu")


def _first(*patterns: str) -> str | None:
    for pat in patterns:
        hits = sorted(glob.glob(pat, recursive=True))
        if hits:
            return hits[0]
    return None


@pytest.fixture(scope="module")
def default_font(tmp_path_factory) -> str:
    """Pillow's bundled scalable face as a file path (it is bundled as bytes: written to a temp file)."""
    try:
        font = ImageFont.load_default(size=40)
    except Exception as exc:  # Pillow without FreeType
        pytest.skip(f"no scalable default font: {exc}")
    if not isinstance(font, ImageFont.FreeTypeFont):
        pytest.skip("Pillow's default font is not a FreeType font")
    src = font.path
    if isinstance(src, (str, os.PathLike)) and os.path.isfile(src):
        return os.fspath(src)
    if hasattr(src, "getvalue"):
        path = tmp_path_factory.mktemp("default_font") / "pillow_default.ttf"
        path.write_bytes(src.getvalue())
        return str(path)
    pytest.skip("cannot get a path for Pillow's default font")


def _ink_rows(glyph: np.ndarray, level: int = 100) -> np.ndarray:
    return np.flatnonzero(glyph.max(axis=1) > level)


# --------------------------------------------------------------------------- rendering

def test_charset():
    assert len(CHARSET) == 62 and len(set(CHARSET)) == 62
    assert CHARSET.index("A") == 0 and CHARSET.index("a") == 26 and CHARSET.index("0") == 52


def test_render_default_font_geometry(default_font):
    imgs = render_font(default_font, size=32)
    assert imgs is not None and imgs.shape == (62, 32, 32) and imgs.dtype == np.uint8
    assert all(g.max() > 128 for g in imgs), "every glyph has ink"
    assert imgs[:, 0, :].max() == 0 and imgs[:, -1, :].max() == 0, "a margin is left at the top and bottom"

    def rows(ch):
        return _ink_rows(imgs[CHARSET.index(ch)])

    bottoms = [rows(c)[-1] for c in "xanmHE"]
    assert max(bottoms) - min(bottoms) <= 1, f"one baseline for all glyphs: {bottoms}"
    baseline = int(np.median(bottoms))
    for ch in "gpqy":
        assert rows(ch)[-1] >= baseline + 3, f"{ch!r} descends below the baseline"
    assert rows("a")[0] >= rows("A")[0] + 3, "lowercase 'a' is shorter than capital 'A' (shared scale)"
    assert rows("x")[0] >= rows("X")[0] + 3
    # horizontally centred on its ink box
    cols = np.flatnonzero(imgs[CHARSET.index("i")].max(axis=0) > 100)
    assert abs((cols[0] + cols[-1]) / 2 - 15.5) <= 1.5


def test_render_accepts_a_font_object_and_other_sizes(default_font):
    a = render_font(default_font, size=24)
    b = render_font(ImageFont.load_default(size=40), size=24)   # a FreeTypeFont loaded from bytes
    assert a.shape == (62, 24, 24)
    assert np.array_equal(a, b)
    c = render_font(default_font, size=16, charset="Ag")
    assert c.shape == (2, 16, 16)


def test_render_missing_glyph_or_bad_file_gives_none(default_font, tmp_path):
    assert render_font(default_font, size=16, charset="A\ue123") is None     # private use: not in the font
    assert render_font(default_font, size=16, charset="A\u0e01") is None     # Thai: not in the font
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font at all" * 10)
    assert render_font(bad, size=16) is None
    assert render_font(tmp_path / "absent.ttf", size=16) is None


@pytest.mark.parametrize("pattern", ["/usr/share/fonts/**/NotoSansArabic-Regular.ttf",
                                     "/usr/share/fonts/**/NotoSansDevanagari-Regular.ttf"])
def test_render_non_latin_font_gives_none(pattern):
    path = _first(pattern)
    if path is None:
        pytest.skip(f"no {pattern}")
    assert render_font(path, size=16) is None


# --------------------------------------------------------------------------- discovery and names

def test_find_font_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.TTF", "a.otf", "c.pfb", "d.t1", "sub/e.ttf", "x.afm", "x.pfm", "x.woff", "x.txt"):
        (tmp_path / name).write_bytes(b"")
    found = find_font_files([tmp_path, tmp_path / "does-not-exist"])
    assert found == sorted(str(tmp_path / n) for n in ("b.TTF", "a.otf", "c.pfb", "d.t1", "sub/e.ttf"))
    assert find_font_files(str(tmp_path)) == found


def test_find_system_fonts():
    if not os.path.isdir("/usr/share/fonts"):
        pytest.skip("no /usr/share/fonts")
    files = find_font_files()
    assert files == sorted(files)
    assert all(f.lower().endswith((".ttf", ".otf", ".pfb", ".t1")) for f in files)


@pytest.mark.parametrize("family, style, blocked", [
    ("D050000L", "Regular", True), ("Standard Symbols PS", "Regular", True), ("Noto Sans Math", "Regular", True),
    ("EB Garamond SC 12", "Regular", True), ("Go Smallcaps", "Regular", True), ("Ellhnikh", "Bold", True),
    ("Alfa-beta", "Regular", True), ("Abecedario_guiada", "Regular", True), ("OCRA", "Medium", True),
    ("Linux Biolinum Keyboard O", "Regular", True), ("Mekanus ADF Titling Std", "Bold", True),
    ("TeX Gyre Schola", "Regular", False), ("DejaVu Sans", "Book", False), ("Socrates Sans", "Regular", False),
    ("Prociono", "Regular", False), ("Noto Sans", "Regular", False),
])
def test_block_list(family, style, blocked):
    assert (blocked_by(FontFace("/x/" + family.replace(" ", "") + ".otf", family, style)) is not None) == blocked


def test_missing_packages(monkeypatch):
    if shutil.which("dpkg-query") is not None:
        assert missing_packages(["dpkg", "no-such-package-zz9"]) == ["no-such-package-zz9"]
        assert missing_packages([]) == []
    monkeypatch.setattr(fonts.shutil, "which", lambda name: None)          # not Debian
    assert missing_packages(["fonts-dejavu-core", "no-such-package-zz9"]) == []


# --------------------------------------------------------------------------- building

@needs_dejavu
def test_build_glyph_set_dedupes_and_filters(tmp_path):
    copy = tmp_path / "copy-of-DejaVuSans.ttf"
    shutil.copy(LATIN[0], copy)
    files = LATIN + [LATIN[0], str(copy)]           # the same file twice, and a same-named copy
    rejects = [p for p in (_first("/usr/share/fonts/**/NotoSansArabic-Regular.ttf"),
                           _first("/usr/share/fonts/**/D050000L.*"),
                           _first("/usr/share/fonts/**/NotoSansSymbols-Regular.ttf")) if p]
    calls = []
    g = build_glyph_set(files + rejects, size=16, progress=lambda d, t: calls.append((d, t)))
    assert isinstance(g, GlyphSet) and g.size == 16
    assert g.images.shape == (4, 62, 16, 16) and g.images.dtype == np.uint8
    names = [(f.family, f.style) for f in g.faces]
    assert len(set(names)) == len(names) == 4
    assert sorted(names) == names, "sorted by family, then style"
    assert len({str(copy), LATIN[0]} & {f.path for f in g.faces}) == 1
    assert len(g.dropped["duplicate_name"]) == 1
    assert set(rejects).isdisjoint(f.path for f in g.faces)
    assert calls and calls[-1][0] == calls[-1][1] == len(set(files + rejects))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    again = build_glyph_set(list(reversed(files + rejects)), size=16)
    assert again.faces == g.faces and np.array_equal(again.images, g.images), "deterministic"


def test_glyph_statistics_flags_caps_copies():
    rng = np.random.default_rng(0)
    imgs = (rng.random((3, 62, 16, 16)) > 0.8).astype(np.uint8) * 255
    imgs[1, 26:52] = imgs[1, :26]                   # lowercase copied from the capitals
    s = glyph_statistics(imgs, shape=False)
    assert s["case_diff"][1] == 0 and s["case_diff"][0] > fonts.MIN_CASE_DIFF
    assert np.allclose(s["ink"], imgs.mean(axis=(1, 2, 3)) / 255)


# --------------------------------------------------------------------------- split

def _fake_set(families: dict[str, int]) -> GlyphSet:
    faces = [FontFace(f"/f/{fam}-{i}.ttf", fam, f"Style{i}") for fam, n in families.items() for i in range(n)]
    return GlyphSet(np.zeros((len(faces), 62, 4, 4), np.uint8), faces, 4)


def test_split_by_family():
    fams = {f"Family{k:02d}": 1 + k % 5 for k in range(40)}
    fams.update({"Roboto": 6, "Roboto Condensed": 4, "Roboto Slab": 3})
    g = _fake_set(fams)
    tr, ho = split_by_family(g, heldout_fraction=0.1, seed=0)
    assert len(tr) + len(ho) == len(g.faces) and set(tr).isdisjoint(ho)
    assert sorted(np.concatenate([tr, ho]).tolist()) == list(range(len(g.faces)))
    fam_tr = {family_key(g.faces[i].family) for i in tr}
    fam_ho = {family_key(g.faces[i].family) for i in ho}
    assert fam_tr.isdisjoint(fam_ho), "whole families on one side"
    assert ("roboto" in fam_tr) != ("roboto" in fam_ho)
    assert 0.05 * len(g.faces) <= len(ho) <= 0.2 * len(g.faces)
    tr2, ho2 = split_by_family(g, heldout_fraction=0.1, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(ho, ho2), "deterministic for a seed"
    others = [split_by_family(g, heldout_fraction=0.1, seed=s)[1] for s in range(1, 6)]
    assert any(not np.array_equal(o, ho) for o in others), "the seed matters"
    assert family_key("Roboto Condensed") == family_key("Roboto") == "roboto"
    assert family_key("Quicksand Light") == "quicksand" and family_key("Roboto Slab") == "roboto slab"


def test_split_small_sets():
    tr, ho = split_by_family(_fake_set({"A": 2, "B": 1}), heldout_fraction=0.1)
    assert len(ho) >= 1 and len(tr) >= 1, "two families: one is held out"
    tr, ho = split_by_family(_fake_set({"A": 3}), heldout_fraction=0.5)
    assert len(ho) == 0 and len(tr) == 3, "a single family stays in training"
    tr, ho = split_by_family(_fake_set({"A": 2, "B": 2}), heldout_fraction=0.0)
    assert len(ho) == 0


# --------------------------------------------------------------------------- cache

@needs_dejavu
def test_load_or_build_cache(tmp_path, monkeypatch):
    builds = []
    real_build = fonts.build_glyph_set
    monkeypatch.setattr(fonts, "build_glyph_set", lambda *a, **k: builds.append(1) or real_build(*a, **k))
    files = [shutil.copy(p, tmp_path / Path(p).name) for p in LATIN[:3]]
    cache = tmp_path / "cache" / "glyphs16.npz"

    g1 = load_or_build(cache, font_files=files, size=16)
    assert cache.is_file() and len(builds) == 1 and len(g1.faces) == 3
    with np.load(cache, allow_pickle=False) as z:                      # no pickled objects inside
        assert z["images"].dtype == np.uint8 and z["images"].shape == (3, 62, 16, 16)
        assert int(z["size"]) == 16
        assert [json.loads(s)[1] for s in z["faces"].tolist()] == [f.family for f in g1.faces]

    g2 = load_or_build(cache, font_files=list(reversed(files)), size=16)
    assert len(builds) == 1, "cache hit"
    assert g2.faces == g1.faces and g2.size == 16 and np.array_equal(g2.images, g1.images)

    g3 = load_or_build(cache, font_files=files + [shutil.copy(LATIN[3], tmp_path / Path(LATIN[3]).name)], size=16)
    assert len(builds) == 2 and len(g3.faces) == 4, "a new font file rebuilds"
    os.utime(files[0], ns=(1_000_000_000, 1_000_000_000))
    load_or_build(cache, font_files=files, size=16)
    assert len(builds) == 3, "a changed mtime rebuilds"
    load_or_build(cache, font_files=files, size=24)
    assert len(builds) == 4, "another size rebuilds"
    cache.write_bytes(b"garbage")
    assert len(load_or_build(cache, font_files=files, size=24).faces) == 3 and len(builds) == 5
