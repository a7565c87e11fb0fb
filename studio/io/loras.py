"""LoRA files by name and by hash, with no torch and no Qt: where a model's LoRAs are (`lora_folders`), which ones
are there (`list_loras`, `LoraLibrary`), the file of a name (`find_lora`), AUTOMATIC1111's hash of one (`lora_hash`,
kept per file stat), and the `loras` list param's text ("name:0.8, other:0.5": `parse_lora_list` /
`format_lora_list`).

The Stable Diffusion family reads and applies the files (studio.families.stable_diffusion.lora, which imports these
names from here); the window lists them in the conditions panel and matches the LoRAs of a picture from another tool
to the files here (`LoraLibrary.find`). Everything here works from a manifest, so the GUI thread, which has no
loaded model, can use it; only `lora_hash` reads file data (sha256 of up to a few hundred MB per file), and the
window calls it off the GUI thread (`LoraLibrary.unhashed` says which files a lookup would read).

A name is a file's stem, never a path: `name.safetensors` (or a pickled `name.pt` / `.bin` / `.ckpt` / `.pth`) in
one of the folders or their subfolders; the first match wins, safetensors before pickles, an exact name before one
that differs in case only.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import RequestError, StudioError, WeightsError
from studio.limits import MAX_LORA_FOLDER_FILES, MAX_LORA_WEIGHT, quote
from studio.manifest import Manifest

LORA_PARAM = "loras"  # a TEXT param of this name is a LoRA list: the conditions panel shows it as rows of LoRAs
SAFE_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".bin", ".ckpt", ".pth")
SHORT_HASH = 12  # characters of the hash A1111 writes in "Lora hashes"
MAX_HASHES = 4096  # hashes kept in memory (per path, size, times and inode)


# --- names and weights ------------------------------------------------------------------------------------------


def _weight(text: str, where: str, field_name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"{where}: the weight must be a number, got {quote(text)}", field=field_name) from None
    if not math.isfinite(value) or abs(value) > MAX_LORA_WEIGHT:
        raise RequestError(f"{where}: the weight must be between −{MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}, "
                           f"got {quote(text)}", field=field_name)
    return value


def check_name(name: str, field_name: str = "params.loras") -> str:
    """A LoRA name as typed: a file name without its suffix, never a path (a prompt is untrusted text)."""
    name = name.strip()
    if not name:
        raise RequestError("a LoRA needs a name (the file name without .safetensors)", field=field_name)
    if len(name) > 255 or any(c in name for c in "/\\\0") or name.startswith("."):
        raise RequestError(f"LoRA name {quote(name)} is not a file name (no folders, no leading dot)",
                           field=field_name)
    if any(c in name for c in ":,<>"):  # the separators of the list, the tags and A1111's "Lora hashes"
        raise RequestError(f"LoRA name {quote(name)} holds one of : , < >; rename the file without them",
                           field=field_name)
    return name


def usable_name(name: str) -> bool:
    """Whether `name` (a file's stem) can be asked for by name (`check_name` takes it as it is)."""
    try:
        return check_name(name) == name
    except RequestError:
        return False


def parse_lora_list(text: str) -> list[tuple[str, float]]:
    """The `loras` param: "name:0.8, other:0.5" (a missing weight is 1) → [(name, weight)]."""
    out: list[tuple[str, float]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, weight = item.rpartition(":")
        if not sep:
            name, weight = item, "1"
        out.append((check_name(name), _weight(weight.strip(), f"LoRA {name.strip()!r}", "params.loras")))
    return out


def format_lora_list(loras: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name}:{weight:g}" for name, weight in loras)


# --- folders and files ------------------------------------------------------------------------------------------


def lora_folders(model: Any) -> list[Path]:
    """Where LoRAs are looked for, in order: `loras/` beside the model's file or pipeline folder, `loras/` in its
    manifest's folder, then settings.toml's `lora_folders` (an unreadable settings file adds none). `model` is a
    Manifest, or anything that has one as `.manifest` (a loaded model, a library entry)."""
    from studio.settings import load_settings

    manifest: Manifest = model if isinstance(model, Manifest) else model.manifest
    out: list[Path] = []
    source = manifest.architecture.get("source") if isinstance(manifest.architecture, dict) else None
    if isinstance(source, str) and source:
        path = Path(source).expanduser()
        path = path if path.is_absolute() else manifest.folder / path
        out.append(path.parent / "loras")
    out.append(manifest.folder / "loras")
    try:
        out += load_settings().lora_folders
    except StudioError:  # a broken settings file is reported (and set aside) when the app starts, not per render
        pass
    seen: set[Path] = set()
    unique = []
    for folder in out:
        key = folder.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def _candidates(folders: Iterable[Path]) -> Iterable[Path]:
    """LoRA-like files under `folders` (subfolders included, links to folders not followed), at most
    MAX_LORA_FOLDER_FILES looked at in all."""
    looked = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                looked += 1
                if looked > MAX_LORA_FOLDER_FILES:
                    return
                if name.lower().endswith((SAFE_SUFFIX, *PICKLE_SUFFIXES)):
                    yield Path(root) / name


def _by_name(name: str, files: Sequence[Path]) -> Path | None:
    """The file of LoRA `name` among `files` (in search order): an exact stem before one equal but for case,
    safetensors before pickles."""
    for exact in (True, False):
        for suffixes in ((SAFE_SUFFIX,), PICKLE_SUFFIXES):
            for path in files:
                if path.name.lower().endswith(suffixes) and (path.stem == name if exact
                                                              else path.stem.lower() == name.lower()):
                    return path
    return None


def find_lora(name: str, folders: list[Path], digest: str = "") -> Path:
    """The file of LoRA `name` (its stem, compared case-insensitively after an exact match), safetensors first; else
    the file whose A1111 hash starts with `digest`; RequestError naming the folders otherwise."""
    files = list(_candidates(folders))
    found = _by_name(name, files)
    if found is not None:
        return found
    if digest:
        for path in files:
            try:
                if path.name.lower().endswith(SAFE_SUFFIX) and lora_hash(path).startswith(digest):
                    return path
            except (OSError, StudioError):
                continue  # an unreadable file in the folder is not this LoRA
    where = ", ".join(str(f) for f in folders) or "(no folders)"
    hashed = f" nor with hash {digest}" if digest else ""
    raise RequestError(f"no LoRA named {name!r}{hashed} in {where}: put {name}.safetensors in one of them, or add "
                       "its folder to lora_folders in settings.toml", field="params.loras")


# --- hashes -----------------------------------------------------------------------------------------------------

_HashKey = tuple[str, int, int, int, int]
_hashes: dict[_HashKey, str] = {}
_hashes_lock = threading.Lock()  # the window hashes on a worker thread while the GUI thread asks what is known


def _hash_key(path: Path) -> _HashKey:
    stat = path.stat()
    return (str(path.absolute()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def known_hash(path: Path) -> str | None:
    """`path`'s A1111 hash when it is known for the file as it is now (no file data read), else None."""
    try:
        key = _hash_key(path)
    except OSError:
        return None
    with _hashes_lock:
        return _hashes.get(key)


def lora_hash(path: Path) -> str:
    """AUTOMATIC1111's (and kohya's) hash of a LoRA: sha256 of a safetensors file's tensor data (after the header),
    of the whole file otherwise. Kept per (path, size, modification time)."""
    from studio.files import open_regular

    key = _hash_key(path)
    with _hashes_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with open_regular(path, WeightsError, what="LoRA file") as f:
        if path.name.lower().endswith(SAFE_SUFFIX):
            size = int.from_bytes(f.read(8), "little")
            f.seek(8 + size)
        while block := f.read(1 << 20):
            digest.update(block)
    value = digest.hexdigest()
    with _hashes_lock:
        if len(_hashes) >= MAX_HASHES:
            _hashes.clear()
        _hashes[key] = value
    return value


# --- what a model has ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA a model can use: its name (the file's stem), its file, and the folder it was found under."""

    name: str
    path: Path
    folder: Path


class LoraLibrary:
    """The LoRAs under `folders` (one look at the folders, made when this is built: build a new one to rescan).

    `entries` are the usable names, each once (the file `find_lora` would take for it), sorted for showing;
    `find(name, short hash)` is what studio.io.foreign's `map_settings` asks: the local name of that LoRA — a
    file already known to have that hash, else the file of that name, else (`hash_files` True) the first
    safetensors file whose hash, read now, starts with it. `unhashed(short hash)` lists the files such a lookup
    would have to read; the window reads them on a worker thread (`hash_files`) before it asks."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = list(folders)
        self.files = list(_candidates(self.folders))
        # _by_name's order as two look-ups: exact stems, then lower-cased ones, each safetensors before pickles
        self._exact: dict[str, Path] = {}
        self._folded: dict[str, Path] = {}
        for safe in (True, False):
            for path in self.files:
                if path.name.lower().endswith(SAFE_SUFFIX) is safe:
                    self._exact.setdefault(path.stem, path)
                    self._folded.setdefault(path.stem.lower(), path)
        self.entries = sorted((LoraEntry(name, path, self._folder_of(path)) for name, path in self._exact.items()
                               if usable_name(name)), key=lambda e: (e.name.lower(), e.name))

    def _folder_of(self, path: Path) -> Path:
        for folder in self.folders:
            try:
                path.relative_to(folder)
                return folder
            except ValueError:
                continue
        return path.parent

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def entry(self, name: str) -> LoraEntry | None:
        """The LoRA a request naming `name` gets (exact name first, then one differing in case only), or None."""
        path = self._exact.get(name) or self._folded.get(name.lower())
        if path is None or not usable_name(path.stem):
            return None
        return LoraEntry(path.stem, path, self._folder_of(path))

    def _safetensors(self) -> list[Path]:
        return [p for p in self.files if p.name.lower().endswith(SAFE_SUFFIX) and usable_name(p.stem)]

    def _known(self, short: str) -> str | None:
        """The name of the first file already known to have a hash starting with `short`."""
        for path in self._safetensors():
            if (known_hash(path) or "").startswith(short):
                return path.stem
        return None

    def unhashed(self, short: str | None) -> list[Path]:
        """The safetensors files whose hash is not known yet, when none that is known starts with `short` (the files
        a lookup by that hash would read); [] when `short` is empty or already matched."""
        short = (short or "").strip().lower()
        if not short or self._known(short) is not None:
            return []
        return [p for p in self._safetensors() if known_hash(p) is None]

    def find(self, name: str, short: str | None = None, hash_files: bool = False) -> str | None:
        """The local name of LoRA `name` whose A1111 short hash is `short` (None: not known), or None when there is
        none here. A file already known to have that hash wins (it is that LoRA, whatever its name, as A1111
        matches a pasted prompt; the file of that name first when it is one of them); then the file of that name
        (its hash is not read: asking by name is cheap); then, with `hash_files`, the first safetensors file whose
        hash starts with `short` (reads files: not on the GUI thread). Unreadable files are not that LoRA."""
        short = (short or "").strip().lower()
        entry = self.entry(name)
        if short:
            if entry is not None and (known_hash(entry.path) or "").startswith(short):
                return entry.name
            known = self._known(short)
            if known is not None:
                return known
        if entry is not None:
            return entry.name
        if short and hash_files:
            return self.hash_until_found([short]).get(short)
        return None

    def hash_until_found(self, shorts: Iterable[str], cancelled: Callable[[], bool] | None = None) -> dict[str, str]:
        """Read the hashes needed to match `shorts` (A1111 short hashes), stopping for each at its first match:
        {short: local name} of those found. Unreadable files are skipped. `cancelled()` (optional) is asked
        between files. This reads file data: run it on a worker thread."""
        found: dict[str, str] = {}
        for short in (s.strip().lower() for s in shorts if s and s.strip()):
            if short in found:
                continue
            known = self._known(short)
            if known is not None:
                found[short] = known
                continue
            for path in self.unhashed(short):
                if cancelled is not None and cancelled():
                    return found
                try:
                    if lora_hash(path).startswith(short):
                        found[short] = path.stem
                        break
                except (OSError, StudioError):
                    continue
        return found


def list_loras(model: Any) -> LoraLibrary:
    """The LoRAs a model (a Manifest, or anything with `.manifest`) can use: those under its `lora_folders`."""
    return LoraLibrary(lora_folders(model))
