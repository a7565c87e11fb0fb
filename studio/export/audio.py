"""Audio export with the request inside, and reading sounds back (numpy + soundfile; no torch, no scipy).

Every exported sound carries two texts, as the images do: an AUTOMATIC1111-like `parameters` text in the comment tag
players show, and the full RenderRequest as JSON under the name "latent-studio", which this module writes and reads
itself because libsndfile cannot:
- WAV: a `LIST`/`INFO` chunk (INAM, ICMT = parameters, ISFT) and an `lsrq` chunk holding the JSON, both appended after
  the audio data. libsndfile writes no custom chunk and silently drops *every* INFO string once one passes 2045 bytes.
- FLAC, OGG Vorbis: Vorbis comments. TITLE, COMMENT = parameters and SOFTWARE go through libsndfile (UTF-8, any
  length); a LATENT_STUDIO field with the JSON is added to the comment block, as libsndfile only knows fixed keys.
- MP3: an ID3v2.4 tag in front (TIT2, COMM = parameters, TSSE, TXXX "latent-studio" = JSON), all UTF-8. libsndfile
  (through LAME) writes ID3v2.3 that labels UTF-8 text as Latin-1, and has room for one comment only.
"""

from __future__ import annotations

import math
import struct
import zlib
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar

import numpy as np
import soundfile as sf

from studio import __version__
from studio.errors import ExportError, RequestError
from studio.export.atomic import atomic_path
from studio.export.image import REQUEST_CHUNK, parameters_text, stored_request
from studio.request import RenderRequest

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
WAV_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
SUBTYPES = {"WAV": WAV_SUBTYPES, "FLAC": ("PCM_16", "PCM_24"), "OGG": ("VORBIS",), "MP3": ("MPEG_LAYER_III",)}
MAX_CHANNELS = {"WAV": 256, "FLAC": 8, "OGG": 8, "MP3": 2}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
RATE_RANGES = {"WAV": (1, 2**31 - 1), "FLAC": (1, 655350), "OGG": (8000, 192000)}  # libvorbis crashes far above
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"})

WAV_CHUNK = b"lsrq"
VORBIS_FIELD = "LATENT_STUDIO"
_T = TypeVar("_T")
SILENCE = 1e-5  # -100 dBFS: a sound whose peak is below this is silent


def _software() -> str:
    return f"Latent Studio {__version__}"


# --- writing ----------------------------------------------------------------------------------------------------


def _samples(data: np.ndarray, fmt: str, path: Path) -> np.ndarray:
    """(samples, channels) float32 in [-1, 1], or an ExportError saying what is wrong with `data`."""
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating):
        raise ExportError(f"audio data must be float samples in [-1, 1], got {data.dtype}", path)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ExportError(f"audio data must be (samples,) or (samples, channels) and not empty, got {data.shape}",
                          path)
    if data.shape[1] > MAX_CHANNELS[fmt]:
        raise ExportError(f"{fmt} holds at most {MAX_CHANNELS[fmt]} channels, got {data.shape[1]} "
                          f"(shape {data.shape}; samples come first)", path)
    if not np.isfinite(data).all():
        raise ExportError("audio data contains NaN or infinite samples", path)
    return np.clip(data, -1.0, 1.0).astype(np.float32)


def _check_rate(sample_rate: int, fmt: str, path: Path) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ExportError(f"the sample rate must be a positive whole number of Hz, got {sample_rate!r}", path)
    if fmt == "MP3":
        if sample_rate not in MP3_RATES:
            raise ExportError(f"MP3 does not support {sample_rate} Hz; use one of "
                              f"{', '.join(map(str, MP3_RATES))} Hz (or WAV/FLAC for any rate)", path)
        return
    low, high = RATE_RANGES[fmt]
    if not low <= sample_rate <= high:
        raise ExportError(f"{fmt} does not support {sample_rate} Hz; use {low}–{high} Hz", path)


def save_audio(path: str | Path, data: np.ndarray, sample_rate: int, request: RenderRequest, model_name: str = "",
               model_sha256: str = "", subtype: str | None = None) -> Path:
    """Write `data` ((samples,) or (samples, channels) float, clipped to [-1, 1]) with the request in its tags,
    atomically. Format from the suffix; `subtype` from SUBTYPES (default: the first, PCM_16 for WAV and FLAC)."""
    path = Path(path)
    fmt = AUDIO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"unknown audio format {path.suffix or '(no suffix)'}; use "
                          f"{', '.join(sorted(AUDIO_FORMATS))}", path)
    subtype = SUBTYPES[fmt][0] if subtype is None else subtype.upper()
    if subtype not in SUBTYPES[fmt]:
        raise ExportError(f"{fmt} cannot be written as {subtype}; use {', '.join(SUBTYPES[fmt])}", path)
    _check_rate(sample_rate, fmt, path)
    samples = _samples(data, fmt, path)
    if model_sha256 and not request.model_hash:  # the hash of the weights that made it, so a re-render is exact
        request = request.with_(model_hash=model_sha256)
    label = request.param("label")
    extra = ([("Class", label)] if label is not None else []) + [
        ("Sample rate", f"{sample_rate} Hz"), ("Length", f"{len(samples) / sample_rate:.2f} s")]
    params = parameters_text(request, None, model_name, model_sha256, extra)
    title = str(request.param("prompt") or label or "")
    with atomic_path(path) as tmp:
        try:
            with sf.SoundFile(tmp, "w", int(sample_rate), samples.shape[1], subtype, format=fmt) as out:
                if fmt in ("FLAC", "OGG"):
                    if title:
                        out.title = title
                    out.comment = params
                    out.software = _software()
                out.write(samples)
        except RuntimeError as exc:  # libsndfile's errors
            raise ExportError(f"cannot encode {fmt}: {exc}", path) from None
        tag = {"WAV": _tag_wav, "FLAC": _tag_flac, "OGG": _tag_ogg, "MP3": _tag_mp3}[fmt]
        tag(tmp, request.to_json(), params, title, path)
    return path


def _riff_chunk(chunk_id: bytes, payload: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def _tag_wav(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    info = b"".join(_riff_chunk(key, text.encode() + b"\0")
                    for key, text in ((b"INAM", title), (b"ICMT", params), (b"ISFT", _software())) if text)
    with open(tmp, "r+b") as f:
        end = f.seek(0, 2)
        f.write(b"\0" * (end & 1) + _riff_chunk(b"LIST", b"INFO" + info)
                + _riff_chunk(WAV_CHUNK, request_json.encode()))
        size = f.tell() - 8
        if size > 0xFFFFFFFF:
            raise ExportError("the sound is too long for a WAV file (over 4 GB); use FLAC", path)
        f.seek(4)
        f.write(struct.pack("<I", size))


def _vorbis_with_field(block: bytes, key: str, value: str) -> bytes:
    """A Vorbis comment block (vendor, count, fields) with the field `key`=`value` added."""
    (vendor_len,) = struct.unpack_from("<I", block)
    (count,) = struct.unpack_from("<I", block, 4 + vendor_len)
    entry = f"{key}={value}".encode()
    return (block[:4 + vendor_len] + struct.pack("<I", count + 1) + block[8 + vendor_len:]
            + struct.pack("<I", len(entry)) + entry)


def _vorbis_field(block: bytes, key: str) -> str | None:
    (vendor_len,) = struct.unpack_from("<I", block)
    pos = 4 + vendor_len
    (count,) = struct.unpack_from("<I", block, pos)
    pos += 4
    for _ in range(count):
        (n,) = struct.unpack_from("<I", block, pos)
        name, _, value = block[pos + 4:pos + 4 + n].partition(b"=")
        if name.upper() == key.encode():
            return value.decode()
        pos += 4 + n
    return None


def _tag_flac(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    data = tmp.read_bytes()
    blocks: list[tuple[int, bytes]] = []
    pos, last = 4, False
    while not last:
        header, size = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
        last = bool(header & 0x80)
        blocks.append((header & 0x7F, data[pos + 4:pos + 4 + size]))
        pos += 4 + size
    index = [kind for kind, _ in blocks].index(4)  # VORBIS_COMMENT: there is one, as the comment tag is set
    body = _vorbis_with_field(blocks[index][1], VORBIS_FIELD, request_json)
    if len(body) >= 1 << 24:
        raise ExportError("the request is too large for a FLAC comment block", path)
    blocks[index] = (4, body)
    out = [b"fLaC"]
    for i, (kind, payload) in enumerate(blocks):
        out.append(bytes([kind | (0x80 if i == len(blocks) - 1 else 0)]) + len(payload).to_bytes(3, "big") + payload)
    tmp.write_bytes(b"".join(out) + data[pos:])


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) via zlib's reflected one on bit-reversed bytes."""
    return int(f"{zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF:032b}"[::-1], 2)


def _ogg_page(flags: int, granule: int, serial: int, seq: int, lacing: bytes, body: bytes) -> bytes:
    page = b"OggS\0" + struct.pack("<BqIII", flags, granule, serial, seq, 0) + bytes([len(lacing)]) + lacing + body
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def _ogg_pages(data: bytes) -> list[tuple[int, int, int, int, bytes, bytes]]:
    """(flags, granule, serial, sequence, lacing, body) of each page."""
    pages, pos = [], 0
    while pos < len(data):
        flags, granule, serial, seq, _crc, count = struct.unpack_from("<BqIIIB", data, pos + 5)
        lacing = data[pos + 27:pos + 27 + count]
        body = data[pos + 27 + count:pos + 27 + count + sum(lacing)]
        pages.append((flags, granule, serial, seq, lacing, body))
        pos += 27 + count + len(body)
    return pages


def _header_packets(pages: list, wanted: int) -> tuple[list[bytes], int]:
    """The first `wanted` packets of a stream and how many pages they fill."""
    packets, current = [], b""
    for index, (_flags, _granule, _serial, _seq, lacing, body) in enumerate(pages):
        pos = 0
        for size in lacing:
            current += body[pos:pos + size]
            pos += size
            if size < 255:
                packets.append(current)
                current = b""
                if len(packets) == wanted:
                    return packets, index + 1
    raise ValueError("the Ogg stream ends inside its headers")


def _tag_ogg(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    pages = _ogg_pages(tmp.read_bytes())
    packets, used = _header_packets(pages, 3)
    ident, comment, setup = packets
    if not comment.startswith(b"\x03vorbis") or sum(len(page[4]) for page in pages[:used]) != sum(
            len(p) // 255 + 1 for p in packets):  # the headers must fill their pages, and nothing else
        raise ExportError("libsndfile wrote an unexpected Ogg Vorbis header layout", path)
    comment = b"\x03vorbis" + _vorbis_with_field(comment[7:-1], VORBIS_FIELD, request_json) + b"\x01"
    lacing = b"".join(b"\xff" * (len(p) // 255) + bytes([len(p) % 255]) for p in (comment, setup))
    body, serial, first_seq = comment + setup, pages[0][2], pages[0][3]
    out = [_ogg_page(*pages[0])]
    pos, continued = 0, False
    for start in range(0, len(lacing), 255):
        part = lacing[start:start + 255]
        ends_packet = any(v < 255 for v in part)
        out.append(_ogg_page(1 if continued else 0, 0 if ends_packet else -1, serial, first_seq + len(out),
                             part, body[pos:pos + sum(part)]))
        pos += sum(part)
        continued = part[-1] == 255
    shift = len(out) - used
    out += [_ogg_page(flags, granule, serial_, seq + shift, lacing_, body_)
            for flags, granule, serial_, seq, lacing_, body_ in pages[used:]]
    tmp.write_bytes(b"".join(out))


def _synchsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _tag_mp3(tmp: Path, request_json: str, params: str, title: str, path: Path) -> None:
    frames = [("TIT2", b"\x03" + title.encode()) if title else None,
              ("COMM", b"\x03eng\0" + params.encode()),
              ("TSSE", b"\x03" + _software().encode()),
              ("TXXX", b"\x03" + REQUEST_CHUNK.encode() + b"\0" + request_json.encode())]
    tag = b"".join(name.encode() + _synchsafe(len(payload)) + b"\0\0" + payload
                   for name, payload in filter(None, frames))
    if len(tag) >= 1 << 28:
        raise ExportError("the request is too large for an ID3 tag", path)
    tmp.write_bytes(b"ID3\x04\0\0" + _synchsafe(len(tag)) + tag + tmp.read_bytes())


# --- reading the request ------------------------------------------------------------------------------------------


def _wav_request(f: BinaryIO) -> str | None:
    f.seek(12)
    while len(header := f.read(8)) == 8:
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == WAV_CHUNK:
            return f.read(size).decode()
        f.seek(size + (size & 1), 1)
    return None


def _flac_request(f: BinaryIO) -> str | None:
    f.seek(4)
    while len(header := f.read(4)) == 4:
        size = int.from_bytes(header[1:], "big")
        if header[0] & 0x7F == 4:
            return _vorbis_field(f.read(size), VORBIS_FIELD)
        if header[0] & 0x80:
            break
        f.seek(size, 1)
    return None


def _ogg_request(f: BinaryIO) -> str | None:
    f.seek(0)
    pages = []
    while True:  # the comment header is the stream's second packet: read pages until it is complete
        head = f.read(27)
        if len(head) < 27 or head[:4] != b"OggS":
            return None
        lacing = f.read(head[26])
        pages.append((0, 0, 0, 0, lacing, f.read(sum(lacing))))
        try:
            (_ident, comment), _used = _header_packets(pages, 2)
        except ValueError:
            continue
        return _vorbis_field(comment[7:], VORBIS_FIELD) if comment.startswith(b"\x03vorbis") else None


def _id3_request(f: BinaryIO) -> str | None:
    f.seek(0)
    header = f.read(10)
    version, flags = header[3], header[5]
    size = sum(b << (7 * (3 - i)) for i, b in enumerate(header[6:10]))
    tag = f.read(size)
    if version not in (3, 4):
        return None
    if version == 3 and flags & 0x80:  # whole-tag unsynchronisation
        tag = tag.replace(b"\xff\x00", b"\xff")
    pos = 0
    if flags & 0x40:  # extended header
        pos = (sum(b << (7 * (3 - i)) for i, b in enumerate(tag[:4])) if version == 4
               else 4 + struct.unpack(">I", tag[:4])[0])
    while pos + 10 <= len(tag) and tag[pos] != 0:
        frame_id, raw = tag[pos:pos + 4], tag[pos + 4:pos + 8]
        length = sum(b << (7 * (3 - i)) for i, b in enumerate(raw)) if version == 4 else struct.unpack(">I", raw)[0]
        payload = tag[pos + 10:pos + 10 + length]
        pos += 10 + length
        if frame_id == b"TXXX" and payload[:1] in (b"\x00", b"\x03"):
            description, _, value = payload[1:].partition(b"\0")
            if description == REQUEST_CHUNK.encode():
                return value.rstrip(b"\0").decode("utf-8" if payload[0] == 3 else "latin-1")
    return None


def stored_audio_request_text(path: str | Path) -> str | None:
    """The request JSON a sound file carries, or None; reads metadata only."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                text = _wav_request(f)
            elif head[:4] == b"fLaC":
                text = _flac_request(f)
            elif head[:4] == b"OggS":
                text = _ogg_request(f)
            elif head[:3] == b"ID3":
                text = _id3_request(f)
            else:
                sf.info(str(path))  # a sound without our tags, or not a sound at all
                text = None
    except FileNotFoundError:
        raise RequestError("file not found", path) from None
    except RuntimeError:  # libsndfile's errors
        raise RequestError("not a sound file", path) from None
    except OSError as exc:
        raise RequestError(f"cannot read: {exc.strerror or exc}", path) from None
    except (struct.error, ValueError, IndexError):  # UnicodeDecodeError is a ValueError
        raise RequestError("the sound file's metadata is damaged", path) from None
    return text or None


def read_audio_request(path: str | Path) -> RenderRequest:
    """The RenderRequest stored in a sound this app exported."""
    return stored_request(stored_audio_request_text(path), path, "sound")


# --- reading sound ------------------------------------------------------------------------------------------------

_ZEROS = 32  # sinc zero crossings each side, counted at the lower of the two rates
_BETA = 8.0  # Kaiser window: about 80 dB of stop-band attenuation
_ROLLOFF = 0.92  # cutoff / lower Nyquist: the transition band (≈ 0.08 of the lower rate) ends at Nyquist
_BLOCK = 4096  # output samples per step
_TABLE_LIMIT = 1 << 22  # kernel values kept at once; beyond it (odd rate ratios), they are made block by block


def _kernel(offsets: np.ndarray, cutoff: float, half: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass (cutoff in cycles per input sample) at `offsets`, each row summing to 1."""
    window = np.i0(_BETA * np.sqrt(np.clip(1.0 - (offsets / half) ** 2, 0.0, None))) / np.i0(_BETA)
    kernel = np.sinc(2.0 * cutoff * offsets) * window
    return kernel / kernel.sum(axis=-1, keepdims=True)


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """`wave` ((samples,) or (samples, channels)) from `from_rate` to `to_rate` Hz, band-limited: a Kaiser-windowed
    sinc at the exact rational ratio (polyphase). Returns float32 with ceil(samples · to_rate / from_rate) samples."""
    for rate in (from_rate, to_rate):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"sample rates must be positive whole numbers, got {rate!r}")
    x = np.asarray(wave, dtype=np.float64)
    if from_rate == to_rate:
        return x.astype(np.float32)
    ratio = Fraction(int(to_rate), int(from_rate))
    up, down = ratio.numerator, ratio.denominator
    n_out = -(-len(x) * up // down)
    cutoff = 0.5 * _ROLLOFF * min(1.0, up / down)  # cycles per input sample
    half = math.ceil(_ZEROS / (2.0 * cutoff))  # the kernel's half-width in input samples
    taps = np.arange(-half + 1, half + 1)  # input samples around floor(t), t the output sample's input position
    n = np.arange(n_out, dtype=np.int64)
    base, phase = np.divmod(n * down, up)
    phases, which = np.unique(phase, return_inverse=True)
    table = (_kernel(phases[:, None] / up - taps, cutoff, half) if len(phases) * len(taps) <= _TABLE_LIMIT
             else None)
    padded = np.pad(x, [(half, half)] + [(0, 0)] * (x.ndim - 1))
    out = np.empty((n_out,) + x.shape[1:], dtype=np.float32)
    for start in range(0, n_out, _BLOCK):
        block = slice(start, start + _BLOCK)
        weights = (table[which[block]] if table is not None
                   else _kernel(phase[block, None] / up - taps, cutoff, half))
        out[block] = np.einsum("nk,nk...->n...", weights, padded[base[block, None] + taps + half])
    return out


def _decoded(path: Path, read: Callable[[sf.SoundFile], _T]) -> _T:
    """`read(f)` on the open sound file; RequestError naming it when it is missing or libsndfile cannot decode it."""
    if not path.is_file():
        raise RequestError("not a file" if path.exists() else "file not found", path)
    try:
        with sf.SoundFile(str(path)) as f:
            return read(f)
    except RuntimeError as exc:  # libsndfile's errors
        problem = getattr(exc, "error_string", None) or str(exc)
        raise RequestError(f"cannot be decoded as sound (libsndfile: {problem})", path) from None
    except OSError as exc:
        raise RequestError(f"cannot read: {exc.strerror or exc}", path) from None


def check_sound(path: str | Path, block_seconds: float = 1.0) -> dict:
    """That a sound file decodes and is not all silence, reading it a block at a time only until it is heard (a quiet
    intro is fine; a long file is not decoded whole). Its sample_rate, channels and seconds; RequestError as
    read_sound gives."""
    path = Path(path)

    def first_sound(f: sf.SoundFile) -> bool:
        for block in f.blocks(blocksize=max(1, int(block_seconds * f.samplerate)), dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise RequestError("the sound contains NaN or infinite samples", path)
            if np.abs(block).max() >= SILENCE:
                return True
        return False

    rate, channels, frames, heard = _decoded(path, lambda f: (f.samplerate, f.channels, f.frames, first_sound(f)))
    if frames == 0:
        raise RequestError("the sound is empty (zero length)", path)
    if not heard:
        raise RequestError("the sound is silent", path)
    return {"sample_rate": rate, "channels": channels, "seconds": frames / rate}


def read_sound(path: str | Path, sample_rate: int | None, max_seconds: float | None = None) -> tuple[np.ndarray, dict]:
    """Decode a sound file (anything libsndfile reads), mix it to mono float32, keep at most its first `max_seconds`
    and resample it to `sample_rate` (None: keep the file's). Info: the file's sample_rate, channels and seconds, and
    whether it was resampled."""
    path = Path(path)
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")

    def head(f: sf.SoundFile) -> tuple[int, int, int, np.ndarray]:
        wanted = f.frames if max_seconds is None else min(f.frames, math.ceil(max_seconds * f.samplerate))
        return f.samplerate, f.channels, f.frames, f.read(wanted, dtype="float32", always_2d=True)

    rate, channels, frames, wave = _decoded(path, head)
    if len(wave) == 0:
        raise RequestError("the sound is empty (zero length)", path)
    mono = wave.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise RequestError("the sound contains NaN or infinite samples", path)
    if np.abs(mono).max() < SILENCE:
        read = "" if len(wave) == frames else f" in its first {len(wave) / rate:g} s"
        raise RequestError(f"the sound is silent{read}", path)
    resampled = sample_rate is not None and rate != sample_rate
    if resampled:
        mono = resample(mono, rate, sample_rate)
    return mono, {"sample_rate": rate, "channels": channels, "seconds": frames / rate, "resampled": resampled}
