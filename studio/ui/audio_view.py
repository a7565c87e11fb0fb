"""The audio preview: waveform, spectrogram and a play / stop / loop transport for models whose output is a sound.

Everything heavy (the envelope, the STFT, the colour mapping, the scaling) runs in `set_sound` or on resize, in
vectorised numpy; painting only blits cached images and draws the playhead. Playback goes through QtMultimedia when it
imports and an output device exists; without either the view still draws and says why it cannot play.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PySide6.QtCore import (QIODevice, QObject, QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal, SignalInstance,
                            Slot)
from PySide6.QtGui import (QColor, QFontDatabase, QHideEvent, QImage, QKeyEvent, QPainter, QPaintEvent, QPixmap,
                           QResizeEvent)
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QLayout, QPushButton, QSizePolicy, QStyle, QVBoxLayout,
                               QWidget)

from studio.io.colormap import MAGMA
from studio.ui.canvas import BACKGROUND, PLACEHOLDER_TEXT, paint_progress, qimage_from_array

try:  # QtMultimedia needs libpulse on Linux: without it the view still draws, it only cannot play (and nothing below
    # touches the QtMultimedia names while MULTIMEDIA_ERROR is set)
    from PySide6.QtMultimedia import QAudioFormat, QAudioSink, QMediaDevices
except ImportError as error:
    MULTIMEDIA_ERROR = str(error)
else:
    MULTIMEDIA_ERROR = ""

WAVE_COLOUR = QColor(0x6C, 0xB4, 0xFF)
WAVE_BACKGROUND = QColor(0x26, 0x26, 0x26)
CENTRE_LINE = QColor(0x4A, 0x4A, 0x4A)
PLAYHEAD = QColor(0xFF, 0xFF, 0xFF, 220)
AXIS_TEXT = QColor(0xA0, 0xA0, 0xA0)
LABEL_BACKDROP = QColor(0, 0, 0, 120)
N_FFT = 1024
MIN_FFT = 16
MAX_COLUMNS = 2000  # spectrogram frames at most: long clips get a larger hop
SPECTROGRAM_ROWS = 256  # mel-spaced rows
FLOOR_DB = -80.0  # relative to a full-scale sine
MAX_CHANNELS = 8
TICK_MS = 33  # playhead refresh, ~30 fps
MARGIN = 6
GAP = 4
AXIS_HEIGHT = 16
WAVE_SHARE = 0.38  # of the height left for waveform + spectrogram
FREQUENCY_TICKS = ((100, "100"), (500, "500"), (1000, "1k"), (2000, "2k"), (5000, "5k"), (10000, "10k"))
NO_DEVICE = "No audio output device found: playback is off"
PLACEHOLDER = "No sound yet"

_SINK_ERRORS = {"OpenError": "the audio device could not be opened",
                "IOError": "the audio device stopped accepting data",
                "UnderrunError": "the audio device ran out of data",
                "FatalError": "the audio device failed"}


# -- numpy: checking, envelope, spectrogram ------------------------------------------------------------------------

def as_sound(data: np.ndarray, sample_rate: int) -> np.ndarray:
    """An owned float32 (samples, channels) copy of a (samples,) or (samples, channels) float sound, clipped to
    [-1, 1] with NaNs zeroed."""
    if not isinstance(data, np.ndarray) or not np.issubdtype(data.dtype, np.floating) or data.ndim not in (1, 2):
        raise ValueError(f"a sound must be a float numpy array shaped (samples,) or (samples, channels), got "
                         f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    frames = data.reshape(data.shape[0], -1)
    if frames.shape[0] == 0 or not 1 <= frames.shape[1] <= MAX_CHANNELS:
        raise ValueError(f"a sound needs at least one sample and 1 to {MAX_CHANNELS} channels, got shape {data.shape}"
                         f" (channels go last)")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sample_rate!r}")
    sound = np.nan_to_num(np.array(frames, np.float32, order="C"), copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(sound, -1.0, 1.0, out=sound)


def mix_to_mono(sound: np.ndarray) -> np.ndarray:
    """float32 (samples,) mean of a (samples, channels) sound."""
    return sound[:, 0].copy() if sound.shape[1] == 1 else sound.mean(axis=1, dtype=np.float32)


def waveform_envelope(mono: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) of `mono` over `columns` equal spans, each widened to meet its left neighbour so the trace
    stays connected when there are fewer samples than columns."""
    starts = np.arange(columns, dtype=np.int64) * len(mono) // columns
    low, high = np.minimum.reduceat(mono, starts), np.maximum.reduceat(mono, starts)
    left_low, left_high = low[:-1].copy(), high[:-1].copy()
    np.minimum(low[1:], left_high, out=low[1:])
    np.maximum(high[1:], left_low, out=high[1:])
    return low, high


def _rgb(colour: QColor) -> tuple[int, int, int]:
    return colour.red(), colour.green(), colour.blue()


def _waveform_rgb(mono: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: the min/max envelope in WAVE_COLOUR over a centre line on WAVE_BACKGROUND."""
    low, high = waveform_envelope(mono, width)
    half = (height - 1) / 2
    top = np.floor(half * (1 - high))
    bottom = np.ceil(half * (1 - low))
    rows = np.arange(height)[:, None]
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _rgb(WAVE_BACKGROUND)
    image[round(half)] = _rgb(CENTRE_LINE)
    image[(rows >= top) & (rows <= bottom)] = _rgb(WAVE_COLOUR)
    return image


def waveform_image(data: np.ndarray, width: int, height: int) -> QImage:
    """A compact waveform thumbnail (width × height, RGB) of a (samples,) or (samples, channels) float sound."""
    if width <= 0 or height <= 0:
        raise ValueError(f"a waveform image needs a positive size, got {width}×{height}")
    return qimage_from_array(_waveform_rgb(mix_to_mono(as_sound(data, 1)), width, height))


def _mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log1p(np.asarray(hz) / 700.0)


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(mel / 1127.0)


@dataclass(frozen=True)
class Spectrogram:
    """A colour-mapped spectrogram: `rgb` is (rows, frames, 3) uint8, mel-spaced rows with low frequencies at the
    bottom, 0 dB (a full-scale sine) at the top of the colour map and FLOOR_DB at the bottom."""

    rgb: np.ndarray
    sample_rate: int
    n_fft: int
    hop: int

    def height_fraction(self, frequency: float) -> float:
        """Where `frequency` (Hz) is drawn, as a fraction of the height from the top."""
        nyquist = self.sample_rate / 2
        return 1.0 - float(_mel(min(max(frequency, 0.0), nyquist)) / _mel(nyquist))


def compute_spectrogram(mono: np.ndarray, sample_rate: int, max_columns: int = MAX_COLUMNS,
                        rows: int = SPECTROGRAM_ROWS) -> Spectrogram:
    """Hann STFT (1024 / hop 256, smaller FFT for short sounds, larger hop to keep at most `max_columns` frames),
    dB magnitude floored at FLOOR_DB, max-pooled onto mel-spaced rows and coloured with MAGMA."""
    n = len(mono)
    n_fft = min(N_FFT, max(MIN_FFT, 1 << (n - 1).bit_length()))
    hop = max(n_fft // 4, math.ceil(n / max(1, max_columns - 1)))
    padded = np.pad(mono.astype(np.float32, copy=False), n_fft // 2)  # frame k is centred on sample k * hop
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))  # (frames, bins)
    bins = magnitude.shape[1]
    bin_hz = sample_rate / n_fft
    edges = _hz(np.linspace(0.0, _mel(sample_rate / 2), rows + 1))
    starts = np.minimum(np.ceil(edges[:-1] / bin_hz).astype(np.int64), bins - 1)
    pooled = np.maximum.reduceat(magnitude, starts, axis=1)  # the loudest bin whose centre lies in each row
    narrow = np.append(starts[1:] <= starts[:-1], False)  # rows thinner than a bin: the bin nearest their centre
    nearest = np.minimum(np.rint((edges[:-1] + edges[1:]) / 2 / bin_hz).astype(np.int64), bins - 1)
    pooled[:, narrow] = magnitude[:, nearest[narrow]]
    full_scale = window.sum() / 2  # a full-scale sine's peak bin
    db = 20 * np.log10(np.maximum(pooled / full_scale, 10 ** (FLOOR_DB / 20)))
    level = np.clip((db - FLOOR_DB) * (255 / -FLOOR_DB), 0, 255).astype(np.uint8)
    return Spectrogram(MAGMA[level.T[::-1]], sample_rate, n_fft, hop)


def pcm_bytes(sound: np.ndarray, sample_format: object) -> bytes:
    """Interleaved native-endian PCM of a (samples, channels) float32 sound in [-1, 1]: Int16 or Float."""
    if sample_format == QAudioFormat.SampleFormat.Int16:
        return np.rint(sound * 32767).astype(np.int16).tobytes()
    return sound.tobytes()


def _channel_text(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} ch")


def _enum_name(value: object) -> str:
    """An audio state / error name: sinks emit QAudio or QtAudio enums, which do not compare equal to each other."""
    return getattr(value, "name", str(value))


def _nice_step(span: float, count: float) -> float:
    """The 1-2-5 step that cuts `span` into at most about `count` parts."""
    raw = span / max(count, 1.0)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


# -- playback source -----------------------------------------------------------------------------------------------

class _PcmSource(QIODevice):
    """Read-only PCM for a QAudioSink in pull mode; while `loop` is on, reading wraps to the start (gapless)."""

    def __init__(self, pcm: bytes, loop: bool, parent: QObject) -> None:
        super().__init__(parent)
        self._pcm = pcm
        self._pos = 0
        self.loop = loop
        self.ran_out = False  # a read hit the end with loop off
        self.open(QIODevice.OpenModeFlag.ReadOnly | QIODevice.OpenModeFlag.Unbuffered)

    def rewind(self) -> None:
        self._pos = 0
        self.ran_out = False

    def isSequential(self) -> bool:
        return True

    def bytesAvailable(self) -> int:
        return (len(self._pcm) if self.loop else len(self._pcm) - self._pos) + super().bytesAvailable()

    def readData(self, maxlen: int) -> bytes:
        chunks = []
        while maxlen > 0:
            if self._pos >= len(self._pcm):
                if not self.loop:
                    self.ran_out = True
                    break
                self._pos = 0
            chunk = self._pcm[self._pos:self._pos + maxlen]
            chunks.append(chunk)
            self._pos += len(chunk)
            maxlen -= len(chunk)
        return b"".join(chunks)

    def writeData(self, data: bytes | bytearray | memoryview, size: int, /) -> int:
        return -1


# -- the drawing -----------------------------------------------------------------------------------------------

class _SoundPlot(QWidget):
    """Waveform above spectrogram above a time axis, a playhead, the placeholder and the progress bar."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._mono: np.ndarray | None = None
        self._duration = 0.0
        self._spectrogram_image: QImage | None = None
        self._wave_image: QImage | None = None
        self._spectrogram_pixmap: QPixmap | None = None
        self._frequency_labels: list[tuple[float, str]] = []
        self._playhead: float | None = None
        self._placeholder = PLACEHOLDER
        self._progress: tuple[int, int, str] | None = None

    def set_sound(self, mono: np.ndarray, sample_rate: int, spectrogram: Spectrogram) -> None:
        self._mono = mono
        self._duration = len(mono) / sample_rate
        self._spectrogram_image = qimage_from_array(spectrogram.rgb)
        self._frequency_labels = [(spectrogram.height_fraction(hz), text) for hz, text in FREQUENCY_TICKS
                                  if hz < sample_rate / 2]
        self._render_layers()
        self.update()

    def clear(self) -> None:
        self._mono = self._spectrogram_image = None
        self._wave_image = self._spectrogram_pixmap = None
        self._playhead = None
        self.update()

    def set_playhead(self, seconds: float | None) -> None:
        if seconds != self._playhead:
            self._playhead = seconds
            self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        if self._mono is None:
            self.update()

    def set_progress(self, progress: tuple[int, int, str] | None) -> None:
        if progress != self._progress:
            self._progress = progress
            self.update()

    # -- geometry --------------------------------------------------------------------------------------------------
    def waveform_rect(self) -> QRect:
        inner = self.rect().adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN - AXIS_HEIGHT)
        return QRect(inner.left(), inner.top(), inner.width(), max(1, round((inner.height() - GAP) * WAVE_SHARE)))

    def spectrogram_rect(self) -> QRect:
        inner = self.rect().adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN - AXIS_HEIGHT)
        top = self.waveform_rect().bottom() + 1 + GAP
        return QRect(inner.left(), top, inner.width(), max(1, inner.bottom() + 1 - top))

    def _render_layers(self) -> None:
        """Rasterise the waveform and scale the spectrogram for the current size, in device pixels."""
        if self._mono is None or self._spectrogram_image is None:
            return
        ratio = self.devicePixelRatioF()
        wave, spectrum = self.waveform_rect(), self.spectrogram_rect()
        self._wave_image = qimage_from_array(_waveform_rgb(self._mono, max(1, round(wave.width() * ratio)),
                                                           max(1, round(wave.height() * ratio))))
        self._wave_image.setDevicePixelRatio(ratio)
        size = QSize(max(1, round(spectrum.width() * ratio)), max(1, round(spectrum.height() * ratio)))
        self._spectrogram_pixmap = QPixmap.fromImage(self._spectrogram_image.scaled(
            size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation))
        self._spectrogram_pixmap.setDevicePixelRatio(ratio)

    # -- events ----------------------------------------------------------------------------------------------------
    def minimumSizeHint(self) -> QSize:
        return QSize(160, 120)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._render_layers()
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), BACKGROUND)
        if self._wave_image is None or self._spectrogram_pixmap is None:
            if self._placeholder:
                painter.setPen(PLACEHOLDER_TEXT)
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                                 self._placeholder)
        else:
            wave, spectrum = self.waveform_rect(), self.spectrogram_rect()
            painter.drawImage(wave.topLeft(), self._wave_image)
            painter.drawPixmap(spectrum.topLeft(), self._spectrogram_pixmap)
            self._paint_frequency_labels(painter, spectrum)
            self._paint_time_axis(painter, spectrum)
            if self._playhead is not None:
                x = spectrum.left() + spectrum.width() * self._playhead / self._duration
                painter.setPen(PLAYHEAD)
                painter.drawLine(QPointF(x, wave.top()), QPointF(x, spectrum.bottom() + 1))
        if self._progress is not None:
            paint_progress(painter, self.rect(), self._progress)
        painter.end()

    def _paint_frequency_labels(self, painter: QPainter, spectrum: QRect) -> None:
        metrics = painter.fontMetrics()
        for fraction, text in self._frequency_labels:
            y = spectrum.top() + fraction * spectrum.height()
            box = QRectF(spectrum.left() + 2, y - metrics.height() / 2, metrics.horizontalAdvance(text) + 6,
                         metrics.height())
            if box.top() < spectrum.top() or box.bottom() > spectrum.bottom() + 1:
                continue
            painter.fillRect(box, LABEL_BACKDROP)
            painter.setPen(AXIS_TEXT)
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_time_axis(self, painter: QPainter, spectrum: QRect) -> None:
        metrics = painter.fontMetrics()
        step = _nice_step(self._duration, spectrum.width() / max(60, metrics.horizontalAdvance("00.000 s") + 12))
        decimals = max(0, -math.floor(math.log10(step)))
        top = spectrum.bottom() + 1
        painter.setPen(AXIS_TEXT)
        for index in range(int(self._duration / step + 1e-9) + 1):
            seconds = index * step
            x = spectrum.left() + spectrum.width() * seconds / self._duration
            painter.drawLine(round(x), top, round(x), top + 3)
            text = f"{seconds:.{decimals}f} s"
            width = metrics.horizontalAdvance(text)
            left = min(max(x - width / 2, spectrum.left()), spectrum.right() + 1 - width)
            painter.drawText(QRectF(left, top + 3, width, AXIS_HEIGHT - 3), Qt.AlignmentFlag.AlignCenter, text)


# -- the view ------------------------------------------------------------------------------------------------------

class AudioSink(Protocol):
    """The QAudioSink calls the view makes; a QAudioSink has them, and so does a test's stand-in QObject."""

    @property
    def stateChanged(self) -> SignalInstance: ...

    def start(self, device: QIODevice, /) -> None: ...

    def stop(self) -> None: ...

    def state(self) -> object: ...

    def error(self) -> object: ...

    def processedUSecs(self) -> int: ...

    def deleteLater(self) -> None: ...


class AudioView(QWidget):
    """The central preview for sound outputs: waveform, spectrogram, Play/Stop (also Space), Loop, time and status.

    `sink_factory(QAudioFormat) -> sink` replaces the default output device (tests): the sink is a QObject with the
    QAudioSink calls used here (start(QIODevice), stop(), state(), error(), processedUSecs(), stateChanged)."""

    playing_changed = Signal(bool)
    loop_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None, sink_factory: Callable[[QAudioFormat], AudioSink] | None = None
                 ) -> None:
        super().__init__(parent)
        self.setObjectName("audioView")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._sink_factory = sink_factory
        self._sound: np.ndarray | None = None  # (samples, channels) float32 in [-1, 1]
        self._sample_rate = 0
        self._spectrogram: Spectrogram | None = None
        self._sink: AudioSink | None = None
        self._sink_format: QAudioFormat | None = None
        self._source: _PcmSource | None = None
        self._playing = False
        self._output_problem = ""  # why playback is off; "" when it is on

        self._plot = _SoundPlot(self)
        self._plot.setObjectName("audioPlot")
        self._plot.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._plot.setFocusProxy(self)
        self._play_button = QPushButton()
        self._play_button.setObjectName("audioPlayButton")
        self._loop_box = QCheckBox("Loop")
        self._loop_box.setObjectName("audioLoopBox")
        self._time_label = QLabel()
        self._time_label.setObjectName("audioTime")
        self._time_label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._format_label = QLabel()
        self._format_label.setObjectName("audioFormat")
        self._format_label.setMinimumWidth(1)  # shown in full when there is room, clipped in a narrow window
        self._status_label = QLabel()
        self._status_label.setObjectName("audioStatus")
        self._status_label.setStyleSheet(f"color: {PLACEHOLDER_TEXT.name()};")
        self._status_label.setWordWrap(True)
        # a long message wraps or is cut, never widening the window (the full text is its tooltip)
        self._status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._status_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)

        transport = QHBoxLayout()
        transport.setContentsMargins(MARGIN, 2, MARGIN, 4)
        transport.addWidget(self._play_button)
        transport.addWidget(self._loop_box)
        transport.addSpacing(8)
        transport.addWidget(self._time_label)
        transport.addSpacing(8)
        transport.addWidget(self._format_label)
        transport.addWidget(self._status_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        # the view's minimum is its minimumSizeHint, not the transport row's width (a hidden view in the window's
        # preview stack must not widen the window)
        layout.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        layout.addWidget(self._plot, 1)
        layout.addLayout(transport)

        self._play_button.clicked.connect(self.toggle_playback)
        self._loop_box.toggled.connect(self._on_loop_toggled)
        self._timer.timeout.connect(self._on_tick)
        if not MULTIMEDIA_ERROR and sink_factory is None:
            self._devices = QMediaDevices(self)
            self._devices.audioOutputsChanged.connect(self._on_outputs_changed)
        self._on_outputs_changed()
        self._update_play_button()
        self._update_labels(0.0)

    # -- sound -----------------------------------------------------------------------------------------------------
    def set_sound(self, data: np.ndarray, sample_rate: int) -> None:
        """Show a float sound in [-1, 1], (samples,) or (samples, channels). Playing stops, or restarts with this
        sound when looping."""
        sound = as_sound(data, sample_rate)
        mono = mix_to_mono(sound)
        spectrogram = compute_spectrogram(mono, int(sample_rate))
        restart = self._playing and self.loop
        if self._playing and not restart:
            self.stop()
        self._sound, self._sample_rate, self._spectrogram = sound, int(sample_rate), spectrogram
        self._plot.set_sound(mono, self._sample_rate, spectrogram)
        self._update_labels(0.0)
        self._update_controls()
        if restart:
            self.play()

    def clear(self) -> None:
        self.stop()
        self._sound, self._sample_rate, self._spectrogram = None, 0, None
        self._plot.clear()
        self._update_labels(0.0)
        self._update_controls()

    def sound(self) -> np.ndarray | None:
        """The current sound, (samples, channels) float32."""
        return self._sound

    def spectrogram(self) -> Spectrogram | None:
        return self._spectrogram

    def set_placeholder(self, text: str) -> None:
        self._plot.set_placeholder(text)

    def set_progress(self, step: int, total: int, message: str = "") -> None:
        self._plot.set_progress((step, total, message))

    def clear_progress(self) -> None:
        self._plot.set_progress(None)

    def waveform_rect(self) -> QRect:
        """Where the waveform is drawn, in this widget's coordinates."""
        return self._plot.waveform_rect().translated(self._plot.pos())

    def spectrogram_rect(self) -> QRect:
        return self._plot.spectrogram_rect().translated(self._plot.pos())

    # -- transport -------------------------------------------------------------------------------------------------
    @property
    def playback_available(self) -> bool:
        return not self._output_problem

    def status_text(self) -> str:
        return self._status_label.text()

    @property
    def loop(self) -> bool:
        return self._loop_box.isChecked()

    def set_loop(self, loop: bool) -> None:
        self._loop_box.setChecked(loop)

    def is_playing(self) -> bool:
        return self._playing

    def toggle_playback(self) -> None:
        if self._playing:
            self.stop()
        else:
            self.play()

    def play(self) -> None:
        """Play the sound from the start; any problem becomes a message in the status label."""
        if self._sound is None or not self.playback_available:
            return
        audio_format = self._playback_format(self._sound)
        if audio_format is None:
            return
        try:  # the sink is a platform backend (or a test's stand-in): show what it refuses, never raise
            sink = self._sink_for(audio_format)
            sink.stop()
            source = _PcmSource(pcm_bytes(self._sound, audio_format.sampleFormat()), self.loop, self)
            self._replace_source(source)
            self._show_status("")
            self._set_playing(True)
            self._start_sink(sink, source)
        except Exception as error:  # noqa: BLE001
            self._stop_with_message(f"Playback failed: {error}")

    def stop(self) -> None:
        if self._sink is not None:
            self._sink.stop()
        self._set_playing(False)

    def _playback_format(self, sound: np.ndarray) -> QAudioFormat | None:
        """Float, else Int16, at the sound's rate and channel count, as the output takes it; None (with a message)
        when it takes neither."""
        rate, channels = self._sample_rate, sound.shape[1]
        device = None if self._sink_factory is not None else QMediaDevices.defaultAudioOutput()
        for sample_format in (QAudioFormat.SampleFormat.Float, QAudioFormat.SampleFormat.Int16):
            audio_format = QAudioFormat()
            audio_format.setSampleRate(rate)
            audio_format.setChannelCount(channels)
            audio_format.setSampleFormat(sample_format)
            if device is None or device.isFormatSupported(audio_format):
                return audio_format
        assert device is not None  # without a device to ask, the first format was returned
        self._show_status(f"{device.description() or 'The output device'} cannot play {rate} Hz "
                          f"{_channel_text(channels)} sound")
        return None

    def _sink_for(self, audio_format: QAudioFormat) -> AudioSink:
        if self._sink is None or self._sink_format != audio_format:
            self._release_sink()
            sink = (self._sink_factory or self._default_sink)(audio_format)
            sink.stateChanged.connect(self._on_sink_state_changed)
            self._sink, self._sink_format = sink, audio_format
        return self._sink

    def _default_sink(self, audio_format: QAudioFormat) -> AudioSink:
        return QAudioSink(QMediaDevices.defaultAudioOutput(), audio_format, self)

    def _release_sink(self) -> None:
        if self._sink is None:
            return
        sink, self._sink, self._sink_format = self._sink, None, None
        sink.stateChanged.disconnect(self._on_sink_state_changed)
        sink.stop()
        sink.deleteLater()

    def _replace_source(self, source: _PcmSource | None) -> None:
        if self._source is not None:
            self._source.close()
            self._source.deleteLater()
        self._source = source

    def _set_playing(self, playing: bool) -> None:
        if playing == self._playing:
            return
        self._playing = playing
        self._update_play_button()
        if playing:
            self._timer.start()
        else:
            self._timer.stop()
            self._plot.set_playhead(None)
            self._update_labels(0.0)
        self.playing_changed.emit(playing)

    def _start_sink(self, sink: AudioSink, source: _PcmSource) -> None:
        sink.start(source)
        if _enum_name(sink.state()) == "StoppedState":  # a device that cannot open may not signal it
            self._stop_on_sink_error(sink)

    def _stop_on_sink_error(self, sink: AudioSink) -> None:
        error = _enum_name(sink.error())
        if error != "NoError":
            self._stop_with_message(f"Playback stopped: {_SINK_ERRORS.get(error, error)}")

    def _stop_with_message(self, message: str) -> None:
        self.stop()
        self._show_status(message)

    def _show_status(self, message: str) -> None:
        """Show `message`, or with none the standing reason playback is off (if any)."""
        self._status_label.setText(message or self._output_problem)
        self._status_label.setToolTip(self._status_label.text())

    def _update_controls(self) -> None:
        self._play_button.setEnabled(self.playback_available and self._sound is not None)
        self._play_button.setToolTip(self._output_problem or "Play or stop the sound (Space)")

    def _update_play_button(self) -> None:
        icon = QStyle.StandardPixmap.SP_MediaStop if self._playing else QStyle.StandardPixmap.SP_MediaPlay
        self._play_button.setIcon(self.style().standardIcon(icon))
        self._play_button.setText("Stop" if self._playing else "Play")

    def _update_labels(self, seconds: float) -> None:
        duration = len(self._sound) / self._sample_rate if self._sound is not None else 0.0
        self._time_label.setText(f"{seconds:.2f} / {duration:.2f} s")
        self._format_label.setText(f"{self._sample_rate} Hz · {_channel_text(self._sound.shape[1])}"
                                   if self._sound is not None else "")

    # -- handlers --------------------------------------------------------------------------------------------------
    @Slot(object)
    def _on_sink_state_changed(self, state: object) -> None:
        if not self._playing or self._sink is None:
            return
        name = _enum_name(state)
        if name == "StoppedState":
            self._stop_on_sink_error(self._sink)
        elif name == "IdleState" and self._source is not None and self._source.ran_out:
            if self.loop:  # Loop ticked after the last pass was read: start over, outside the sink's signal
                QTimer.singleShot(0, self, self._on_loop_restart)
            else:
                self.stop()

    @Slot()
    def _on_loop_restart(self) -> None:
        if self._playing and self._sink is not None and self._source is not None:
            self._sink.stop()
            self._source.rewind()
            self._start_sink(self._sink, self._source)

    @Slot(bool)
    def _on_loop_toggled(self, loop: bool) -> None:
        if self._source is not None:
            self._source.loop = loop
        self.loop_changed.emit(loop)

    @Slot()
    def _on_tick(self) -> None:
        if not self._playing or self._sink is None or self._sound is None:
            return
        duration = len(self._sound) / self._sample_rate
        seconds = (self._sink.processedUSecs() / 1e6) % duration  # the sink counts on across gapless loops
        self._plot.set_playhead(seconds)
        self._update_labels(seconds)

    @Slot()
    def _on_outputs_changed(self) -> None:
        if MULTIMEDIA_ERROR:
            self._output_problem = f"Playback is off: QtMultimedia could not be loaded ({MULTIMEDIA_ERROR})"
        elif self._sink_factory is None and not QMediaDevices.audioOutputs():
            self._output_problem = NO_DEVICE
        else:
            self._output_problem = ""
        if self._output_problem:
            self.stop()
        if not self._playing and self._sink_factory is None:
            self._release_sink()  # the next play opens the (maybe new) default device
        self._show_status("")
        self._update_controls()

    # -- events ----------------------------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(640, 420)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.toggle_playback()
            event.accept()
            return
        super().keyPressEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        if not event.spontaneous():  # hidden by the app (another output kind, window closed), not minimised
            self.stop()
        super().hideEvent(event)
