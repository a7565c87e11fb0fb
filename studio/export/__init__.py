"""Writing outputs: images with metadata (audio and video follow), always atomically."""

from studio.export.atomic import atomic_path, check_writable_folder
from studio.export.image import parameters_text, read_glyph_strip, read_request, save_image

__all__ = ["atomic_path", "check_writable_folder", "parameters_text", "read_glyph_strip", "read_request", "save_image"]
