"""Audio export with the request inside, reading sounds back, and resampling."""

from __future__ import annotations

import ast
import os
import shutil
import struct
import wave

import numpy as np
import pytest
import soundfile as sf

import studio.export.audio as audio
from studio import __version__
from studio.errors import ExportError, RequestError
from studio.export import (AUDIO_FORMATS, parameters_text, read_any_request, read_audio_request, read_sound,
                           save_audio, save_image)
from studio.export.audio import AUDIO_SUFFIXES, WAV_SUBTYPES, resample
from studio.io.metadata import stored_audio_request_text
from studio.request import RenderRequest

SHA = "ab" * 32
RATE = 22050
# (suffix, subtype): every format and subtype save_audio writes
WRITTEN = [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"), (".flac", "PCM_16"), (".flac", "PCM_24"),
           (".ogg", "VORBIS"), (".mp3", "MPEG_LAYER_III")]
LOSSY = {".ogg", ".mp3"}
MP3_FRAME = 1152  # lossy decoders may return up to one MPEG frame more or less (here they return the exact length)


def sine(freq: float = 440.0, rate: int = RATE, seconds: float = 0.2, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def small_request() -> RenderRequest:
    """~500 bytes of JSON."""
    return RenderRequest(model_id="tiny-audio", seed=7, latent=tuple(i / 7 for i in range(8)),
                         params={"prompt": "a dog barking in the rain, Hé 音", "label": "dog", "steps": 20,
                                 "guidance": 3.0, "d0": 1.5, "d1": -0.25, "truncation": 0.7})


def big_request() -> RenderRequest:
    """~10 KB of JSON: a 512-number latent and several edits."""
    values = np.random.default_rng(0).standard_normal(512)
    conditions = {name: small_request().params[name] for name in ("prompt", "label", "steps", "guidance")}
    return small_request().with_(latent=tuple(float(v) for v in values),
                                 params={**conditions, **{f"d{i}": i / 3 for i in range(8)}})


def test_request_sizes():
    assert 300 < len(small_request().to_json()) < 800
    assert 9_000 < len(big_request().to_json()) < 12_000


# --- writing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, subtype", WRITTEN)
@pytest.mark.parametrize("channels", [1, 2])
def test_every_format_writes_and_reads_back(tmp_path, suffix, subtype, channels):
    path = tmp_path / f"out{suffix}"
    mono = sine()
    data = mono if channels == 1 else np.stack([mono, -0.5 * mono], axis=1)
    assert save_audio(path, data, RATE, small_request(), subtype=subtype) == path
    back, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == RATE and back.shape[1] == channels
    assert sf.info(path).subtype == subtype
    expected = data.reshape(len(mono), channels)
    if suffix in LOSSY:
        assert abs(len(back) - len(mono)) <= MP3_FRAME
        n = min(len(back), len(mono))
        for c in range(channels):
            assert np.corrcoef(back[:n, c], expected[:n, c])[0, 1] > 0.99
    else:
        assert len(back) == len(mono)
        tolerance = {"PCM_16": 1 / 2**15, "PCM_24": 1 / 2**23, "FLOAT": 0.0}[subtype]
        assert np.abs(back - expected).max() <= tolerance
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("suffix, subtype", [(".wav", None), (".flac", None), (".ogg", None), (".mp3", None),
                                             (".wav", "pcm_24")])
def test_default_and_named_subtypes(tmp_path, suffix, subtype):
    path = tmp_path / f"x{suffix}"
    save_audio(path, sine(), RATE, small_request(), subtype=subtype)
    default = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}[suffix]
    assert sf.info(path).subtype == (subtype.upper() if subtype else default)
    assert WAV_SUBTYPES == ("PCM_16", "PCM_24", "FLOAT")
    assert AUDIO_FORMATS == {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}


def test_samples_are_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    save_audio(path, sine(amp=1.5), RATE, small_request(), subtype="FLOAT")
    back, _ = sf.read(path)
    assert back.max() == 1.0 and back.min() == -1.0


@pytest.mark.parametrize("suffix, subtype", WRITTEN)
@pytest.mark.parametrize("make", [small_request, big_request])
def test_request_round_trips_exactly(tmp_path, suffix, subtype, make):
    path = tmp_path / f"x{suffix}"
    request = make()
    save_audio(path, sine(), RATE, request, model_name="Tiny", model_sha256=SHA, subtype=subtype)
    stored = request.with_(model_hash=SHA)  # the hash of the weights is recorded
    assert stored_audio_request_text(path) == stored.to_json()
    assert read_audio_request(path) == stored
    assert read_any_request(path) == stored


@pytest.mark.parametrize("suffix, subtype", WRITTEN)
def test_parameters_are_in_the_comment_players_show(tmp_path, suffix, subtype):
    path = tmp_path / f"x{suffix}"
    request = big_request()
    save_audio(path, sine(), RATE, request, model_name="Tiny", model_sha256=SHA, subtype=subtype)
    with sf.SoundFile(path) as f:  # what libsndfile, i.e. another program, reads from the tags
        comment, title, software = f.comment, f.title, f.software
    lines = comment.split("\n")
    assert lines[0] == "a dog barking in the rain, Hé 音"
    assert lines[1].startswith("Steps: 20, CFG scale: 3.0, Seed: 7, Model hash: abababab")
    assert ", Class: dog, Sample rate: 22050 Hz, Length: 0.20 s, " in lines[1]  # ours after A1111's
    assert "Model: Tiny" in lines[1] and "Latent: explicit" in lines[1]
    assert lines[1].endswith(f"Version: latent-studio {__version__}")
    assert comment == parameters_text(request.with_(model_hash=SHA), None, "Tiny", SHA, [
        ("Class", "dog"), ("Sample rate", "22050 Hz"), ("Length", "0.20 s")])
    assert title == request.param("prompt") and software.startswith(f"Latent Studio {__version__}")


def test_existing_request_hash_is_kept(tmp_path):
    path = tmp_path / "x.flac"
    save_audio(path, sine(), RATE, small_request().with_(model_hash="cd" * 32), model_sha256=SHA)
    assert read_audio_request(path).model_hash == "cd" * 32


def test_parameters_text_without_a_size():
    request = RenderRequest(model_id="m", seed=3, params={"prompt": "p"})
    assert parameters_text(request, None, extra=[("Length", "1.00 s")]) == (
        f"p\nSeed: 3, Model: m, Length: 1.00 s, Version: latent-studio {__version__}")
    assert "Seed: 3, Size: 4x2, Model: m" in parameters_text(request, (4, 2))


# --- the files stay standard ---------------------------------------------------------------------------------------


def riff_chunks(path) -> list[tuple[bytes, int]]:
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8  # the RIFF size covers the appended chunks
    chunks, pos = [], 12
    while pos < len(data):
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunks.append((data[pos:pos + 4], size))
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return chunks


@pytest.mark.parametrize("subtype, width", [("PCM_16", 2), ("PCM_24", 3)])
def test_wav_chunks_and_python_wave_reads_it(tmp_path, subtype, width):
    path = tmp_path / "x.wav"
    save_audio(path, sine(seconds=4411 / RATE), RATE, big_request(), subtype=subtype)  # odd-sized data chunk
    ids = [chunk_id for chunk_id, _ in riff_chunks(path)]
    assert ids[0] == b"fmt " and ids[-3:] == [b"data", b"LIST", b"lsrq"]
    with wave.open(str(path)) as w:  # another reader: skips the chunks it does not know
        assert (w.getnframes(), w.getsampwidth(), w.getframerate(), w.getnchannels()) == (4411, width, RATE, 1)


def test_mp3_tag_does_not_change_the_audio(tmp_path):
    plain, tagged = tmp_path / "plain.mp3", tmp_path / "tagged.mp3"
    sf.write(plain, sine(), RATE, format="MP3")
    save_audio(tagged, sine(), RATE, big_request())
    head = tagged.read_bytes()[:10]
    assert head[:5] == b"ID3\x04\x00"  # ID3v2.4 in front
    assert np.array_equal(sf.read(plain)[0], sf.read(tagged)[0])


def test_flac_metadata_blocks(tmp_path):
    path = tmp_path / "x.flac"
    save_audio(path, sine(), RATE, big_request())
    data = path.read_bytes()
    assert data[:4] == b"fLaC"
    pos, kinds = 4, []
    while True:
        header, size = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
        kinds.append((header & 0x7F, bool(header & 0x80)))
        pos += 4 + size
        if header & 0x80:
            break
    assert kinds[0] == (0, False) and (4, True) in kinds and sum(last for _, last in kinds) == 1
    assert data[pos:pos + 2] in (b"\xff\xf8", b"\xff\xf9")  # the first audio frame follows


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return table


def check_ogg_pages(path) -> list[int]:
    """Every page's CRC is right and the sequence numbers count up; returns the pages' header-type flags."""
    table, data, pos, seq, flags = _crc_table(), path.read_bytes(), 0, 0, []
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS"
        count = data[pos + 26]
        size = 27 + count + sum(data[pos + 27:pos + 27 + count])
        page = bytearray(data[pos:pos + size])
        assert struct.unpack("<I", page[18:22])[0] == seq
        stored = struct.unpack("<I", page[22:26])[0]
        page[22:26] = b"\0\0\0\0"
        crc = 0
        for b in page:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
        assert crc == stored, f"page {seq}"
        flags.append(page[5])
        pos, seq = pos + size, seq + 1
    return flags


def test_ogg_pages_are_valid(tmp_path):
    path = tmp_path / "x.ogg"
    save_audio(path, sine(), RATE, big_request())
    flags = check_ogg_pages(path)
    assert flags[0] == 2 and flags[-1] & 4  # beginning and end of stream


def test_a_request_larger_than_an_ogg_page(tmp_path):
    """Headers over 64 KB span several pages (a continued packet); the pages after them are renumbered."""
    huge = small_request().with_(latent=tuple(float(v) for v in np.random.default_rng(1).standard_normal(4000)))
    assert len(huge.to_json()) > 70_000
    path = tmp_path / "x.ogg"
    save_audio(path, sine(seconds=1.0), RATE, huge)
    assert 1 in check_ogg_pages(path)  # a page continuing the comment packet
    assert read_audio_request(path) == huge
    assert len(sf.read(path)[0]) == RATE


# --- read_any_request ----------------------------------------------------------------------------------------------


def test_read_any_request_reads_images_and_sounds(tmp_path):
    png = tmp_path / "x.png"
    save_image(png, np.zeros((8, 8), np.uint8), small_request())
    assert read_any_request(png) == small_request()
    for suffix in AUDIO_FORMATS:
        path = tmp_path / f"x{suffix}"
        save_audio(path, sine(), RATE, big_request())
        assert read_any_request(path) == big_request()
    renamed = tmp_path / "x.oga"
    shutil.copy(tmp_path / "x.ogg", renamed)
    assert read_any_request(renamed) == big_request()
    assert {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"} == AUDIO_SUFFIXES


# --- write errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.aac", "x.opus", "x", "x.wav.bak", "x.png"])
def test_unknown_suffix_is_an_export_error(tmp_path, name):
    with pytest.raises(ExportError, match=r"unknown audio format .*\.flac, \.mp3, \.ogg, \.wav") as info:
        save_audio(tmp_path / name, sine(), RATE, small_request())
    assert info.value.path == str(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, subtype", [("x.wav", "VORBIS"), ("x.wav", "PCM_32"), ("x.flac", "FLOAT"),
                                           ("x.ogg", "PCM_16"), ("x.mp3", "PCM_16")])
def test_subtype_must_fit_the_format(tmp_path, name, subtype):
    with pytest.raises(ExportError, match=f"cannot be written as {subtype}; use "):
        save_audio(tmp_path / name, sine(), RATE, small_request(), subtype=subtype)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, rate", [("x.mp3", 7000), ("x.mp3", 96000), ("x.ogg", 4000), ("x.ogg", 384000),
                                        ("x.flac", 700_000), ("x.wav", 0), ("x.wav", 22050.0)])
def test_unsupported_sample_rates_say_so(tmp_path, name, rate):
    """(libvorbis crashes the process far above 192 kHz: the rate is checked before it is reached.)"""
    with pytest.raises(ExportError, match="does not support|positive whole number") as info:
        save_audio(tmp_path / name, sine(), rate, small_request())
    assert str(rate) in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, data, match", [
    ("x.wav", np.zeros(100, np.int16), "must be float samples"),
    ("x.wav", np.zeros((10, 2, 2), np.float32), r"must be \(samples,\) or \(samples, channels\)"),
    ("x.wav", np.zeros(0, np.float32), "not empty"),
    ("x.wav", np.array([0.1, np.nan], np.float32), "NaN"),
    ("x.flac", np.zeros((2, 4410), np.float32), "FLAC holds at most 8 channels.*samples come first"),
    ("x.mp3", np.zeros((100, 3), np.float32), "MP3 holds at most 2 channels"),
])
def test_bad_data_is_an_export_error(tmp_path, name, data, match):
    with pytest.raises(ExportError, match=match) as info:
        save_audio(tmp_path / name, data, RATE, small_request())
    assert info.value.path == str(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_fails_before_any_encoding(tmp_path, monkeypatch):
    def no_encoding(*args, **kwargs):
        raise AssertionError("encoding started")

    monkeypatch.setattr(sf, "SoundFile", no_encoding)
    missing = tmp_path / "missing"
    with pytest.raises(ExportError, match="does not exist") as info:
        save_audio(missing / "x.flac", sine(), RATE, small_request())
    assert info.value.path == str(missing)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root?) can write to a read-only folder")
        with pytest.raises(ExportError, match="not writable") as info:
            save_audio(folder / "x.wav", sine(), RATE, small_request())
        assert info.value.path == str(folder) and list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("name", ["x.wav", "x.flac", "x.ogg", "x.mp3"])
def test_a_failing_encoder_leaves_no_partial_file(tmp_path, monkeypatch, name):
    target = tmp_path / name
    target.write_bytes(b"old sound")
    write = sf.SoundFile.write

    def half_then_fail(self, data):
        write(self, data[: len(data) // 2])
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(sf.SoundFile, "write", half_then_fail)
    with pytest.raises(ExportError, match="cannot encode .*encoder broke") as info:
        save_audio(target, sine(), RATE, small_request())
    assert info.value.path == str(target)
    assert target.read_bytes() == b"old sound"
    assert [p.name for p in tmp_path.iterdir()] == [name]


# --- reading the request: errors ------------------------------------------------------------------------------------


def test_read_audio_request_errors_name_the_file(tmp_path):
    with pytest.raises(RequestError, match="not found") as info:
        read_audio_request(tmp_path / "gone.wav")
    assert info.value.path == str(tmp_path / "gone.wav")

    text = tmp_path / "notes.wav"
    text.write_text("hello, this is not a sound\n")
    with pytest.raises(RequestError, match="not a sound file") as info:
        read_audio_request(text)
    assert info.value.path == str(text)

    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(RequestError, match="not a sound file"):
        read_any_request(empty)

    for suffix in (".wav", ".flac", ".ogg", ".mp3", ".aiff"):
        bare = tmp_path / f"bare{suffix}"
        sf.write(bare, sine(), RATE)
        with pytest.raises(RequestError, match="no Latent Studio request") as info:
            read_audio_request(bare)
        assert info.value.path == str(bare)

    broken = tmp_path / "broken.wav"
    sf.write(broken, sine(), RATE)
    payload = b'{"model_id": "tiny", "seed": -4}'
    with open(broken, "ab") as f:
        f.write(b"lsrq" + struct.pack("<I", len(payload)) + payload)
    with pytest.raises(RequestError, match="stored request is invalid") as info:
        read_audio_request(broken)
    assert info.value.field == "seed" and str(broken) in str(info.value)


def test_damaged_metadata_is_a_request_error(tmp_path):
    path = tmp_path / "x.flac"
    save_audio(path, sine(), RATE, big_request())
    cut = tmp_path / "cut.flac"
    cut.write_bytes(path.read_bytes()[:200])  # ends inside the comment block
    with pytest.raises(RequestError, match="damaged") as info:
        read_audio_request(cut)
    assert info.value.path == str(cut)


# --- read_sound -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3", ".aiff"])
def test_read_sound_decodes_every_format(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    sf.write(path, sine(), RATE)
    wave_, info = read_sound(path, RATE)
    assert wave_.dtype == np.float32 and wave_.ndim == 1
    assert abs(len(wave_) - len(sine())) <= (MP3_FRAME if suffix in LOSSY else 0)
    n = min(len(wave_), len(sine()))
    assert np.corrcoef(wave_[:n], sine()[:n])[0, 1] > 0.99
    assert info == {"sample_rate": RATE, "channels": 1, "seconds": pytest.approx(len(wave_) / RATE),
                    "resampled": False}


def test_read_sound_mixes_stereo_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    left = sine()
    sf.write(path, np.stack([left, 0.5 * left], axis=1), RATE, subtype="FLOAT")
    wave_, info = read_sound(path, RATE)
    assert info["channels"] == 2 and wave_.shape == left.shape
    np.testing.assert_allclose(wave_, 0.75 * left, atol=1e-6)


def test_read_sound_resamples(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, sine(1000.0, rate=44100, seconds=0.5), 44100, subtype="PCM_24")
    wave_, info = read_sound(path, RATE)
    assert info == {"sample_rate": 44100, "channels": 1, "seconds": 0.5, "resampled": True}
    assert len(wave_) == RATE // 2
    assert peak_frequency(wave_, RATE) == pytest.approx(1000.0, abs=2.0)


def test_max_seconds_reads_only_the_start(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, sine(seconds=2.0), RATE)
    asked = []
    read = sf.SoundFile.read

    def spy(self, frames=-1, **kwargs):
        asked.append(frames)
        return read(self, frames, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    wave_, info = read_sound(path, RATE, max_seconds=0.25)
    assert asked == [5513]  # ⌈0.25 s · 22050 Hz⌉ frames decoded, never the whole file
    assert len(wave_) == 5513
    assert info["seconds"] == pytest.approx(2.0)  # the file's own length
    short, _ = read_sound(path, 8000, max_seconds=0.5)
    assert len(short) == 4000


def test_read_sound_errors_name_the_file(tmp_path):
    wav = tmp_path / "good.wav"
    sf.write(wav, sine(), RATE)
    flac = tmp_path / "good.flac"
    sf.write(flac, sine(), RATE)
    cases = {
        "text.wav": b"hello, this is not a sound\n" * 10,
        "empty.wav": b"",
        "header-only.wav": wav.read_bytes()[:30],
        "half.flac": flac.read_bytes()[: len(flac.read_bytes()) // 2],
        "noise.ogg": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(RequestError, match="cannot be decoded as sound") as info:
            read_sound(path, RATE)
        assert info.value.path == str(path), name

    with pytest.raises(RequestError, match="not found"):
        read_sound(tmp_path / "gone.wav", RATE)
    with pytest.raises(RequestError, match="is a folder, not a regular sound file"):
        read_sound(tmp_path, RATE)

    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0, 1), np.float32), RATE)
    with pytest.raises(RequestError, match="empty") as info:
        read_sound(zero, RATE)
    assert info.value.path == str(zero)

    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(4410, np.float32), RATE)
    with pytest.raises(RequestError, match="silent") as info:
        read_sound(silent, RATE)
    assert info.value.path == str(silent)


# --- resampling -----------------------------------------------------------------------------------------------------


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return float(np.argmax(spectrum) * rate / (8 * len(x)))


def tone(freq: float, rate: int, n: int) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate)


@pytest.mark.parametrize("from_rate, to_rate, above", [(44100, 22050, 15000.0), (48000, 22050, 16000.0),
                                                       (96000, 22050, 30000.0), (16000, 22050, None),
                                                       (22050, 44100, None), (44100, 22051, 14000.0)])
def test_resample_keeps_a_sine_and_removes_what_would_alias(from_rate, to_rate, above):
    """A 1 kHz sine stays a 1 kHz sine; a tone above the new Nyquist (it would alias, e.g. 15 kHz → 7.05 kHz) is gone:
    the result matches the sine sampled at the new rate to better than -40 dB (it is near -85 dB)."""
    n = from_rate // 2
    x = tone(1000.0, from_rate, n) + (tone(above, from_rate, n) if above else 0.0)
    y = resample(x, from_rate, to_rate)
    assert y.dtype == np.float32 and len(y) == -(-n * to_rate // from_rate)
    edge = 200  # the ends see the zeros beyond the clip
    error = np.abs(y - tone(1000.0, to_rate, len(y)))[edge:-edge].max()
    assert 20 * np.log10(error) < -40
    assert peak_frequency(y, to_rate) == pytest.approx(1000.0, abs=1.0)


def test_resample_shapes_and_gain():
    stereo = np.random.default_rng(0).standard_normal((1000, 2))
    assert resample(stereo, 44100, 22050).shape == (500, 2)
    ones = resample(np.ones(4800), 48000, 22050)
    assert len(ones) == 2205 and np.allclose(ones[100:-100], 1.0, atol=1e-4)  # unity gain at DC
    same = resample(np.arange(5.0), 8000, 8000)
    assert same.dtype == np.float32 and np.array_equal(same, np.arange(5.0))
    for bad in (0, -8000, 22050.5):
        with pytest.raises(ValueError):
            resample(ones, bad, 8000)


def test_module_imports_neither_torch_nor_scipy():
    """It imports numpy and soundfile only (torch may still come in through studio.request's own imports)."""
    nodes = list(ast.walk(ast.parse(open(audio.__file__, encoding="utf-8").read())))
    names = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
    assert names <= {"__future__", "math", "struct", "zlib", "fractions", "pathlib", "typing", "numpy", "soundfile",
                     "studio"}


def test_check_sound_reads_only_until_it_hears_something(tmp_path):
    rate = 8000
    late = np.concatenate([np.zeros(5 * rate), 0.5 * np.ones(rate)]).astype(np.float32)
    sf.write(str(tmp_path / "late.wav"), late, rate)
    sf.write(str(tmp_path / "silent.wav"), np.zeros(rate, np.float32), rate)
    (tmp_path / "text.wav").write_text("not a sound")
    assert audio.check_sound(tmp_path / "late.wav") == {"sample_rate": rate, "channels": 1, "seconds": 6.0}
    with pytest.raises(RequestError, match="silent"):
        audio.check_sound(tmp_path / "silent.wav")
    with pytest.raises(RequestError, match="cannot be decoded") as info:
        audio.check_sound(tmp_path / "text.wav")
    assert "text.wav" in str(info.value)
