"""Glyph-image dataset rendered from the system's (Debian-packaged) fonts.

Pipeline (:func:`build_glyph_set`):

1. load every font file and read ``(family, style)`` from ``font.getname()``;
2. drop fonts whose name matches :data:`DEFAULT_BLOCK_LIST` (symbols, Greek, small caps, ...);
3. deduplicate faces by ``(family, style)`` (URW base35 ships every face as .otf, .pfb and .t1);
4. render the 62 glyphs of :data:`CHARSET` with one shared scale and baseline per font
   (:func:`render_font`), dropping fonts that lack any of them (most of Noto is non-Latin);
5. data checks (:func:`glyph_statistics`): drop near-identical renderings (one design under
   several names), fonts whose lowercase is a copy of the capitals or drawn as capitals, fonts
   with tiny/huge ink coverage, and fonts whose glyphs correlate poorly with the per-character
   median glyph over all fonts (odd or decorated fonts that slipped through the name filter).

:func:`load_or_build` caches the result as a pickle-free ``.npz`` keyed on the font files'
paths, sizes and mtimes.  No Qt, no torch: numpy + Pillow only.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

CHARSET: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
"""The 62 classes; a glyph's class index is its position in this string."""

FONT_EXTENSIONS = (".ttf", ".otf", ".pfb", ".t1")

DEFAULT_BLOCK_LIST: tuple[str, ...] = (
    # symbols / pictographs / non-letter shapes mapped onto A-Z
    "dingbat", "symbol", "d050000l", "ornament", "wingding", "webding", "emoji", "icons",
    "braille", "music", "math", "stixintegrals", "stixsize", "stixvariants", "stixnonunicode",
    "keyboard", "signwriting", "mayan numerals", "siyaq",
    # Greek / phonetic fonts that reuse Latin code points
    "ellhnikh", "alfa-beta", "phonetic", "phon tique", "ipa phon",
    # school fonts with ruled guide lines, hairline / dotted / noisy fonts
    "abecedario", "kristi", "wargames",
    # uncial: capitals drawn as minuscules
    "solothurn",
    # machine-reading fonts
    " ocr",
    # no real lowercase: small caps, titling, initials, all-caps display fonts
    "small caps", "smallcaps", " sc ", "all sc", "titling", "initials", "capitals",
)
"""Case-insensitive name fragments (matched against ``"family style filename"``, with every run
of non-alphanumeric characters turned into one space and a space added at both ends, so a
fragment with spaces such as ``" sc "`` only matches a whole word)."""

# Data-check thresholds (statistics: see glyph_statistics), chosen by looking at which faces fall
# past them among the 847 Latin faces rendered from Debian's font packages (size 64).
MAX_DUPLICATE_DIFF = 0.0015     # mean |a - b| between two faces' 16x16 thumbnails, in [0, 1]:
                                # below = same outlines under another name or a near-exact clone
                                # (Tlwg Typo = Tlwg Mono, Rasa = Yrsa, Tinos = Liberation Serif,
                                # STIX ~ Nimbus Roman); other Times/Helvetica re-drawings
                                # (FreeSerif vs Nimbus Roman) sit at 0.002-0.006 and are kept
MIN_CASE_DIFF = 0.01            # lowercase is a copy of the capitals (Bebas Neue, Tomson Talks: < 0.005)
MIN_INK, MAX_INK = 0.012, 0.35  # faintest real face (Lato Hairline) 0.015, boldest 0.24
MAX_CASE_CONFUSION = 0.8        # caps-only fonts 0.96-1.0 (Humor Sans), handwriting <= 0.7
MIN_MEDIAN_CORRELATION = 0.43   # gap between 0.39 (El Abogado Loco, DkgHandwriting Oblique,
                                # Elegante, Ecolier) and 0.46 (informal but legible fonts)

_EXT_PREFERENCE = {".otf": 0, ".ttf": 1, ".pfb": 2, ".t1": 3}
_MISSING_PROBES = ("\uffff", "\U0010fffd")   # surely-missing code points -> the font's .notdef box


@dataclass(frozen=True)
class FontFace:
    """One font face: the file it came from and its ``font.getname()``."""

    path: str
    family: str
    style: str

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}"


@dataclass
class GlyphSet:
    """Rendered glyphs: ``images[i, c]`` is char ``CHARSET[c]`` of ``faces[i]``.

    ``images`` is uint8 ``(n_fonts, 62, size, size)``, 0 = background, 255 = ink.
    ``dropped`` maps a filter name to the faces it removed (informational; empty when loaded
    from an older cache).
    """

    images: np.ndarray
    faces: list[FontFace]
    size: int
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def families(self) -> list[str]:
        return sorted({f.family for f in self.faces})


# --------------------------------------------------------------------------- discovery

def find_font_files(roots: Iterable[str | Path] = ("/usr/share/fonts",)) -> list[str]:
    """All .ttf/.otf/.pfb/.t1 files (case-insensitive) under ``roots``, sorted; missing roots are skipped."""
    found: set[str] = set()
    if isinstance(roots, (str, Path)):
        roots = (roots,)
    for root in roots:
        for dirpath, _dirs, files in os.walk(root, followlinks=True):
            for name in files:
                if name.lower().endswith(FONT_EXTENSIONS):
                    path = os.path.join(dirpath, name)
                    if os.path.isfile(path):
                        found.add(path)
    return sorted(found)


def missing_packages(packages: Sequence[str]) -> list[str]:
    """The Debian packages of ``packages`` that are not installed (per ``dpkg-query``).

    Returns ``[]`` when ``dpkg-query`` is absent (not a Debian system): font discovery decides then.
    """
    exe = shutil.which("dpkg-query")
    if exe is None:
        return []
    missing = []
    for name in packages:
        try:
            res = subprocess.run([exe, "-W", "-f=${Status}", name], capture_output=True, text=True,
                                 timeout=30)
            ok = res.returncode == 0 and res.stdout.strip().endswith("install ok installed")
        except (OSError, subprocess.SubprocessError):
            ok = False
        if not ok:
            missing.append(name)
    return missing


# --------------------------------------------------------------------------- rendering

def _load_font(path_or_font, px: int) -> ImageFont.FreeTypeFont:
    """``path_or_font`` (a path or a FreeTypeFont) loaded at ``px`` pixels with the basic layout."""
    basic = ImageFont.Layout.BASIC
    if isinstance(path_or_font, ImageFont.FreeTypeFont):
        src = path_or_font.path
        if not isinstance(src, (str, bytes, os.PathLike)):  # font loaded from bytes, e.g. ImageFont.load_default()
            src.seek(0)
            src = io.BytesIO(src.read())
        return ImageFont.truetype(src, px, index=path_or_font.index, layout_engine=basic)
    return ImageFont.truetype(os.fspath(path_or_font), px, layout_engine=basic)


def _ink(font: ImageFont.FreeTypeFont, ch: str):
    """``(bitmap cropped to ink, left, top)`` of ``ch`` relative to the pen origin on the baseline
    (``top`` < 0 above the baseline); ``None`` when the glyph has no ink."""
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls")
    pad = 4 + font.size // 4                 # slack for outlines poking out of the reported bbox
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    if w <= 0 or h <= 0:
        return None
    im = Image.new("L", (int(w), int(h)), 0)        # ints already (no stroke); Pillow types the bbox as floats
    ox, oy = pad - x0, pad - y0              # pen origin inside the canvas
    ImageDraw.Draw(im).text((ox, oy), ch, font=font, fill=255, anchor="ls")
    a = np.asarray(im)
    rows = np.flatnonzero(a.max(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(a.max(axis=0))
    crop = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return crop, int(cols[0] - ox), int(rows[0] - oy)


def _same(g1, g2) -> bool:
    return (g1 is not None and g2 is not None and g1[1:] == g2[1:]
            and g1[0].shape == g2[0].shape and np.array_equal(g1[0], g2[0]))


def render_font(path_or_font, size: int = 64, charset: str = CHARSET) -> np.ndarray | None:
    """Render ``charset`` as uint8 ``(len(charset), size, size)`` images (255 = ink).

    All glyphs share one scale and one baseline, so relative sizes (caps vs lowercase,
    x-height, descenders) are kept: the glyphs are rendered at ``4*size`` px, the union of their
    ink boxes (highest ascent, lowest descent, widest glyph) is scaled to ``0.875*size`` and
    centred, each glyph is centred horizontally on its own ink box, and the result is
    area-downsampled.  Returns ``None`` when the font cannot be loaded or any char is missing
    (blank, or drawn as the font's missing-glyph box).
    """
    try:
        font = _load_font(path_or_font, 4 * size)
        glyphs = [_ink(font, ch) for ch in charset]
        notdefs = [_ink(font, ch) for ch in _MISSING_PROBES]
    except Exception as exc:  # unreadable / unsupported font file
        log.debug("cannot render %s: %s", path_or_font, exc)
        return None
    for g in glyphs:
        if g is None or any(_same(g, nd) for nd in notdefs):
            return None
    top = min(t for _, _, t in glyphs)                        # highest ink row (<= 0 usually)
    bottom = max(t + c.shape[0] for c, _, t in glyphs)        # lowest ink row (descenders)
    width = max(c.shape[1] for c, _, _ in glyphs)
    box = max(bottom - top, width)
    side = max(int(math.ceil(box / 0.875)), box + 2)          # canvas side at render resolution
    baseline = (side - (bottom - top)) // 2 - top              # same row for every glyph
    out = np.empty((len(charset), size, size), np.uint8)
    canvas = np.zeros((side, side), np.uint8)
    for i, (crop, _left, t) in enumerate(glyphs):
        canvas[:] = 0
        h, w = crop.shape
        x, y = (side - w) // 2, baseline + t
        canvas[y:y + h, x:x + w] = crop
        out[i] = np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.BOX))
    return out


# --------------------------------------------------------------------------- dataset

def _norm_name(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()).strip() + " "


def _norm_fragment(frag: str) -> str:
    core = re.sub(r"[^a-z0-9]+", " ", frag.lower()).strip()
    lead = " " if frag[:1].isspace() else ""
    trail = " " if frag[-1:].isspace() else ""
    return lead + core + trail


def blocked_by(face: FontFace, block_list: Sequence[str] = DEFAULT_BLOCK_LIST) -> str | None:
    """The first block-list fragment matching ``face`` (family, style or file name), else ``None``."""
    stem = Path(face.path).stem
    text = _norm_name(f"{face.family} {face.style} {stem}")
    for frag in block_list:
        if _norm_fragment(frag) in text:
            return frag
    return None


def _read_name(path: str) -> tuple[str, str] | None:
    try:
        name = ImageFont.truetype(path, 12).getname()
    except Exception as exc:
        log.debug("cannot load %s: %s", path, exc)
        return None
    return (name[0] or Path(path).stem), (name[1] or "Regular")


def _thumbs(images: np.ndarray, k: int = 4) -> np.ndarray:
    """Mean-pool ``(n, 62, s, s)`` by ``k`` -> float32 ``(n, 62, s/k, s/k)`` in [0, 1]."""
    n, c, s, _ = images.shape
    s2 = s // k
    out = np.empty((n, c, s2, s2), np.float32)
    for i in range(0, n, 64):                # in chunks: a float copy of everything is large
        x = images[i:i + 64, :, :s2 * k, :s2 * k].reshape(-1, c, s2, k, s2, k).astype(np.float32)
        out[i:i + 64] = x.mean(axis=(3, 5)) / 255.0
    return out


def _shape_features(images: np.ndarray, k: int = 16) -> np.ndarray:
    """Width-normalised, blurred ``k x k`` glyph shapes, z-scored: float32 ``(n, 62, k*k)``.

    Each glyph is cropped to its ink columns and stretched to the full width (rows, i.e. baseline
    and heights, are kept), so wide/narrow/thin/bold variants of a letter still correlate well
    while a different shape (a symbol, a capital standing in for a lowercase letter) does not.
    """
    n, c, s, _ = images.shape
    blur = ImageFilter.GaussianBlur(1.5 * s / 64)
    out = np.zeros((n, c, k * k), np.float32)
    for i in range(n):
        for j in range(c):
            g = images[i, j]
            cols = np.flatnonzero(g.max(axis=0) > 32)
            if cols.size:
                g = g[:, cols[0]:cols[-1] + 1]
            a = Image.fromarray(g).filter(blur).resize((k, k), Image.Resampling.BOX)
            out[i, j] = np.asarray(a, np.float32).ravel()
    out -= out.mean(-1, keepdims=True)
    out /= np.linalg.norm(out, axis=-1, keepdims=True) + 1e-6
    return out


def glyph_statistics(images: np.ndarray, shape: bool = True) -> dict[str, np.ndarray]:
    """Per-face statistics used by the data checks of :func:`build_glyph_set` (images uint8
    ``(n, 62, s, s)`` in CHARSET order):

    - ``ink``: mean ink coverage in [0, 1];
    - ``case_diff``: mean |a..z - A..Z| in [0, 1] (tiny = lowercase is a copy of the capitals);
    - ``median_corr``: mean over chars of corr(shape, per-char median shape over all faces);
    - ``case_confusion``: fraction of letters whose lowercase is closer to the median capital than
      to the median lowercase, or whose capital is closer to the median lowercase (caps-only fonts).

    The last two need a reasonably large, mostly clean set of faces; ``shape=False`` skips them.
    """
    n = len(images)
    stats = {"ink": np.zeros(n), "case_diff": np.zeros(n)}
    for i in range(n):
        f = images[i].astype(np.float32) / 255.0
        stats["ink"][i] = f.mean()
        stats["case_diff"][i] = np.abs(f[26:52] - f[:26]).mean()
    if not shape or len(images) == 0:
        return stats
    x = _shape_features(images)
    med = np.median(x, axis=0)
    med -= med.mean(-1, keepdims=True)
    med /= np.linalg.norm(med, axis=-1, keepdims=True) + 1e-6
    corr = np.einsum("ncd,cd->nc", x, med)                       # (n, 62) own-char correlation
    up, lo = slice(0, 26), slice(26, 52)
    lo_vs_up = np.einsum("ncd,cd->nc", x[:, lo], med[up])
    up_vs_lo = np.einsum("ncd,cd->nc", x[:, up], med[lo])
    confusion = ((lo_vs_up > corr[:, lo]) | (up_vs_lo > corr[:, up])).mean(-1)
    stats.update(median_corr=corr.mean(-1), case_confusion=confusion)
    return stats


def _near_duplicates(x: np.ndarray, max_diff: float) -> list[tuple[int, int]]:
    """``(j, i)`` pairs, i < j, such that row j of ``x`` (values in [0, 1]) is within mean absolute
    difference ``max_diff`` of an earlier, itself kept, row i.  Each j is reported once."""
    n, d = x.shape
    if n < 2:
        return []
    # sum (a-b)^2 <= sum |a-b| for values in [0, 1]: a cheap Gram-matrix pre-filter, then exact L1
    xd = x.astype(np.float64)
    sq = (xd * xd).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (xd @ xd.T)
    cand = d2 < max_diff * d + 1e-4
    dropped: dict[int, int] = {}
    for i in range(n):
        if i in dropped:
            continue
        for j in (np.flatnonzero(cand[i, i + 1:]) + i + 1).tolist():
            if j not in dropped and np.abs(x[j] - x[i]).mean() < max_diff:
                dropped[j] = i
    return sorted(dropped.items())


def build_glyph_set(font_files: Iterable[str | Path], size: int = 64,
                    block_list: Sequence[str] = DEFAULT_BLOCK_LIST,
                    progress: Callable[[int, int], None] | None = None,
                    data_filter: bool = True) -> GlyphSet:
    """Render a deduplicated, filtered :class:`GlyphSet` from ``font_files``.

    Faces are sorted by (family, style, path).  ``progress(done, total)`` is called as files are
    processed (single process, ~25 ms per font).  ``data_filter=False`` skips the data checks;
    the median-based ones (``caps_only``, ``low_correlation``) are skipped automatically when
    fewer than 20 faces are left, since a median over a handful of fonts means little.
    ``GlyphSet.dropped`` records what each filter removed.
    """
    files = sorted({os.fspath(p) for p in font_files})
    total = len(files)
    dropped: dict[str, list[str]] = {k: [] for k in (
        "unloadable", "block_list", "duplicate_name", "missing_glyphs", "duplicate_render",
        "lowercase_copy", "ink", "caps_only", "low_correlation")}
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    # 1-3: names, block list, dedupe by (family, style)
    by_name: dict[tuple[str, str], list[str]] = {}
    for path in files:
        name = _read_name(path)
        if name is None:
            dropped["unloadable"].append(path)
            tick()
            continue
        face = FontFace(path, *name)
        frag = blocked_by(face, block_list)
        if frag is not None:
            dropped["block_list"].append(f"{face.name} ({path}) [{frag.strip()}]")
            tick()
            continue
        by_name.setdefault(name, []).append(path)
    candidates: list[FontFace] = []
    for (family, style), paths in by_name.items():
        paths.sort(key=lambda p: (_EXT_PREFERENCE.get(Path(p).suffix.lower(), 9), p))
        candidates.append(FontFace(paths[0], family, style))
        for p in paths[1:]:
            dropped["duplicate_name"].append(f"{family} {style} ({p})")
            tick()
    candidates.sort(key=lambda f: (f.family, f.style, f.path))

    # 4: render
    rendered: list[np.ndarray | None] = []
    for face in candidates:
        rendered.append(render_font(face.path, size))
        tick()
    faces, arrays = [], []
    for face, arr in zip(candidates, rendered):
        if arr is None:
            dropped["missing_glyphs"].append(f"{face.name} ({face.path})")
        else:
            faces.append(face)
            arrays.append(arr)
    images = (np.stack(arrays) if arrays
              else np.zeros((0, len(CHARSET), size, size), np.uint8))

    # 5: data checks
    if data_filter and len(faces):
        keep = np.ones(len(faces), bool)

        # near-identical renderings: the same outlines under another family name
        for j, i in _near_duplicates(_thumbs(images, max(1, size // 16)).reshape(len(faces), -1),
                                     MAX_DUPLICATE_DIFF):
            keep[j] = False
            dropped["duplicate_render"].append(f"{faces[j].name} = {faces[i].name}")

        def drop(mask: np.ndarray, reason: str, values: np.ndarray) -> None:
            for i in np.flatnonzero(keep & mask):
                keep[i] = False
                dropped[reason].append(f"{faces[i].name} ({values[i]:.3f})")

        idx = np.flatnonzero(keep)
        shape = len(idx) >= 20               # a median glyph over a handful of fonts means little
        sub = glyph_statistics(images[idx], shape=shape)
        stats = {k: np.full(len(faces), np.nan) for k in sub}
        for k, v in sub.items():
            stats[k][idx] = v
        drop(stats["case_diff"] < MIN_CASE_DIFF, "lowercase_copy", stats["case_diff"])
        drop((stats["ink"] < MIN_INK) | (stats["ink"] > MAX_INK), "ink", stats["ink"])
        if shape:
            drop(stats["case_confusion"] > MAX_CASE_CONFUSION, "caps_only", stats["case_confusion"])
            drop(stats["median_corr"] < MIN_MEDIAN_CORRELATION, "low_correlation", stats["median_corr"])
        faces = [fc for fc, k in zip(faces, keep) if k]
        images = images[keep]

    for reason, names in dropped.items():
        if names and reason not in ("duplicate_name",):
            log.info("%s dropped %d: %s", reason, len(names), "; ".join(names))
    return GlyphSet(np.ascontiguousarray(images), faces, size, dropped)


# --------------------------------------------------------------------------- splitting

_FAMILY_SUFFIXES = re.compile(
    r"\b(condensed|cond|cn|narrow|extended|expanded|light|thin|medium|semibold|demibold|demi|"
    r"bold|extrabold|black|heavy|book|regular|display|text|caption|unhinted|std|pro|no\d+|"
    r"[a-z]?\d+)\b")


def family_key(family: str) -> str:
    """Family name with width/weight/optical-size words removed, so e.g. "Roboto Condensed",
    "Quicksand Light" and "Inter Display" group with "Roboto", "Quicksand" and "Inter"."""
    key = _FAMILY_SUFFIXES.sub(" ", family.lower().replace("_", " "))
    key = re.sub(r"\s+", " ", key).strip()
    return key or family.lower()


def split_by_family(glyphs: GlyphSet, heldout_fraction: float = 0.1,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, heldout_idx)`` into ``glyphs.faces``; every family (grouped by
    :func:`family_key`) lands wholly on one side, so held-out faces are unseen designs.

    About ``heldout_fraction`` of the faces are held out (at least one family when there are two
    or more); deterministic for a given ``seed``.
    """
    keys = [family_key(f.family) for f in glyphs.faces]
    groups = sorted(set(keys))
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    target = heldout_fraction * len(keys)
    counts = {g: 0 for g in groups}
    for k in keys:
        counts[k] += 1
    held: set[str] = set()
    n_held = 0
    for g in order:
        if len(held) >= len(groups) - 1 or n_held >= target:
            break
        if n_held and n_held + counts[g] > target * 1.5:
            continue                          # skip a huge family that would overshoot badly
        held.add(g)
        n_held += counts[g]
    if not held and heldout_fraction > 0 and len(groups) > 1:
        held.add(order[0])
    mask = np.array([k in held for k in keys], bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# --------------------------------------------------------------------------- caching

_CACHE_VERSION = 1


def _cache_key(font_files: Sequence[str], size: int) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION} size={size}\n".encode())
    for p in sorted(font_files):
        try:
            st = os.stat(p)
            h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\tmissing\n".encode())
    return h.hexdigest()


def save_glyph_set(glyphs: GlyphSet, path: str | Path, key: str = "") -> None:
    """Write ``glyphs`` to ``path`` as a compressed, pickle-free .npz (atomically; ~17 MB for
    775 faces at 64 px, 0.9 s to load)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faces = np.array([json.dumps([f.path, f.family, f.style]) for f in glyphs.faces], dtype=str)
    if faces.size == 0:
        faces = np.zeros(0, dtype="<U1")
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, images=glyphs.images.astype(np.uint8), faces=faces,
             size=np.int64(glyphs.size), key=np.array(key), dropped=np.array(json.dumps(glyphs.dropped)))
    os.replace(tmp, path)


def load_glyph_set(path: str | Path) -> tuple[GlyphSet, str]:
    """Read a cache written by :func:`save_glyph_set` -> ``(glyphs, key)``."""
    with np.load(path, allow_pickle=False) as z:
        faces = [FontFace(*json.loads(s)) for s in z["faces"].tolist()]
        glyphs = GlyphSet(z["images"], faces, int(z["size"]),
                          json.loads(str(z["dropped"])) if "dropped" in z.files else {})
        key = str(z["key"]) if "key" in z.files else ""
    return glyphs, key


def load_or_build(cache_path: str | Path, font_files: Iterable[str | Path] | None = None,
                  size: int = 64, **build_kwargs) -> GlyphSet:
    """The cached :class:`GlyphSet` at ``cache_path`` if it was built from the same font files
    (paths, byte sizes, mtimes) and ``size``; otherwise build it and rewrite the cache.

    ``font_files`` defaults to :func:`find_font_files`; extra keyword arguments go to
    :func:`build_glyph_set`.
    """
    files = sorted({os.fspath(p) for p in (find_font_files() if font_files is None else font_files)})
    key = _cache_key(files, size)
    cache_path = Path(cache_path)
    if cache_path.exists():
        try:
            glyphs, old_key = load_glyph_set(cache_path)
            if old_key == key and glyphs.size == size:
                return glyphs
            log.info("glyph cache %s is stale; rebuilding", cache_path)
        except Exception as exc:
            log.warning("unreadable glyph cache %s (%s); rebuilding", cache_path, exc)
    t0 = time.perf_counter()
    glyphs = build_glyph_set(files, size=size, **build_kwargs)
    log.info("built %d faces from %d files in %.1f s", len(glyphs), len(files), time.perf_counter() - t0)
    save_glyph_set(glyphs, cache_path, key)
    return glyphs
