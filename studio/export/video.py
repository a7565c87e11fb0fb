"""Video export, streamed: frames arrive in batches and are encoded as they come; the file appears only when it is
complete (a temporary file or folder beside the target, renamed into place; nothing partial is ever left).

Formats, by the target's suffix:
- `.mp4`: H.264 (libx264, yuv420p, CRF 18/23/28 for quality high/medium/low) + AAC. yuv420p needs an even width and
  height: an odd size is padded by one pixel (the last column/row repeated), so the file is one pixel larger.
- `.webm`: VP9 (libvpx-vp9, constant quality, CRF 24/32/40) + Opus at 48 kHz (other rates are resampled).
- `.gif`: Pillow, one adaptive palette (256/128/64 colours) from a sample of the frames, Floyd–Steinberg dithering,
  looping forever. Frames are buffered until `close` (width × height × 3 bytes each: 300 frames of 512² are 236 MB),
  so GIF is for short clips. Delays are whole 1/100 s, rounded so that the total time stays right; at most 50 fps.
  Pillow merges identical consecutive frames into one longer frame. No sound.
- no suffix: a folder of PNGs `frame-000001.png`, `frame-000002.png`, … (written as they come into a temporary
  sibling folder). An existing folder is replaced only if it is empty or holds nothing but such frames. No sound.

The `metadata` text (the document, as JSON) is stored under the name "latent-studio" (REQUEST_CHUNK): in the container
tags of MP4 (an `mdta` key, which ffmpeg writes only with `movflags=use_metadata_tags`: plain MP4 keeps just the
iTunes keys such as `comment`) and WebM (a Matroska tag; ffmpeg reads its keys back upper-cased), in a GIF comment
extension, and in a compressed iTXt chunk of every PNG. `read_video_metadata` reads it back.

Sound is (samples[, channels]) float in [-1, 1] with its rate, one or two channels; it is trimmed or padded with
silence to the video's length (frames / fps) and interleaved with the frames as they are written.

A writer keeps no global state: one writer may run on its own thread (PyAV releases the GIL while encoding).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from studio.errors import ExportError, RequestError
from studio.io.atomic import check_parent_folder, check_writable_folder, forget, temporary_beside
from studio.export.audio import resample
from studio.io.metadata import REQUEST_CHUNK
from studio.limits import MAX_FRAMES

VIDEO_FORMATS = {".mp4": "MP4", ".webm": "WEBM", ".gif": "GIF", "": "PNG"}  # "": a folder name, PNG frames in it
QUALITIES = ("high", "medium", "low")
METADATA_KEY = REQUEST_CHUNK
FRAME_NAME = "frame-{:06d}.png"
_FRAME_RE = re.compile(r"frame-\d{6,}\.png")

_VIDEO_CODECS = {"MP4": "libx264", "WEBM": "libvpx-vp9"}
_AUDIO_CODECS = {"MP4": "aac", "WEBM": "libopus"}
_CRF = {"MP4": {"high": 18, "medium": 23, "low": 28}, "WEBM": {"high": 24, "medium": 32, "low": 40}}
_GIF_COLOURS = {"high": 256, "medium": 128, "low": 64}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_OPUS_RATE = 48000
_GIF_MAX_FPS = 50  # delays are in 1/100 s and browsers slow anything under 2/100 s to 1/10 s
_PALETTE_SAMPLE_FRAMES = 32
_PALETTE_SAMPLE_PIXELS = 1 << 20


def video_format(path: str | Path) -> str:
    """"MP4", "WEBM", "GIF" or "PNG" (a folder of frames) for `path`, or an ExportError naming it."""
    path = Path(path)
    fmt = VIDEO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"unknown video format {path.suffix}; use .mp4, .webm, .gif, or a folder name without "
                          f"a suffix for PNG frames", path)
    return fmt


def _fps(fps: Any, path: Path) -> Fraction:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(fps, bool) or not math.isfinite(value) or value <= 0 or value > 1000:
        raise ExportError(f"the frame rate must be a number of frames per second above 0 and at most 1000, "
                          f"got {fps!r}", path)
    return Fraction(value).limit_denominator(1001)  # 29.97002997 → 30000/1001


def _sound(audio: Any, path: Path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 clipped to [-1, 1], and the rate; or an ExportError saying what is wrong."""
    try:
        wave, rate = audio
    except (TypeError, ValueError):
        raise ExportError("audio must be a pair (samples, sample rate)", path) from None
    wave = np.asarray(wave)
    if not np.issubdtype(wave.dtype, np.floating):
        raise ExportError(f"audio data must be float samples in [-1, 1], got {wave.dtype}", path)
    if wave.ndim == 1:
        wave = wave[:, None]
    if wave.ndim != 2 or wave.shape[0] == 0 or wave.shape[1] not in (1, 2):
        raise ExportError(f"audio data must be (samples,) or (samples, channels) with 1 or 2 channels and not "
                          f"empty, got {wave.shape}", path)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ExportError(f"the sample rate must be a positive whole number of Hz, got {rate!r}", path)
    if not np.isfinite(wave).all():
        raise ExportError("audio data contains NaN or infinite samples", path)
    return np.clip(wave, -1.0, 1.0).astype(np.float32).T, int(rate)


def _check_frame_folder(target: Path) -> None:
    """A PNG sequence may go to `target`: its parent is writable and it is new, empty, or holds only our frames."""
    check_parent_folder(target)
    if target.exists() and not target.is_dir():
        raise ExportError("exists and is not a folder; give a new folder name for the PNG frames", target)
    if target.is_dir():
        others = [p.name for p in target.iterdir() if not _FRAME_RE.fullmatch(p.name)]
        if others:
            raise ExportError(f"the folder exists and holds other files ({others[0]}…); give a new folder name "
                              f"for the PNG frames", target)


def _remove(path: Path | None) -> None:
    """Remove a temporary file or folder; quietly, as it runs while another error is on its way."""
    if path is None:
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    except OSError:
        pass
    forget(path)


class VideoWriter:
    """Encode batches of frames into a video file (or a folder of PNGs), atomically.

    `size` is (width, height) of the frames; without it the first batch sets it. `audio` is (samples, rate) or
    None; `metadata` a text (the document's JSON) stored in the file; `quality` "high", "medium" or "low".
    Every error is an ExportError naming the file, raised before any encoding where it can be (format, folder,
    arguments); an error while writing aborts the writer, leaving nothing behind.

        with VideoWriter("clip.mp4", fps=24, audio=(wave, 44100), metadata=doc_json) as writer:
            for batch in batches:          # (N, H, W, C) uint8, C 1 (grey) or 3
                writer.write(batch)
        # closed here, or aborted (nothing left) if the block raised
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None,
                 audio: tuple[np.ndarray, int] | None = None, metadata: str = "", quality: str = "high"):
        self.path = Path(path)
        self.format = video_format(self.path)
        self.fps = _fps(fps, self.path)
        if quality not in QUALITIES:
            raise ExportError(f"unknown quality {quality!r}; use {', '.join(QUALITIES)}", self.path)
        self.quality = quality
        if not isinstance(metadata, str):
            raise ExportError(f"metadata must be text, got {type(metadata).__name__}", self.path)
        if "\0" in metadata:
            raise ExportError("metadata text must not contain NUL characters", self.path)
        self.metadata = metadata
        if size is not None:
            try:
                width, height = (int(v) for v in size)
            except (TypeError, ValueError):
                raise ExportError(f"size must be (width, height), got {size!r}", self.path) from None
            if width <= 0 or height <= 0:
                raise ExportError(f"size must be positive, got {width}x{height}", self.path)
            size = (width, height)
        self.size: tuple[int, int] | None = size
        self._sound: np.ndarray | None = None
        self._rate = 0
        if audio is not None:
            if self.format in ("GIF", "PNG"):
                raise ExportError(f"{'a GIF' if self.format == 'GIF' else 'PNG frames'} cannot carry sound; "
                                  f"use .mp4 or .webm, or leave the sound out", self.path)
            self._sound, self._rate = _sound(audio, self.path)
            self._sound_rate = self._rate  # the rate given; _rate becomes the stream's
        if self.format == "GIF" and self.fps > _GIF_MAX_FPS:
            raise ExportError(f"a GIF shows at most {_GIF_MAX_FPS} frames per second (its delays are in 1/100 s); "
                              f"got {float(self.fps):g}", self.path)

        self.frames = 0  # frames written so far
        self._closed = False
        self._aborted = False
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._audio_pos = 0  # sound samples (at the stream's rate) sent to the encoder
        self._gif: list[np.ndarray] = []
        self._tmp = self._make_temporary()
        # A writer dropped without close/abort (a crash in the caller) still removes its temporary file or folder.
        self._cleanup = weakref.finalize(self, _remove, self._tmp)
        try:
            if self.format in _VIDEO_CODECS:
                self._open_container()
        except BaseException:
            self.abort()
            raise

    # --- setting up ---------------------------------------------------------------------------------------------

    def _make_temporary(self) -> Path:
        target = self.path
        if self.format == "PNG":
            _check_frame_folder(target)
            return temporary_beside(target, target.parent, folder=True)
        return temporary_beside(target, check_writable_folder(target))

    def _open_container(self) -> None:
        options = {"movflags": "use_metadata_tags+faststart"} if self.format == "MP4" else {}
        try:
            self._container = av.open(str(self._tmp), "w", format=self.format.lower(), options=options)
            if self.metadata:
                self._container.metadata[METADATA_KEY] = self.metadata
        except av.FFmpegError as exc:
            raise ExportError(f"cannot create the {self.format} file: {exc}", self.path) from None
        if self.size is not None:
            self._add_streams(self.size)

    def _stream_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The encoded size of frames of `size` (width, height)."""
        width, height = size
        if self.format == "MP4":  # H.264 in yuv420p: even sizes only
            return width + width % 2, height + height % 2
        return width, height

    def _add_streams(self, size: tuple[int, int]) -> None:
        fmt, container = self.format, self._container
        video = container.add_stream(_VIDEO_CODECS[fmt], rate=self.fps)
        video.width, video.height = self._stream_size(size)
        video.pix_fmt = "yuv420p"
        crf = str(_CRF[fmt][self.quality])
        if fmt == "MP4":
            video.options = {"crf": crf, "preset": "medium"}
        else:  # constant quality needs a zero bit rate; "good" at cpu-used 4 is a fair speed for its quality
            video.codec_context.bit_rate = 0
            video.options = {"crf": crf, "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
        self._video = video
        if self._sound is not None:
            rate = self._sound_rate
            if fmt == "WEBM":
                rate = _OPUS_RATE
            elif rate not in _AAC_RATES:
                rate = 48000
            if rate != self._sound_rate:
                self._sound = np.ascontiguousarray(resample(self._sound.T, self._sound_rate, rate).T)
            self._rate = rate
            layout = "mono" if self._sound.shape[0] == 1 else "stereo"
            audio = container.add_stream(_AUDIO_CODECS[fmt], rate=rate, layout=layout)
            if fmt == "WEBM":
                audio.format = "flt"  # libopus would default to s16
            self._audio = audio

    # --- writing --------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._aborted:
            raise ExportError("the video was aborted; nothing more can be written", self.path)
        if self._closed:
            raise ExportError("the video is already closed; nothing more can be written", self.path)

    def _rgb(self, frames: Any) -> np.ndarray:
        if not isinstance(frames, np.ndarray):
            raise ExportError(f"frames must be a numpy array, got {type(frames).__name__}", self.path)
        if frames.dtype != np.uint8:
            raise ExportError(f"frames must be uint8, got {frames.dtype}", self.path)
        if frames.ndim != 4 or frames.shape[3] not in (1, 3):
            raise ExportError(f"frames must be a batch (N, height, width, channels) with 1 or 3 channels, got "
                              f"{frames.shape}", self.path)
        n, height, width, channels = frames.shape
        if height == 0 or width == 0:
            raise ExportError(f"frames must not be empty, got {frames.shape}", self.path)
        if self.size is None:
            self.size = (width, height)
            if self._container is not None:
                self._add_streams(self.size)
        elif (width, height) != self.size:
            raise ExportError(f"frame size {width}x{height} does not match the video's {self.size[0]}x"
                              f"{self.size[1]} (frame {self.frames + 1})", self.path)
        if channels == 1:
            frames = np.repeat(frames, 3, axis=3)
        return frames

    def write(self, frames: np.ndarray) -> None:
        """Encode a batch (N, H, W, C) uint8, C 1 (grey, made RGB) or 3. Any error aborts the writer."""
        self._check_open()
        try:
            frames = self._rgb(frames)
            if self.frames + len(frames) > MAX_FRAMES:  # counted before the batch is encoded or buffered
                raise ExportError(f"{self.frames + len(frames):,} frames is over the limit of {MAX_FRAMES:,} for one "
                                  "video", self.path)
            if self.format == "GIF":
                self._gif.extend(np.array(frame) for frame in frames)  # copies: the caller may reuse its buffer
            elif self.format == "PNG":
                self._write_pngs(frames)
            else:
                self._encode(frames)
            self.frames += len(frames)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, (ExportError, KeyboardInterrupt, SystemExit)):
                raise
            raise ExportError(f"cannot encode {self.format}: {exc}", self.path) from exc

    def _encode(self, frames: np.ndarray) -> None:
        size = (frames.shape[2], frames.shape[1])  # the video's size (_rgb checked it)
        width, height = self._stream_size(size)
        if (width, height) != size:  # pad an odd size by repeating the last column/row
            frames = np.pad(frames, ((0, 0), (0, height - size[1]), (0, width - size[0]), (0, 0)), mode="edge")
        container, video = self._container, self._video
        for index, frame in enumerate(frames, start=self.frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")  # the encoder converts to yuv420p
            picture.pts = index
            container.mux(video.encode(picture))
        self._send_sound(min(self._sound_samples(self.frames + len(frames)),
                             0 if self._sound is None else self._sound.shape[1]))

    def _sound_samples(self, frames: int) -> int:
        """The number of sound samples that last as long as `frames` frames."""
        return int(Fraction(frames) / self.fps * self._rate + Fraction(1, 2))

    def _send_sound(self, until: int) -> None:
        """Encode the sound up to sample `until`, padding with silence past its end."""
        if self._audio is None or self._sound is None or until <= self._audio_pos:
            return
        chunk = self._sound[:, self._audio_pos:until]
        if chunk.shape[1] < until - self._audio_pos:
            chunk = np.pad(chunk, ((0, 0), (0, until - self._audio_pos - chunk.shape[1])))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                        layout="mono" if chunk.shape[0] == 1 else "stereo")
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._audio_pos
        self._container.mux(self._audio.encode(frame))  # PyAV cuts it into the encoder's frame size
        self._audio_pos = until

    def _write_pngs(self, frames: np.ndarray) -> None:
        info = PngImagePlugin.PngInfo()
        if self.metadata:
            info.add_itxt(METADATA_KEY, self.metadata, zip=True)
        for index, frame in enumerate(frames, start=self.frames + 1):
            Image.fromarray(frame).save(self._tmp / FRAME_NAME.format(index), format="PNG", pnginfo=info)

    # --- finishing ----------------------------------------------------------------------------------------------

    def close(self) -> Path:
        """Finish encoding, add the rest of the sound, and move the file (or folder) into place. Returns the path."""
        if self._closed:
            return self.path
        self._check_open()
        if self.frames == 0:
            self.abort()
            raise ExportError("no frames were written; nothing to save", self.path)
        try:
            if self.format == "GIF":
                self._save_gif()
            elif self.format in _VIDEO_CODECS:
                container = self._container
                container.mux(self._video.encode(None))
                if self._audio is not None:
                    self._send_sound(self._sound_samples(self.frames))
                    container.mux(self._audio.encode(None))
                self._container = None
                container.close()
            self._move_into_place()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, (ExportError, KeyboardInterrupt, SystemExit)):
                raise
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ExportError(f"cannot finish the {self.format}: {problem}", self.path) from exc
        self._closed = True
        self._cleanup.detach()
        self._gif = []
        return self.path

    def _save_gif(self) -> None:
        frames = self._gif
        step = max(1, len(frames) // _PALETTE_SAMPLE_FRAMES)
        sample = np.concatenate(frames[::step][:_PALETTE_SAMPLE_FRAMES], axis=0)  # stacked vertically
        stride = max(1, math.ceil(math.sqrt(sample.shape[0] * sample.shape[1] / _PALETTE_SAMPLE_PIXELS)))
        palette = Image.fromarray(np.ascontiguousarray(sample[::stride, ::stride])).quantize(
            _GIF_COLOURS[self.quality], method=Image.Quantize.MEDIANCUT)
        images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
                  for frame in frames]
        # Delays in 1/100 s, each the rounded end time minus the rounded start time: the total stays exact.
        ends = [round(Fraction(100 * i) / self.fps) for i in range(len(images) + 1)]
        durations = [10 * (b - a) for a, b in zip(ends, ends[1:])]
        extra = {"comment": self.metadata.encode()} if self.metadata else {}
        images[0].save(self._tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                       loop=0, **extra)

    def _move_into_place(self) -> None:
        if self.format != "PNG":
            os.replace(self._tmp, self.path)
            forget(self._tmp)
            return
        old = None
        if self.path.is_dir():  # an earlier export of frames (checked at the start): swap it out, then remove it
            _check_frame_folder(self.path)
            old = temporary_beside(self.path, self.path.parent, folder=True, suffix=".old")
            forget(old)  # it holds the earlier frames for a moment: never one to remove on a signal
            os.replace(self.path, old)
        try:
            os.replace(self._tmp, self.path)
        except OSError:
            if old is not None:
                os.replace(old, self.path)
            raise
        forget(self._tmp)
        _remove(old)

    def abort(self) -> None:
        """Stop and remove everything written so far. Does nothing to a closed (finished) video."""
        if self._closed or self._aborted:
            return
        self._aborted = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # a half-written container may fail to finish; it is removed anyway
                pass
        self._gif = []
        _remove(self._tmp)
        self._cleanup.detach()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_video_metadata(path: str | Path) -> str | None:
    """The metadata text a video (or PNG-frames folder) this app exported carries, or None; reads metadata only."""
    path = Path(path)
    if not path.exists():
        raise RequestError("file not found", path)
    if path.is_dir():
        frames = sorted(p for p in path.iterdir() if _FRAME_RE.fullmatch(p.name))
        if not frames:
            raise RequestError("the folder holds no PNG frames (frame-000001.png, …)", path)
        path = frames[0]
    try:
        if path.suffix.lower() in (".png", ".gif"):
            with Image.open(path) as image:
                text = image.info.get(METADATA_KEY) if image.format == "PNG" else image.info.get("comment")
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            return text or None
        with av.open(str(path)) as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
        return tags.get(METADATA_KEY) or None
    except UnidentifiedImageError:
        raise RequestError("not an image file", path) from None
    except UnicodeDecodeError:
        raise RequestError("the stored metadata is not UTF-8 text", path) from None
    except OSError as exc:
        raise RequestError(f"cannot read: {exc.strerror or exc}", path) from None
    except av.FFmpegError as exc:  # not all of PyAV's errors are OSErrors
        raise RequestError(f"not a readable video ({exc})", path) from None
