"""The audio preview: waveform and spectrogram drawing, the transport with a hand-driven fake sink, no-device mode."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, Qt, Signal  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QCheckBox, QLabel, QPushButton, QWidget  # noqa: E402

from studio.ui import audio_view as audio_module  # noqa: E402
from studio.ui.audio_view import (MAX_COLUMNS, NO_DEVICE, WAVE_BACKGROUND, WAVE_COLOUR, AudioView,  # noqa: E402
                                  compute_spectrogram, pcm_bytes, waveform_image)
from studio.ui.canvas import PROGRESS_FILL  # noqa: E402

RATE = 22050
W, H = 640, 420

def sine(frequency: float, seconds: float = 1.0, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


class FakeSink(QObject):
    """A QAudioSink stand-in driven by hand: `pull` reads like a device would, `fail` reports an error."""

    stateChanged = Signal(object)

    def __init__(self, audio_format) -> None:
        super().__init__()
        from PySide6.QtMultimedia import QAudio

        self.QAudio = QAudio
        self.audio_format = audio_format
        self.device = None
        self.starts = self.stops = 0
        self.processed_us = 0
        self.cannot_open = False  # like a real sink on a missing device: start() fails without a signal
        self._state = QAudio.State.StoppedState
        self._error = QAudio.Error.NoError

    def start(self, device) -> None:
        self.device, self.processed_us, self._error = device, 0, self.QAudio.Error.NoError
        self.starts += 1
        if self.cannot_open:
            self._error = self.QAudio.Error.OpenError
        else:
            self._set(self.QAudio.State.ActiveState)

    def stop(self) -> None:
        self.stops += 1
        self._error = self.QAudio.Error.NoError
        self._set(self.QAudio.State.StoppedState)

    def state(self):
        return self._state

    def error(self):
        return self._error

    def processedUSecs(self) -> int:
        return self.processed_us

    def pull(self, size: int) -> bytes:
        """Read `size` bytes; a short read means the data ran out and the sink goes idle."""
        data = bytes(self.device.read(size))
        if len(data) < size:
            self._set(self.QAudio.State.IdleState)
        return data

    def fail(self, error) -> None:
        self._error = error
        self._set(self.QAudio.State.StoppedState)

    def _set(self, state) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(state)


def show(qtbot, view: AudioView) -> AudioView:
    qtbot.addWidget(view)
    view.resize(W, H)
    view.show()
    qtbot.waitExposed(view)
    QApplication.processEvents()  # settle the layout so the plot has its final size
    return view


@pytest.fixture
def view(qtbot) -> AudioView:
    """The real device detection (none on this machine)."""
    return show(qtbot, AudioView())


@pytest.fixture
def sinks() -> list[FakeSink]:
    return []


@pytest.fixture
def fake_view(qtbot, sinks) -> AudioView:
    if audio_module.MULTIMEDIA_ERROR:
        pytest.skip("QtMultimedia does not import")

    def factory(audio_format) -> FakeSink:
        sinks.append(FakeSink(audio_format))
        return sinks[-1]

    return show(qtbot, AudioView(sink_factory=factory))


def pixels(widget: QWidget) -> np.ndarray:
    """The painted widget as an (H, W, 3) uint8 array."""
    QApplication.processEvents()
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes()).reshape(image.height(), -1)
    return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def region(array: np.ndarray, rect) -> np.ndarray:
    return array[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1]


def envelope_height(view: AudioView) -> int:
    """How many rows of the waveform panel hold waveform-coloured pixels, from the highest to the lowest."""
    wave = region(pixels(view), view.waveform_rect())
    rows = np.flatnonzero((wave == WAVE_COLOUR.getRgb()[:3]).all(axis=2).any(axis=1))
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


def brightest_row(view: AudioView) -> int:
    """The spectrogram panel's brightest row (middle half of the columns, away from labels and edge clicks)."""
    spectrum = region(pixels(view), view.spectrogram_rect()).astype(np.float64)
    width = spectrum.shape[1]
    luminance = spectrum[:, width // 4:3 * width // 4] @ np.array([0.299, 0.587, 0.114])
    return int(luminance.mean(axis=1).argmax())


def play_button(view: AudioView) -> QPushButton:
    return view.findChild(QPushButton, "audioPlayButton")


def label(view: AudioView, name: str) -> str:
    return view.findChild(QLabel, name).text()


# -- no device / no QtMultimedia -----------------------------------------------------------------------------------

def test_without_an_output_device_playback_is_off_but_drawing_works(view):
    if pytest.importorskip("PySide6.QtMultimedia").QMediaDevices.audioOutputs():
        pytest.skip("this machine has an audio output")
    view.set_sound(sine(440), RATE)
    assert not view.playback_available
    assert view.status_text() == NO_DEVICE
    assert not play_button(view).isEnabled()
    view.play()
    QTest.keyClick(view, Qt.Key.Key_Space)
    assert not view.is_playing()
    assert envelope_height(view) > 0
    assert label(view, "audioTime") == "0.00 / 1.00 s"
    assert label(view, "audioFormat") == "22050 Hz · mono"


def test_without_qtmultimedia_the_reason_is_shown(qtbot, monkeypatch):
    monkeypatch.setattr(audio_module, "MULTIMEDIA_ERROR", "libpulse.so.0: cannot open shared object file")
    view = show(qtbot, AudioView())
    view.set_sound(sine(440), RATE)
    assert not view.playback_available and "libpulse" in view.status_text()
    assert not play_button(view).isEnabled() and envelope_height(view) > 0


# -- drawing -------------------------------------------------------------------------------------------------------

def test_placeholder_until_a_sound_and_after_clear(view):
    assert envelope_height(view) == 0
    plot = view.findChild(QWidget, "audioPlot")
    empty = pixels(plot)
    view.set_placeholder("Pick a sound model")
    assert not np.array_equal(pixels(plot), empty)
    view.set_sound(sine(440), RATE)
    view.clear()
    assert view.sound() is None and view.spectrogram() is None
    assert envelope_height(view) == 0 and not play_button(view).isEnabled()
    assert label(view, "audioTime") == "0.00 / 0.00 s"


def test_louder_sound_draws_a_taller_envelope(view):
    view.set_sound(sine(220, amplitude=0.2), RATE)
    quiet = envelope_height(view)
    view.set_sound(sine(220, amplitude=0.9), RATE)
    loud = envelope_height(view)
    panel = view.waveform_rect().height()
    assert quiet > 0 and loud > 3 * quiet
    assert abs(quiet / panel - 0.2) < 0.05 and abs(loud / panel - 0.9) < 0.05


@pytest.mark.parametrize("frequency", [440, 4000])
def test_spectrogram_is_brightest_at_the_tone(view, frequency):
    view.set_sound(sine(frequency), RATE)
    height = view.spectrogram_rect().height()
    expected = view.spectrogram().height_fraction(frequency) * height
    assert abs(brightest_row(view) - expected) <= max(3, 0.03 * height)


def test_higher_tone_is_drawn_higher_up(view):
    view.set_sound(sine(440), RATE)
    low = brightest_row(view)
    view.set_sound(sine(4000), RATE)
    assert brightest_row(view) < low - 0.3 * view.spectrogram_rect().height()


def test_spectrogram_levels_are_relative_to_full_scale():
    loud = compute_spectrogram(sine(1000, amplitude=1.0), RATE).rgb.astype(int).sum(axis=2)
    quiet = compute_spectrogram(sine(1000, amplitude=0.01), RATE).rgb.astype(int).sum(axis=2)  # -40 dB
    silent = compute_spectrogram(np.zeros(RATE, np.float32), RATE).rgb
    assert loud.max() > quiet.max() > silent.astype(int).sum(axis=2).max()
    assert (silent == silent[0, 0]).all()  # everything at the floor colour


def test_stereo_sound_is_mixed_for_display(view):
    left = sine(440, amplitude=0.8)
    view.set_sound(np.stack([left, np.zeros_like(left)], axis=1), RATE)
    assert view.sound().shape == (RATE, 2)
    assert label(view, "audioFormat") == "22050 Hz · stereo"
    assert abs(envelope_height(view) / view.waveform_rect().height() - 0.4) < 0.05  # the mono mix


def test_very_short_sound(view):
    view.set_sound(np.linspace(-1, 1, 10, dtype=np.float32), RATE)
    assert envelope_height(view) > 0
    assert view.spectrogram().rgb.shape[1] >= 1
    assert label(view, "audioTime") == "0.00 / 0.00 s"


def test_long_sound_has_a_bounded_spectrogram(view):
    view.set_sound(np.random.default_rng(0).uniform(-0.5, 0.5, 60 * RATE).astype(np.float32), RATE)
    spectrogram = view.spectrogram()
    assert spectrogram.rgb.shape[1] <= MAX_COLUMNS and spectrogram.hop > spectrogram.n_fft // 4
    assert label(view, "audioTime") == "0.00 / 60.00 s" and envelope_height(view) > 0


@pytest.mark.parametrize("bad", [np.zeros(10, np.int16), np.zeros((2, 3, 4), np.float32), np.zeros(0, np.float32),
                                 np.zeros((2, RATE), np.float32), [0.0, 0.1]],
                         ids=["int", "3d", "empty", "channels-first", "list"])
def test_bad_sounds_are_rejected_and_the_view_keeps_its_sound(view, bad):
    view.set_sound(sine(440), RATE)
    with pytest.raises(ValueError):
        view.set_sound(bad, RATE)
    with pytest.raises(ValueError):
        view.set_sound(sine(440), 0)
    assert view.sound().shape == (RATE, 1)


def test_nan_and_out_of_range_samples_are_cleaned(view):
    view.set_sound(np.array([np.nan, 3.0, -3.0, 0.5], np.float32), RATE)
    assert view.sound()[:, 0].tolist() == [0.0, 1.0, -1.0, 0.5]


def test_progress_and_placeholder_show(view):
    plot = view.findChild(QWidget, "audioPlot")
    view.set_progress(3, 10, "Decoding")
    bottom = pixels(plot)[plot.height() - 1]
    assert (bottom[: plot.width() // 4] == PROGRESS_FILL.getRgb()[:3]).all()
    assert not (bottom[plot.width() // 2:] == PROGRESS_FILL.getRgb()[:3]).all(axis=1).any()
    view.set_sound(sine(440), RATE)
    view.set_progress(10, 10)
    assert (pixels(plot)[plot.height() - 1] == PROGRESS_FILL.getRgb()[:3]).all()
    view.clear_progress()
    assert not (pixels(plot)[plot.height() - 1] == PROGRESS_FILL.getRgb()[:3]).all(axis=1).any()
    view.set_progress(0, 0)  # an unknown total must not divide by zero
    pixels(plot)


def test_pcm_bytes_in_both_sample_formats():
    QAudioFormat = pytest.importorskip("PySide6.QtMultimedia").QAudioFormat
    sound = np.array([[0.0, 1.0], [-1.0, 0.5]], np.float32)
    assert np.frombuffer(pcm_bytes(sound, QAudioFormat.SampleFormat.Int16), np.int16).tolist() == [0, 32767, -32767,
                                                                                                    16384]
    assert pcm_bytes(sound, QAudioFormat.SampleFormat.Float) == sound.tobytes()


def test_waveform_image_thumbnail():
    image = waveform_image(np.stack([sine(220, amplitude=0.9)] * 2, axis=1), 96, 32)
    assert (image.width(), image.height()) == (96, 32)
    assert all(image.pixelColor(x, 16) == WAVE_COLOUR for x in range(96))  # the centre row: all waveform
    assert all(image.pixelColor(x, 0) == WAVE_BACKGROUND for x in range(96))  # 0.9 leaves the top row free
    assert waveform_image(np.zeros(3, np.float32), 50, 10).width() == 50
    with pytest.raises(ValueError):
        waveform_image(sine(220), 0, 10)


# -- transport with a fake sink ------------------------------------------------------------------------------------

def test_loop_property_and_signal(fake_view, qtbot):
    with qtbot.waitSignal(fake_view.loop_changed) as blocker:
        fake_view.set_loop(True)
    assert blocker.args == [True] and fake_view.loop
    with qtbot.waitSignal(fake_view.loop_changed) as blocker:
        fake_view.findChild(QCheckBox, "audioLoopBox").click()
    assert blocker.args == [False] and not fake_view.loop


def test_play_starts_the_sink_with_the_sound_format(fake_view, sinks, qtbot):
    from PySide6.QtMultimedia import QAudioFormat  # fake_view skips without QtMultimedia

    sound = np.stack([sine(440, 0.1), sine(660, 0.1)], axis=1)
    fake_view.set_sound(sound, RATE)
    assert fake_view.playback_available and fake_view.status_text() == ""
    assert play_button(fake_view).isEnabled()
    with qtbot.waitSignal(fake_view.playing_changed) as blocker:
        play_button(fake_view).click()
    assert blocker.args == [True] and fake_view.is_playing() and play_button(fake_view).text() == "Stop"
    (sink,) = sinks
    assert sink.starts == 1
    assert sink.audio_format.sampleRate() == RATE and sink.audio_format.channelCount() == 2
    assert sink.audio_format.sampleFormat() == QAudioFormat.SampleFormat.Float
    assert sink.pull(sound.nbytes) == sound.tobytes()  # interleaved frames


def test_stop_stops_the_sink(fake_view, sinks, qtbot):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.play()
    with qtbot.waitSignal(fake_view.playing_changed) as blocker:
        play_button(fake_view).click()
    assert blocker.args == [False] and not fake_view.is_playing()
    assert sinks[0].state() == sinks[0].QAudio.State.StoppedState and play_button(fake_view).text() == "Play"


def test_space_toggles_playback(fake_view):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.setFocus()
    QTest.keyClick(fake_view, Qt.Key.Key_Space)
    assert fake_view.is_playing()
    QTest.keyClick(fake_view, Qt.Key.Key_Space)
    assert not fake_view.is_playing()


def test_end_of_sound_without_loop_stops(fake_view, sinks, qtbot):
    sound = sine(440, 0.1)
    fake_view.set_sound(sound, RATE)
    fake_view.play()
    with qtbot.waitSignal(fake_view.playing_changed) as blocker:
        assert len(sinks[0].pull(sound.nbytes + 4096)) == sound.nbytes
    assert blocker.args == [False] and not fake_view.is_playing()


def test_loop_wraps_without_a_gap(fake_view, sinks):
    sound = sine(440, 0.1)
    fake_view.set_sound(sound, RATE)
    fake_view.set_loop(True)
    fake_view.play()
    data = sinks[0].pull(sound.nbytes * 5 // 2)
    assert data == (sound.tobytes() * 3)[:len(data)] and fake_view.is_playing()
    fake_view.set_loop(False)  # the pass being read is the last one
    assert len(sinks[0].pull(sound.nbytes)) == sound.nbytes // 2
    assert not fake_view.is_playing()


def test_loop_ticked_after_the_last_read_restarts(fake_view, sinks, qtbot):
    sound = sine(440, 0.1)
    fake_view.set_sound(sound, RATE)
    fake_view.play()
    sink = sinks[0]
    sink.device.read(sound.nbytes + 10)  # the device ran out ...
    fake_view.set_loop(True)  # ... then Loop is ticked before the sink reports idle
    sink._set(sink.QAudio.State.IdleState)
    qtbot.waitUntil(lambda: sink.starts == 2)
    assert fake_view.is_playing() and sink.pull(64) == sound.tobytes()[:64]


def test_set_sound_while_looping_restarts_with_the_new_sound(fake_view, sinks, qtbot):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.set_loop(True)
    fake_view.play()
    sinks[0].pull(1000)
    new = sine(880, 0.2)
    with qtbot.assertNotEmitted(fake_view.playing_changed):
        fake_view.set_sound(new, RATE)
    assert fake_view.is_playing() and sinks[0].starts == 2
    assert sinks[0].pull(new.nbytes) == new.tobytes()
    other_rate = sine(880, 0.2, rate=16000)
    fake_view.set_sound(other_rate, 16000)  # a new format needs a new sink
    assert len(sinks) == 2 and sinks[0].state() == sinks[0].QAudio.State.StoppedState
    assert sinks[1].audio_format.sampleRate() == 16000 and fake_view.is_playing()


def test_set_sound_while_playing_without_loop_stops(fake_view, sinks, qtbot):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.play()
    with qtbot.waitSignal(fake_view.playing_changed) as blocker:
        fake_view.set_sound(sine(880, 0.1), RATE)
    assert blocker.args == [False] and sinks[0].starts == 1


def test_playhead_follows_the_processed_time(fake_view, sinks, qtbot):
    fake_view.set_sound(sine(440, 1.0), RATE)
    fake_view.set_loop(True)
    fake_view.play()
    sinks[0].processed_us = 2_500_000  # two and a half passes of a 1 s loop
    qtbot.waitUntil(lambda: label(fake_view, "audioTime") == "0.50 / 1.00 s")
    wave = fake_view.waveform_rect()
    x = wave.left() + wave.width() // 2
    column = pixels(fake_view)[wave.top():wave.bottom() + 1, x - 1:x + 2]
    assert (column.min(axis=2) > 200).any(axis=1).all()  # a near-white line across the whole panel
    fake_view.stop()
    assert label(fake_view, "audioTime") == "0.00 / 1.00 s"


def test_a_sink_error_becomes_a_message(fake_view, sinks, qtbot):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.play()
    with qtbot.waitSignal(fake_view.playing_changed) as blocker:
        sinks[0].fail(sinks[0].QAudio.Error.OpenError)
    assert blocker.args == [False] and "could not be opened" in fake_view.status_text()
    fake_view.play()  # a new try clears the message
    assert fake_view.is_playing() and fake_view.status_text() == ""


def test_a_sink_that_cannot_open_quietly_becomes_a_message(fake_view, sinks):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.play()
    sinks[0].cannot_open = True
    fake_view.stop()
    fake_view.play()
    assert not fake_view.is_playing() and "could not be opened" in fake_view.status_text()


def test_a_sink_that_cannot_be_made_becomes_a_message(qtbot):
    if audio_module.MULTIMEDIA_ERROR:
        pytest.skip("QtMultimedia does not import")

    def refuse(audio_format):
        raise RuntimeError("device busy")

    view = show(qtbot, AudioView(sink_factory=refuse))
    view.set_sound(sine(440, 0.1), RATE)
    view.play()
    assert not view.is_playing() and view.status_text() == "Playback failed: device busy"


def test_hiding_the_view_stops_playback(fake_view):
    fake_view.set_sound(sine(440, 0.1), RATE)
    fake_view.play()
    fake_view.hide()
    assert not fake_view.is_playing()
