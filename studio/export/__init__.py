"""Writing outputs: images and sounds with the request in their metadata, always atomically.

`save_output` is the one place that picks the writer of a finished render by what it is (an image: PNG, JPEG, WebP;
a sound: WAV, FLAC, OGG, MP3); the CLI, the window and the engine's work functions all write through it.
"""

from pathlib import Path
from typing import Any, Mapping

from studio.errors import ExportError
from studio.io.atomic import atomic_path, check_writable_folder
from studio.export.audio import AUDIO_FORMATS, AUDIO_SUFFIXES, read_audio_request, read_sound, save_audio
from studio.export.scale import OutputSize
from studio.export.image import FORMATS, parameters_text, read_glyph_strip, read_request, save_image, stored_request
from studio.io.metadata import stored_audio_request_text, stored_image_request_text
from studio.request import RenderRequest
from studio.steps import Output

OUTPUT_FORMATS = {"image": FORMATS, "audio": AUDIO_FORMATS}  # what each kind of output is written as, by suffix


def formats_for(kind: str) -> dict[str, str]:
    """The file formats (suffix → format) an output of `kind` ("image", "audio") can be written as; {} for none."""
    return OUTPUT_FORMATS.get(kind, {})


def save_output(path: str | Path, output: Output, request: RenderRequest, model_name: str = "",
                model_sha256: str = "", subtype: str | None = None, sample_rate: int | None = None,
                notes: list[str] | None = None, output_size: OutputSize | None = None,
                used: Mapping[str, Any] | None = None) -> Path:
    """Write a finished render with `request` inside: an image by `save_image`, a sound by `save_audio` (at the rate
    the output says, else `sample_rate`; `subtype` is WAV's or FLAC's sample format). ExportError when the output
    cannot be written under this name (a sound as .png, say). `notes` gets a line for metadata that did not fit;
    `output_size` scales an image's pixels (the request stays the model's); `used`: every param's value as the render
    used it (the model's `params(request)`), so that the `parameters` text says the steps, sampler… really used."""
    path = Path(path)
    if path.suffix.lower() not in formats_for(output.kind):
        suffix = path.suffix or "a name without a suffix"
        raise ExportError(f"this model made {output.kind}, which cannot be written as {suffix}", path)
    if output.kind == "audio":
        rate = output.info.get("sample_rate", sample_rate)
        if rate is None:
            raise ExportError("the sound carries no sample rate", path)
        return save_audio(path, output.data, int(rate), request, model_name=model_name, model_sha256=model_sha256,
                          subtype=subtype, notes=notes, used=used)
    return save_image(path, output.data, request, model_name=model_name, model_sha256=model_sha256, notes=notes,
                      output_size=output_size, used=used, info=output.info)


def _is_sound(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def stored_any_request_text(path: str | Path) -> str | None:
    """The request JSON an image or a sound carries (by the file's suffix), or None; reads metadata only."""
    return stored_audio_request_text(path) if _is_sound(path) else stored_image_request_text(path)


def read_any_request(path: str | Path) -> RenderRequest:
    """The RenderRequest stored in an image or a sound this app exported (by the file's suffix)."""
    return stored_request(stored_any_request_text(path), path, "sound" if _is_sound(path) else "image")


__all__ = ["AUDIO_FORMATS", "AUDIO_SUFFIXES", "FORMATS", "OUTPUT_FORMATS", "atomic_path", "check_writable_folder",
           "formats_for", "OutputSize", "parameters_text", "read_any_request", "read_audio_request", "read_glyph_strip",
           "read_request", "read_sound", "save_audio", "save_image", "save_output", "stored_any_request_text"]
