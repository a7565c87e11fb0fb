"""Textual-inversion embeddings, used the way AUTOMATIC1111 uses them: a file `name.safetensors` in an embeddings
folder is called by writing `name` in the prompt; its n vectors replace the tokens of that name.

Where they are looked for, first found wins: the folders listed as `embeddings_folders` in settings.toml, then an
`embeddings` folder beside the model (beside its single file, or inside and beside its pipeline folder).

Layouts read: A1111's (`emb_params` (n, D) in .safetensors; `string_to_param` {"*": (n, D)} in .pt), diffusers'
(one tensor under the token, (D,) or (n, D)), and SDXL's (`clip_l` / `clip_g`: the one as wide as this model's text
encoder). Files are untrusted: size-capped, .safetensors read with its header checked, .pt / .bin only through the
weights-only reader (studio.io.checkpoints; a pickle that needs code is refused unrun), shapes and values checked,
and every refusal names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from studio.errors import WeightsError

SUFFIXES = (".safetensors", ".pt", ".bin")
MAX_FILE_BYTES = 64 << 20  # 75 vectors × 1280 × 4 bytes is 0.4 MB; anything near this is not an embedding
MAX_VECTORS = 75  # one chunk
FOLDER_NAME = "embeddings"
MAX_SCANNED = 20_000  # files looked at per scan: a folder listed by mistake (a home folder) does not stall renders


@dataclass(frozen=True)
class Embedding:
    """One embedding file found by name; its vectors are read when a prompt first uses it."""

    name: str
    path: Path
    ids: tuple[int, ...]  # the name's tokens
    vectors: int = 0  # filled in when read (0 = not read yet)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read the embedding: {exc.strerror or exc}", path) from None
    if size > MAX_FILE_BYTES:
        raise WeightsError(f"{size / 2**20:.0f} MB is too big for a textual-inversion embedding (at most "
                           f"{MAX_FILE_BYTES >> 20} MB): is it a LoRA or a checkpoint?", path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        from studio.io.safetensors import read_header

        read_header(path)  # the header checked against the file before torch reads it
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error type
            raise WeightsError(f"not a readable safetensors file ({exc})", path) from None
    from studio.io.checkpoints import read_checkpoint

    return read_checkpoint(path)  # weights-only: a pickle is scanned, never run


def read_vectors(path: Path, width: int) -> torch.Tensor:
    """The (n, width) float32 vectors of an embedding file; WeightsError naming the file when it is none."""
    tensors = _tensors(Path(path))
    if "emb_params" in tensors:
        found = {"emb_params": tensors["emb_params"]}
    elif any(k.startswith("string_to_param.") for k in tensors):
        found = {k: v for k, v in tensors.items() if k.startswith("string_to_param.")}
    elif "clip_l" in tensors or "clip_g" in tensors:
        found = {k: v for k, v in tensors.items() if k in ("clip_l", "clip_g") and v.shape[-1] == width}
        if not found:
            widths = ", ".join(f"{k} {tensors[k].shape[-1]}" for k in ("clip_l", "clip_g") if k in tensors)
            raise WeightsError(f"an SDXL embedding with no part for this text encoder (width {width}; it has "
                               f"{widths})", path)
    else:
        found = tensors
    if len(found) != 1:
        raise WeightsError(f"not a textual-inversion embedding: expected one tensor (emb_params, string_to_param or "
                           f"a single token's), found {len(found)} ({', '.join(list(found)[:4])})", path)
    key, vec = next(iter(found.items()))
    if not vec.is_floating_point():
        raise WeightsError(f"{key}: expected floating-point vectors, found {vec.dtype}", path)
    if vec.ndim == 1:
        vec = vec[None]
    if vec.ndim != 2 or not 1 <= vec.shape[0] <= MAX_VECTORS:
        raise WeightsError(f"{key}: expected (vectors, width) with 1 to {MAX_VECTORS} vectors, found shape "
                           f"{list(vec.shape)}", path)
    if vec.shape[1] != width:
        raise WeightsError(f"{key}: made for a text encoder of width {vec.shape[1]}; this model's is {width} (an "
                           f"embedding for another Stable Diffusion version?)", path)
    vec = vec.float()
    if not torch.isfinite(vec).all():
        raise WeightsError(f"{key}: holds values that are not finite numbers", path)
    return vec.contiguous()


def embedding_files(folders: Iterable[Path]) -> dict[str, Path]:
    """Embedding files by name (file stem) in `folders` and their subfolders, the first of a name kept."""
    found: dict[str, Path] = {}
    scanned = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            scanned += len(files)
            if scanned > MAX_SCANNED:
                return found
            for name in sorted(files):
                path = Path(root) / name
                if path.suffix.lower() in SUFFIXES and path.stem and not name.startswith("."):
                    found.setdefault(path.stem, path)
    return found


def model_folders(source_path: Path, is_folder: bool) -> list[Path]:
    """The `embeddings` folders that go with a model: inside and beside a pipeline folder, beside a single file."""
    if is_folder:
        return [source_path / FOLDER_NAME, source_path.parent / FOLDER_NAME]
    return [source_path.parent / FOLDER_NAME]


def settings_folders() -> list[Path]:
    """`embeddings_folders` from settings.toml (none when the file is missing or unreadable: the window and the
    CLI report a broken settings file when they start)."""
    from studio.errors import StudioError
    from studio.settings import load_settings

    try:
        return list(load_settings().embeddings_folders)
    except StudioError:
        return []


class EmbeddingBook:
    """The embeddings a model can use, looked up by token ids while a prompt is chunked; vectors read once each."""

    def __init__(self, folders: Sequence[Path], tokenizer, width: int):
        self.folders = list(folders)
        self.tokenizer, self.width = tokenizer, width
        self._by_first: dict[int, list[Embedding]] = {}
        self._vectors: dict[tuple[Path, int, int], torch.Tensor] = {}
        self._hashes: dict[tuple[Path, int, int], str] = {}
        self.used: dict[str, Embedding] = {}
        self.signature: tuple = ()

    def refresh(self) -> tuple:
        """Rescan the folders (files added or removed since); returns what was found, for cache keys."""
        files = embedding_files(self.folders)
        signature = tuple(sorted((name, str(path)) for name, path in files.items()))
        if signature != self.signature:
            self._by_first = {}
            for name, path in files.items():
                ids = tuple(self.tokenizer(name, truncation=False, add_special_tokens=False)["input_ids"])
                if ids:
                    self._by_first.setdefault(ids[0], []).append(Embedding(name, path, ids))
            for group in self._by_first.values():
                group.sort(key=lambda e: -len(e.ids))  # the longest name wins, as in A1111
            self.signature = signature
        return signature

    def find(self, tokens: Sequence[int], position: int) -> tuple[Embedding, int] | None:
        for emb in self._by_first.get(tokens[position], ()):
            if tuple(tokens[position:position + len(emb.ids)]) == emb.ids:
                vec = self.vectors(emb)
                full = Embedding(emb.name, emb.path, emb.ids, len(vec))
                self.used[emb.name] = full
                return full, len(emb.ids)
        return None

    def vectors(self, emb) -> torch.Tensor:
        key = _stamp(emb.path)
        if key not in self._vectors:
            self._vectors[key] = read_vectors(emb.path, self.width)
        return self._vectors[key]

    def short_hash(self, emb) -> str:
        """The first 12 hex digits of the file's SHA-256: what A1111 writes as `TI hashes: name: hash`."""
        from studio.io.weights import sha256_file

        key = _stamp(emb.path)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(emb.path)[:12]
        return self._hashes[key]


def _stamp(path: Path) -> tuple[Path, int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise WeightsError(f"cannot read the embedding: {exc.strerror or exc}", path) from None
    return path, stat.st_mtime_ns, stat.st_size
