"""App settings shared by the CLI and the GUI: `settings.toml` in the user data folder.

It is the one store of the model folders a user added (`model_folders`): the window saves a folder there when it is
opened, so the CLI sees it too (the window's own `window.ini` keeps only its layout and recent files).

The file is read through studio.files: a settings.toml that is a FIFO, a device, a folder or a symbolic link loop, or
one too big or too deeply nested, is refused with an error naming it (never waited on, never read whole), and
`load_or_reset_settings` turns that into a warning and the defaults: settings are never silently ignored.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import tomli_w

from studio.errors import StudioError
from studio.files import exists_at, is_regular, read_toml_text
from studio.limits import MAX_MANIFEST_BYTES
from studio.manifest import TomlReader
from studio.paths import user_data_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    # tomli is typed but installed only on 3.10, and mypy (python_version 3.10) may run from a newer Python
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

SETTINGS_NAME = "settings.toml"


@dataclass
class Settings:
    model_folders: list[Path] = field(default_factory=list)
    device: str = "auto"
    embeddings_folders: list[Path] = field(default_factory=list)  # Stable Diffusion textual inversions
    lora_folders: list[Path] = field(default_factory=list)  # where Stable Diffusion LoRAs are found by name


def settings_path() -> Path:
    return user_data_dir() / SETTINGS_NAME


def load_settings(path: Path | None = None) -> Settings:
    """Read settings; a missing file gives defaults, a broken one an error naming the file and field."""
    path = path or settings_path()
    if not exists_at(path):
        return Settings()
    data = _read(path)
    r = TomlReader(path, StudioError)
    folders = r.get(data, "model_folders", list, required=False, default=[])
    if not all(isinstance(f, str) for f in folders):
        raise r.fail("model_folders", "must be an array of folder paths")
    device = r.get(data, "device", str, required=False, default="auto")
    embeddings = r.get(data, "embeddings_folders", list, required=False, default=[])
    if not all(isinstance(f, str) for f in embeddings):
        raise r.fail("embeddings_folders", "must be an array of folder paths")
    loras = r.get(data, "lora_folders", list, required=False, default=[])
    if not all(isinstance(f, str) for f in loras):
        raise r.fail("lora_folders", "must be an array of folder paths")
    return Settings([Path(f).expanduser() for f in folders], device, [Path(f).expanduser() for f in embeddings],
                    [Path(f).expanduser() for f in loras])


def remember_model_folders(folders: Iterable[str | Path], path: Path | None = None) -> list[Path]:
    """Add `folders` (absolute; those already listed are kept once) to `model_folders` in the settings file, keeping
    every other setting; the file is written atomically (created when missing). Returns the folders now listed.
    A settings file that cannot be read raises its StudioError and is left as it is."""
    path = path or settings_path()
    data = _read(path) if exists_at(path) else {}
    listed = load_settings(path).model_folders if exists_at(path) else []
    known = {_key(f) for f in listed}
    added = False
    for folder in folders:
        folder = Path(folder).expanduser().absolute()
        if _key(folder) not in known:
            known.add(_key(folder))
            listed.append(folder)
            added = True
    if added:
        data["model_folders"] = [str(f) for f in listed]
        _write_atomically(path, tomli_w.dumps(data))
    return listed



def _read(path: Path) -> dict:
    """The settings file's table: a regular file of at most MAX_MANIFEST_BYTES, nested at most MAX_TOML_DEPTH deep
    (studio.files.read_toml_text), valid TOML; StudioError naming the file otherwise."""
    text = read_toml_text(path, StudioError, max_bytes=MAX_MANIFEST_BYTES, what="settings file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudioError(f"not valid TOML: {exc}", path) from None
    except RecursionError:
        raise StudioError("not usable TOML: nested too deeply", path) from None


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place (a crash leaves the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StudioError(f"cannot write the settings: {exc.strerror or exc}", path) from None


def _key(folder: Path) -> Path:
    """A folder as compared (the same folder by another path is the same)."""
    try:
        return folder.resolve()
    except OSError:
        return folder.absolute()


def load_or_reset_settings(path: Path | None = None) -> tuple[Settings, str]:
    """Settings for starting the app, never an error: a broken settings file is set aside (kept as
    `settings.toml.broken`, for the user to look at) and the defaults are used; the second value says so ("" when
    all was well)."""
    path = path or settings_path()
    try:
        return load_settings(path), ""
    except StudioError as exc:
        if not is_regular(path):  # a FIFO, a device, a folder, a link loop: not a file of ours to move
            return Settings(), f"{exc}. The defaults are used; the settings file was left as it is."
        kept = path.with_name(path.name + ".broken")
        try:
            path.replace(kept)
            where = f"it was kept as {kept.name} and"
        except OSError as move:
            where = f"it could not be set aside ({move.strerror or move}), and"
        return Settings(), f"{exc}. The settings were reset: {where} the defaults are used."
