"""Writing outputs: images and sounds with the request in their metadata, always atomically."""

from pathlib import Path

from studio.export.atomic import atomic_path, check_writable_folder
from studio.export.audio import AUDIO_FORMATS, AUDIO_SUFFIXES, read_audio_request, read_sound, save_audio
from studio.export.image import parameters_text, read_glyph_strip, read_request, save_image
from studio.request import RenderRequest


def read_any_request(path: str | Path) -> RenderRequest:
    """The RenderRequest stored in an image or a sound this app exported (by the file's suffix)."""
    if Path(path).suffix.lower() in AUDIO_SUFFIXES:
        return read_audio_request(path)
    return read_request(path)


__all__ = ["AUDIO_FORMATS", "AUDIO_SUFFIXES", "atomic_path", "check_writable_folder", "parameters_text",
           "read_any_request", "read_audio_request", "read_glyph_strip", "read_request", "read_sound", "save_audio",
           "save_image"]
