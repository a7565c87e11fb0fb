"""GANSpace directions of a StyleGAN package, computed once and cached (issue 19, point 3).

`cached_directions(folder, sha256, G)` returns the principal directions of G's w (studio.latent.ganspace): read from
``directions.safetensors`` beside the package when that file was made for these weights (its metadata records the
weights' sha256, the sample count, the first seed and the number of directions), else computed and written there
atomically (studio.io.atomic: a temporary file renamed into place, so a crash leaves no half file). When the package
folder cannot be written (a read-only install, a shared collection) the file goes to the user cache folder
(studio.paths.user_cache_dir()/ganspace/<sha256>-<count>-<seed>-<k>.safetensors) instead, never an error; a cache
file that cannot be read (truncated, corrupt, wrong shapes, NaN) is recomputed and rewritten, with a warning naming
it. A file whose metadata is for other weights or other settings is left alone beside the package (it may be shipped
directions of another kind) and the result goes to the user cache.

This lives in studio.nets, not studio.latent, because it writes files: the layers contract keeps studio.latent and
studio.io independent of each other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from studio.errors import ExportError, WeightsError
from studio.io.atomic import atomic_path
from studio.io.safetensors import read_header
from studio.io.weights import nonfinite_tensors, read_tensors, write_tensors
from studio.latent.directions import Directions
from studio.latent.ganspace import DEFAULT_BATCH, DEFAULT_COUNT, DEFAULT_K, Progress, compute_directions
from studio.manifest import DIRECTIONS_NAME
from studio.paths import user_cache_dir

log = logging.getLogger(__name__)

FORMAT = "latent-studio/ganspace"
FORMAT_VERSION = "1"


def cache_metadata(sha256: str, count: int, seed: int, k: int) -> dict[str, str]:
    """The safetensors metadata that says which weights and settings a directions file was computed for."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "weights_sha256": sha256, "count": str(int(count)),
            "seed": str(int(seed)), "k": str(int(k))}


def user_cache_path(sha256: str, count: int, seed: int, k: int) -> Path:
    """Where the directions go when the package folder cannot be written."""
    return user_cache_dir() / "ganspace" / f"{sha256}-{int(count)}-{int(seed)}-{int(k)}.safetensors"


def _read(path: Path, want: dict[str, str], w_dim: int) -> Directions | None:
    """The directions in `path` when it exists and was made for `want`; None when it is missing or for other
    weights or settings. WeightsError when it is ours but unreadable or inconsistent."""
    if not path.exists():
        return None
    meta = read_header(path).metadata  # WeightsError when the header is damaged
    if meta.get("format") != FORMAT or meta != want:
        return None
    return _load(path, w_dim)


def _load(path: Path, w_dim: int) -> Directions:
    """The directions in `path`, checked (WeightsError naming the file: unreadable, NaN/Inf, wrong size)."""
    tensors = read_tensors(path)
    bad = nonfinite_tensors(tensors)
    if bad:
        raise WeightsError(f"tensor {bad[0]!r} holds NaN or infinite values", path)
    try:
        directions = Directions.from_tensors(tensors)
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"not a valid directions file: {exc}", path) from None
    if directions.vectors.shape[1] != w_dim:
        raise WeightsError(f"directions have {directions.vectors.shape[1]} dimensions but w has {w_dim}", path)
    return directions


def _write(path: Path, directions: Directions, meta: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        write_tensors(directions.to_tensors(), tmp, metadata=meta)


def _ours_or_absent(path: Path) -> bool:
    """Whether writing `path` replaces nothing but an earlier cache of ours (or nothing at all)."""
    if not path.exists():
        return True
    try:
        return read_header(path).metadata.get("format") == FORMAT
    except WeightsError:
        return True  # damaged: nobody can read it, replacing it loses nothing


def cached_directions(folder: str | Path, sha256: str, G: Any, count: int = DEFAULT_COUNT, seed: int = 0,
                      k: int = DEFAULT_K, c: torch.Tensor | None = None, device: torch.device | str | None = None,
                      batch: int = DEFAULT_BATCH, progress: Progress | None = None) -> Directions:
    """GANSpace directions of `G` (whose weights hash to `sha256`) for the package in `folder`: from its cache when
    one matches, else computed (compute_directions, reporting `progress(done, count)`) and cached. Never raises for
    a cache problem: an unwritable folder caches in the user cache folder, a damaged cache is recomputed with a
    warning naming the file, and if no folder at all can be written the directions are returned uncached (warned)."""
    want = cache_metadata(sha256, count, seed, k)
    w_dim = int(G.w_dim)
    beside = Path(folder) / DIRECTIONS_NAME
    fallback = user_cache_path(sha256, count, seed, k)
    for path in (beside, fallback):
        try:
            found = _read(path, want, w_dim)
        except WeightsError as exc:
            log.warning("%s; the principal directions are computed again", exc)
            continue
        if found is not None:
            return found
    if not _ours_or_absent(beside):  # directions the package ships (made some other way): those are the model's
        try:
            return _load(beside, w_dim)
        except WeightsError as exc:
            log.warning("%s; GANSpace directions are used instead", exc)
    directions = compute_directions(G, count=count, seed=seed, c=c, device=device, k=k, batch=batch,
                                    progress=progress)
    targets = [beside] if _ours_or_absent(beside) else []
    for path in (*targets, fallback):
        try:
            if path == fallback:
                path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, directions, want)
            return directions
        except (ExportError, OSError) as exc:
            log.info("%s: cannot cache the principal directions here (%s)", path, exc)
    log.warning("%s: the principal directions could not be cached anywhere; they will be computed again next time",
                fallback)
    return directions
