"""Where things live: shipped models next to the package (or in a frozen bundle), user data via platformdirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "latent-studio"


def shipped_models_dir() -> Path:
    """The `models/` folder the app ships: beside the package in a checkout, inside the bundle when frozen."""
    env = os.environ.get("LATENT_STUDIO_SHIPPED_MODELS")
    if env:
        return Path(env)
    if getattr(sys, "frozen", False):
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "models"
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "models", here / "models"):
        if candidate.is_dir():
            return candidate
    return here.parent / "models"


def user_data_dir() -> Path:
    return Path(os.environ.get("LATENT_STUDIO_DATA") or platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_models_dir() -> Path:
    return user_data_dir() / "models"


def user_cache_dir() -> Path:
    return Path(os.environ.get("LATENT_STUDIO_CACHE") or platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_log_dir() -> Path:
    """Where the log file goes: the platform's log folder, or `logs/` in the data folder when that is overridden."""
    if os.environ.get("LATENT_STUDIO_DATA"):
        return Path(os.environ["LATENT_STUDIO_DATA"]) / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def shipped_resources_dir() -> Path:
    """The `resources/` folder the app ships (examples): beside the package in a checkout, inside the bundle when
    frozen."""
    if getattr(sys, "frozen", False):
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"
