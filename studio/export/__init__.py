"""Writing outputs: images and sounds with the request in their metadata, always atomically."""

from pathlib import Path

from studio.export.atomic import atomic_path, check_writable_folder
from studio.export.audio import (AUDIO_FORMATS, AUDIO_SUFFIXES, read_audio_request, read_sound, save_audio,
                                 stored_audio_request_text)
from studio.export.image import (parameters_text, read_glyph_strip, read_request, save_image, stored_request,
                                 stored_request_text)
from studio.request import RenderRequest


def _is_sound(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def stored_any_request_text(path: str | Path) -> str | None:
    """The request JSON an image or a sound carries (by the file's suffix), or None; reads metadata only."""
    return stored_audio_request_text(path) if _is_sound(path) else stored_request_text(path)


def read_any_request(path: str | Path) -> RenderRequest:
    """The RenderRequest stored in an image or a sound this app exported (by the file's suffix)."""
    return stored_request(stored_any_request_text(path), path, "sound" if _is_sound(path) else "image")


__all__ = ["AUDIO_FORMATS", "AUDIO_SUFFIXES", "atomic_path", "check_writable_folder", "parameters_text",
           "read_any_request", "read_audio_request", "read_glyph_strip", "read_request", "read_sound", "save_audio", "save_image",
           "stored_any_request_text"]
