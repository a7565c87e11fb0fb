"""Audio export with the request inside, and reading sounds back (numpy + soundfile; no torch, no scipy).

Every exported sound carries two texts, as the images do: an AUTOMATIC1111-like `parameters` text in the comment tag
players show, and the full RenderRequest as JSON; how each container (WAV, FLAC, OGG Vorbis, MP3) holds them, which
libsndfile cannot write by itself, is `studio.io.metadata`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import soundfile as sf

from studio.errors import ExportError, RequestError
from studio.files import open_regular
from studio.limits import QUOTE_CHARS
from studio.io.atomic import atomic_path
from studio.export.image import parameters_text, stored_request
from studio.io.metadata import software_name, stored_audio_request_text, tag_sound
from studio.request import RenderRequest

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
WAV_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
SUBTYPES = {"WAV": WAV_SUBTYPES, "FLAC": ("PCM_16", "PCM_24"), "OGG": ("VORBIS",), "MP3": ("MPEG_LAYER_III",)}
MAX_CHANNELS = {"WAV": 256, "FLAC": 8, "OGG": 8, "MP3": 2}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
RATE_RANGES = {"WAV": (1, 2**31 - 1), "FLAC": (1, 655350), "OGG": (8000, 192000)}  # libvorbis crashes far above
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"})

_T = TypeVar("_T")
SILENCE = 1e-5  # -100 dBFS: a sound whose peak is below this is silent


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
               model_sha256: str = "", subtype: str | None = None, notes: list[str] | None = None,
               used: Mapping[str, Any] | None = None) -> Path:
    """Write `data` ((samples,) or (samples, channels) float, clipped to [-1, 1]) with the request in its tags,
    atomically. Format from the suffix; `subtype` from SUBTYPES (default: the first, PCM_16 for WAV and FLAC). A
    request too large to store is left out (the parameters text stays), said in one-line notes added to `notes`.
    `used`: the values the render used (defaults resolved), for the parameters text."""
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
    params = parameters_text(request, None, model_name, model_sha256, extra, used)
    title = str(request.param("prompt") or label or "")
    with atomic_path(path) as tmp:
        try:
            with sf.SoundFile(tmp, "w", int(sample_rate), samples.shape[1], subtype, format=fmt) as out:
                if fmt in ("FLAC", "OGG"):
                    if title:
                        out.title = title
                    out.comment = params
                    out.software = software_name()
                out.write(samples)
        except RuntimeError as exc:  # libsndfile's errors
            raise ExportError(f"cannot encode {fmt}: {exc}", path) from None
        said = tag_sound(fmt, tmp, request.to_json(), params, title, path)  # logs its notes too
    if notes is not None:
        notes.extend(said)
    return path


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
    """`read(f)` on the open sound file; RequestError naming it when it is missing, not a regular file (a FIFO, a
    device: refused before anything is read) or libsndfile cannot decode it."""
    with open_regular(path, RequestError, what="sound file") as stream:
        try:
            with sf.SoundFile(stream) as f:
                return read(f)
        except RuntimeError as exc:  # libsndfile's errors
            problem = getattr(exc, "error_string", None) or str(exc)
            raise RequestError(f"cannot be decoded as sound (libsndfile: {problem[:QUOTE_CHARS]})", path) from None
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
    resampled = False
    if sample_rate is not None and rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
        resampled = True
    return mono, {"sample_rate": rate, "channels": channels, "seconds": frames / rate, "resampled": resampled}
