"""App settings shared by the CLI and the GUI: `settings.toml` in the user data folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import StudioError
from studio.manifest import TomlReader, read_toml
from studio.paths import user_data_dir

SETTINGS_NAME = "settings.toml"


@dataclass
class Settings:
    model_folders: list[Path] = field(default_factory=list)
    device: str = "auto"


def settings_path() -> Path:
    return user_data_dir() / SETTINGS_NAME


def load_settings(path: Path | None = None) -> Settings:
    """Read settings; a missing file gives defaults, a broken one an error naming the file and field."""
    path = path or settings_path()
    if not path.exists():
        return Settings()
    data = read_toml(path, StudioError)
    r = TomlReader(path, StudioError)
    folders = r.get(data, "model_folders", list, required=False, default=[])
    if not all(isinstance(f, str) for f in folders):
        raise r.fail("model_folders", "must be an array of folder paths")
    device = r.get(data, "device", str, required=False, default="auto")
    return Settings([Path(f).expanduser() for f in folders], device)


def load_or_reset_settings(path: Path | None = None) -> tuple[Settings, str]:
    """Settings for starting the app, never an error: a broken settings file is set aside (kept as
    `settings.toml.broken`, for the user to look at) and the defaults are used; the second value says so ("" when
    all was well)."""
    path = path or settings_path()
    try:
        return load_settings(path), ""
    except StudioError as exc:
        kept = path.with_name(path.name + ".broken")
        try:
            path.replace(kept)
            where = f"it was kept as {kept.name} and"
        except OSError as move:
            where = f"it could not be set aside ({move.strerror or move}), and"
        return Settings(), f"{exc}. The settings were reset: {where} the defaults are used."
