"""Hostile pictures, sounds and metadata (issue 16, points 3 and 4): decompression bombs, huge or deeply nested stored
text, FIFOs and devices. Every file is built here; every case runs under a timeout (a hang fails it) and must end in
one short line naming the file, never in "unexpected error" or a traceback."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from studio.errors import RequestError, StudioError
from studio.export import read_any_request, read_glyph_strip, read_sound, save_image
from studio.export.audio import check_sound
from studio.export.image import read_picture
from studio.io.images import MAX_TEXT_CHUNK_BYTES, decode_init_image, open_picture
from studio.io.metadata import (image_save_options, stored_audio_request_text, stored_image_request_text,
                                tag_sound)
from studio.limits import MAX_IMAGE_PIXELS, MAX_JSON_DEPTH, MAX_METADATA_TEXT, QUOTE_CHARS
from studio.request import RenderRequest

TIMEOUT = 120  # s: only a hang guard (a case normally ends in well under a second)
SHORT = 2 * QUOTE_CHARS + 300  # the longest message a refusal may give: the path, the field and ~200 quoted chars
DEEP = "[" * 100_000 + "]" * 100_000


def refusal(call: Callable[[], object], error: type[StudioError] = RequestError) -> StudioError:
    """The StudioError `call` ends in, run in a thread under TIMEOUT (a hang fails the test)."""
    result: dict[str, BaseException | object] = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: B036 - reported below, whatever it is
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    assert not worker.is_alive(), "the call hung"
    assert "error" in result, f"no error; returned {str(result.get('value'))[:200]}"
    exc = result["error"]
    assert isinstance(exc, error), f"{type(exc).__name__}: {str(exc)[:300]}"
    assert "\n" not in str(exc) and len(str(exc)) <= SHORT, str(exc)[:SHORT]
    return exc


def names(exc: StudioError, path: Path) -> bool:
    return exc.path == str(path) and str(path) in str(exc)


# --- building PNGs ---------------------------------------------------------------------------------------------------


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, *chunks: bytes) -> bytes:
    """A PNG that declares `width`×`height` (8-bit grey) with `chunks` before a token IDAT: it opens, and only
    decoding its pixels would find the data short."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunks)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def small_png(*chunks: bytes) -> bytes:
    """A real 8×8 PNG with `chunks` inserted before its image data."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    at = 8 + 25  # after the signature and IHDR
    return data[:at] + b"".join(chunks) + data[at:]


def text_chunk(key: str, value: str) -> bytes:
    return chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))


def zip_bomb(compressed_bytes: int) -> bytes:
    """A zlib stream of about `compressed_bytes` that unpacks to about 1000 times as much zeros (repeated full-flush
    blocks of 1 MiB of zeros; it is never unpacked to its end)."""
    packer = zlib.compressobj(9)
    zeros = b"\0" * (1 << 20)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + block * (compressed_bytes // len(block))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def request_json(**params) -> str:
    return RenderRequest(model_id="tiny", seed=1, params={"prompt": "p", **params}).to_json()


# --- decompression bombs: pixels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [100_000, 30_000, 8193])
def test_a_huge_picture_is_refused_from_its_header_by_every_reader(tmp_path, side):
    """100000² (Pillow's own bomb check), 30000² (an init image) and 8193² (just over our limit, where Pillow only
    warns): refused before any pixel is decoded, naming the file and the size."""
    path = write(tmp_path / f"big{side}.png", png_header(side, side, text_chunk("latent-studio", request_json())))
    shown = f"{side}×{side}"
    for reader in (lambda: read_picture(path, colour=True), lambda: read_picture(path, 512),
                   lambda: read_glyph_strip(path, "ab", 16), lambda: stored_image_request_text(path),
                   lambda: read_any_request(path)):
        exc = refusal(reader)
        assert names(exc, path) and shown in str(exc) and f"{MAX_IMAGE_PIXELS:,}" in str(exc), str(exc)


@pytest.mark.parametrize("side", [100_000, 30_000, 8193])
def test_a_huge_init_image_inside_a_request_is_refused_before_decoding(side):
    text = base64.b64encode(png_header(side, side)).decode("ascii")
    exc = refusal(lambda: decode_init_image(text, "RGB"))
    assert exc.field == "params.init_image" and f"{side}×{side}" in str(exc)


def test_a_picture_within_the_limit_still_reads(tmp_path):
    path = write(tmp_path / "ok.png", small_png(text_chunk("note", "hello")))
    assert read_picture(path).shape == (8, 8)
    assert decode_init_image(base64.b64encode(path.read_bytes()).decode()).shape == (8, 8)


@pytest.mark.parametrize("suffix", [".jpg", ".gif"])
def test_a_jpeg_or_gif_header_patched_to_65500_square_is_refused(tmp_path, suffix):
    """Pillow writes a real 4×4 file; its header is patched to declare 65500×65500."""
    path = tmp_path / f"x{suffix}"
    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    if suffix == ".gif":
        data[6:10] = struct.pack("<HH", 65500, 65500)  # the logical screen
        data[data.index(b"\x2c") + 5:data.index(b"\x2c") + 9] = struct.pack("<HH", 65500, 65500)  # the frame
    else:
        at = data.index(b"\xff\xc0") + 5  # SOF0: length, precision, then height and width
        data[at:at + 4] = struct.pack(">HH", 65500, 65500)
    write(path, bytes(data))
    exc = refusal(lambda: read_picture(path))
    assert names(exc, path) and ("65500×65500" in str(exc) or "pixels" in str(exc)), str(exc)


# --- decompression bombs: text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [b"iTXt", b"zTXt"])
def test_a_40_mb_compressed_text_chunk_is_metadata_text_too_large(tmp_path, kind):
    bomb = zip_bomb(40 << 20)
    assert len(bomb) > 40_000_000
    if kind == b"iTXt":
        payload = b"latent-studio\0" + b"\1\0" + b"\0" + b"\0" + bomb  # compressed, method 0, no language
    else:
        payload = b"latent-studio\0" + b"\0" + bomb
    path = write(tmp_path / "bomb.png", small_png(chunk(kind, payload)))
    for reader in (lambda: stored_image_request_text(path), lambda: read_any_request(path),
                   lambda: read_picture(path)):
        exc = refusal(reader)
        assert names(exc, path) and "metadata text too large" in str(exc), str(exc)


def test_text_chunks_over_the_memory_cap_are_refused(tmp_path):
    """A 50 MB request field in a plain tEXt chunk: refused by size, never echoed."""
    field = "a" * (50 << 20)
    path = write(tmp_path / "fifty.png", small_png(text_chunk("latent-studio", request_json(prompt=field))))
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and "metadata text too large" in str(exc) and "aaaaaaaaaa" not in str(exc)


def test_a_request_just_over_the_metadata_limit_is_refused_by_length(tmp_path):
    text = request_json(prompt="a" * MAX_METADATA_TEXT)
    assert len(text) < MAX_TEXT_CHUNK_BYTES  # Pillow reads the chunk; our check refuses it
    path = write(tmp_path / "long.png", small_png(text_chunk("latent-studio", text)))
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and exc.field == "latent-studio" and f"{MAX_METADATA_TEXT:,}" in str(exc)


def test_a_long_bad_value_is_quoted_short(tmp_path):
    text = json.dumps({"model_id": "m", "seed": "9" * 1_000_000, "params": {}})
    path = write(tmp_path / "seed.png", small_png(text_chunk("latent-studio", text)))
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and "9" * 1000 not in str(exc)


# --- deep JSON everywhere a request is stored -------------------------------------------------------------------------


def test_deep_json_in_a_png_is_refused_before_parsing(tmp_path):
    path = write(tmp_path / "deep.png", small_png(text_chunk("latent-studio", DEEP)))
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and "100000 levels deep" in str(exc) and str(MAX_JSON_DEPTH) in str(exc)


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_deep_json_in_a_jpeg_or_webp_is_refused_before_parsing(tmp_path, suffix, fmt):
    path = tmp_path / f"deep{suffix}"
    options, notes = image_save_options(fmt, DEEP, "p\nSteps: 1, Seed: 1, Model: m")
    assert notes == []
    Image.new("RGB", (8, 8)).save(path, format=fmt, **options)
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and "100000 levels deep" in str(exc)


def sound(path: Path, fmt: str) -> Path:
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt]
    wave = (0.3 * np.sin(np.arange(4410) / 5)).astype(np.float32)
    with sf.SoundFile(path, "w", 44100, 1, subtype, format=fmt) as out:
        if fmt in ("FLAC", "OGG"):
            out.comment = "p"
        out.write(wave)
    return path


@pytest.mark.parametrize("suffix, fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")])
def test_deep_json_in_a_sound_is_refused_before_parsing(tmp_path, suffix, fmt):
    path = sound(tmp_path / f"deep{suffix}", fmt)
    tag_sound(fmt, path, DEEP, "p", "t", path)
    for reader in (lambda: stored_audio_request_text(path), lambda: read_any_request(path)):
        exc = refusal(reader)
        assert names(exc, path) and "100000 levels deep" in str(exc)


def test_a_wav_claiming_a_50_mb_request_is_refused_before_reading_it(tmp_path):
    path = sound(tmp_path / "claim.wav", "WAV")
    with open(path, "ab") as f:
        f.write(b"lsrq" + struct.pack("<I", 50 << 20) + b"{}")  # the chunk claims 50 MB; the file has 2 bytes
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and "metadata text too large" in str(exc)


def test_an_id3_tag_claiming_256_mb_is_refused_before_reading_it(tmp_path):
    path = write(tmp_path / "claim.mp3", b"ID3\x04\0\0\x7f\x7f\x7f\x7f" + b"\0" * 100)
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path) and "metadata text too large" in str(exc)


# --- damaged metadata ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, data", [
    ("cut.jpg", b"\xff\xd8\xff\xe1\x00\x01"),
    ("garbage.jpg", b"\xff\xd8" + b"\x12" * 100),
    ("xmp-overflow.jpg", b"\xff\xd8\xff\xe1" + struct.pack(">H", 2 + 35 + 40) + b"http://ns.adobe.com/xmp/extension/\0"
     + b"A" * 32 + struct.pack(">II", 0xFFFFFFFF, 0)),
    ("riff.webp", b"RIFF\xff\xff\xff\xffWEBPXMP \xff\xff\xff\xff"),
    ("text.png", b"hello, not a picture"),
])
def test_damaged_picture_metadata_is_a_clear_error(tmp_path, name, data):
    path = write(tmp_path / name, data)
    exc = refusal(lambda: read_any_request(path))
    assert names(exc, path)


# --- only regular files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pipe.png", "pipe.jpg", "pipe.wav"])
def test_a_fifo_is_refused_without_blocking(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    readers = [lambda: read_any_request(path)]
    readers += [lambda: read_sound(path, None), lambda: check_sound(path)] if name.endswith(".wav") else [
        lambda: read_picture(path), lambda: read_glyph_strip(path, "a", 8)]
    for reader in readers:
        exc = refusal(reader)
        assert names(exc, path) and "FIFO" in str(exc)


@pytest.mark.parametrize("name", ["zero.png", "zero.flac"])
def test_a_link_to_a_device_is_refused(tmp_path, name):
    path = tmp_path / name
    path.symlink_to("/dev/zero")
    readers = [lambda: read_any_request(path)]
    readers += [lambda: read_sound(path, None)] if name.endswith(".flac") else [lambda: read_picture(path)]
    for reader in readers:
        exc = refusal(reader)
        assert names(exc, path) and "device" in str(exc)


def test_open_picture_refuses_a_folder_and_a_missing_file(tmp_path):
    for path, words in ((tmp_path, "folder"), (tmp_path / "gone.png", "not found")):
        def opening(path=path):
            with open_picture(path):
                pass
        exc = refusal(opening)
        assert names(exc, path) and words in str(exc)


def test_a_well_formed_export_still_reads_back(tmp_path):
    path = tmp_path / "fine.png"
    request = RenderRequest(model_id="tiny", seed=3, params={"prompt": "p"})
    save_image(path, np.zeros((8, 8), np.uint8), request)
    assert read_any_request(path) == request
