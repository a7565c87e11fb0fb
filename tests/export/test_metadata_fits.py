"""Picture metadata that fits everywhere (issue 16, point 7).

JPEG and WebP carry the `parameters` text as the Exif UserComment in the Exif sub-IFD, as AUTOMATIC1111 writes it, and
the full request as XMP (a JPEG's split over extended-XMP segments); big Stable Diffusion requests (a 512² explicit
latent, an img2img start picture) export and read back whole, and export never fails on size. Two outside readers
prove the fields are where others look: exiftool (skipped where it is not installed; `bootstrap.sh --dev` installs
it), and AUTOMATIC1111's infotext reading rules, restated below from its `read_info_from_image` and
`parse_generation_parameters`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.errors import RequestError
from studio.export import parameters_text, read_any_request, read_request, save_image
from studio.io.images import encode_init_image
from studio.io.metadata import (JPEG_SEGMENT_BYTES, XMP_EXTENSION_HEADER, XMP_HEADER, fit_parameters, exif_texts,
                                stored_image_request_text)
from studio.limits import MAX_METADATA_TEXT
from studio.request import RenderRequest

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_3b8dbe6"
EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="needs exiftool (apt-get install libimage-exiftool-perl;"
                                                            " bash packaging/bootstrap.sh --dev installs it)")
SUFFIXES = (".png", ".jpg", ".webp")
PROMPT = 'a lighthouse at dusk, oil on canvas: "storm", Hé 音\nsecond line of the prompt'
NEGATIVE = "blurry, lowres"


def sd_request(**params) -> RenderRequest:
    return RenderRequest(model_id="sd15", seed=12345, width=512, height=512,
                         params={"prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": 25, "sampler": "dpmpp",
                                 "guidance": 7.5, **params})


def with_latent() -> RenderRequest:
    """Stable Diffusion at 512² with an explicit latent: 4×64×64 numbers, about 320 KB of JSON."""
    values = np.random.default_rng(0).standard_normal(4 * 64 * 64)
    return sd_request().with_(latent=tuple(float(v) for v in values))


def img2img() -> RenderRequest:
    """An img2img request whose start picture is 512² of noise (PNG barely compresses it): about 1 MB of JSON."""
    picture = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return sd_request(init_image=encode_init_image(picture), strength=0.6)


BIG = {"latent": with_latent, "img2img": img2img}


def picture() -> np.ndarray:
    y, x = np.mgrid[0:512, 0:512]
    return np.stack([(x // 2) % 256, (y // 2) % 256, ((x + y) // 4) % 256], axis=2).astype(np.uint8)


# --- AUTOMATIC1111's infotext rules, restated for the test (its code is not copied) --------------------------------

# A settings pair: a key that starts with a word character and goes on with word characters, spaces, '-' or '/'; a
# colon; then either a double-quoted JSON string (backslash escapes allowed) or everything up to the next comma.
_PAIR = re.compile(r"""
    \s* (?P<key> \w [\w\ \-/]+ ) : \s*
    (?P<value> " (?: \\. | [^\\"] )+ " | [^,]* )
    (?: , | $ )""", re.VERBOSE)
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def a1111_read_info(path: Path) -> str | None:
    """What A1111 takes as an image's generation text: a PNG's `parameters` text; for any image with Exif, the
    UserComment of the Exif sub-IFD (piexif's "Exif" group: IFD0 is not looked at), decoded by its 8-byte character
    code (ASCII, JIS, UNICODE = UTF-16 big-endian); an undecodable one as UTF-8, errors dropped."""
    with Image.open(path) as image:
        info = dict(image.info)
    text = info.get("parameters")
    if "exif" in info:
        exif = Image.Exif()
        exif.load(info["exif"])
        comment = exif.get_ifd(0x8769).get(0x9286, b"")
        codes = {b"ASCII\0\0\0": "ascii", b"JIS\0\0\0\0\0": "shift_jis", b"UNICODE\0": "utf_16_be"}
        if comment[:8] in codes:
            decoded = comment[8:].decode(codes[comment[:8]])
        else:
            decoded = comment.decode("utf8", errors="ignore")
        if decoded:
            text = decoded
    return text


def a1111_parse(text: str) -> dict[str, str]:
    """A1111's reading of a generation text: the last line holds the settings when at least three pairs match there;
    the lines before it are the prompt until one starts with "Negative prompt:", which (without the label) and the
    lines after it are the negative prompt; a quoted value is read as a JSON string; a value "WxH" becomes key-1 and
    key-2."""
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PAIR.findall(last):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = json.loads(value)
        size = _SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.groups()
        else:
            result[key] = value
    return result


def jpeg_segments(path: Path) -> list[tuple[int, bytes]]:
    """(marker, payload) of each JPEG segment before the image data."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    out, pos = [], 2
    while data[pos + 1] != 0xDA:
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        out.append((data[pos + 1], data[pos + 4:pos + 2 + length]))
        pos += 2 + length
    return out


# --- big requests fit and read back whole ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BIG))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_big_stable_diffusion_request_exports_and_reads_back_whole(tmp_path, kind, suffix):
    request = BIG[kind]()
    assert len(request.to_json()) > 4 * JPEG_SEGMENT_BYTES  # far over one JPEG segment (and main's Exif limit)
    path = tmp_path / f"out{suffix}"
    notes: list[str] = []
    save_image(path, picture(), request, model_name="SD 1.5", notes=notes)
    assert notes == []
    assert read_request(path) == request
    assert read_any_request(path) == request
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_big_jpeg_request_is_split_over_extended_xmp_segments(tmp_path):
    path = tmp_path / "out.jpg"
    request = img2img()
    save_image(path, picture(), request)
    segments = jpeg_segments(path)
    app1 = [payload for marker, payload in segments if marker == 0xE1]
    assert all(len(payload) + 2 <= 65535 for _, payload in segments)
    main = [p for p in app1 if p.startswith(XMP_HEADER)]
    extended = [p for p in app1 if p.startswith(XMP_EXTENSION_HEADER)]
    assert len(main) == 1 and len(extended) >= 16
    guid = re.search(rb'HasExtendedXMP="([0-9A-F]{32})"', main[0]).group(1)
    start = len(XMP_EXTENSION_HEADER)
    assert {p[start:start + 32] for p in extended} == {guid}
    full = int.from_bytes(extended[0][start + 32:start + 36], "big")
    assert sum(len(p) - start - 40 for p in extended) == full
    exif = [p for p in app1 if p.startswith(b"Exif\0\0")]
    assert len(exif) == 1 and len(exif[0]) <= JPEG_SEGMENT_BYTES


def test_a_small_jpeg_request_needs_no_extended_xmp(tmp_path):
    path = tmp_path / "out.jpg"
    save_image(path, picture()[:64, :64], sd_request())
    app1 = [payload for marker, payload in jpeg_segments(path) if marker == 0xE1]
    assert sum(p.startswith(XMP_HEADER) for p in app1) == 1
    assert not any(p.startswith(XMP_EXTENSION_HEADER) for p in app1)
    assert read_request(path) == sd_request()


# --- what AUTOMATIC1111 reads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["small", *sorted(BIG)])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a1111_rules_read_prompt_negative_steps_sampler_cfg_seed_and_size(tmp_path, suffix, kind):
    request = sd_request() if kind == "small" else BIG[kind]()
    path = tmp_path / f"out{suffix}"
    save_image(path, picture(), request, model_name="SD 1.5")
    text = a1111_read_info(path)
    assert text == parameters_text(request, (512, 512), "SD 1.5")
    got = a1111_parse(text)
    assert got["Prompt"] == PROMPT and got["Negative prompt"] == NEGATIVE
    assert (got["Steps"], got["Sampler"], got["CFG scale"], got["Seed"]) == ("25", "DPM++ 2M", "7.5", "12345")
    assert (got["Size-1"], got["Size-2"]) == ("512", "512")
    assert got["Model"] == "SD 1.5"


def test_a1111_reads_values_with_commas_colons_and_quotes_whole(tmp_path):
    path = tmp_path / "out.jpg"
    name = 'SD 1.5, pruned: "ema"'
    save_image(path, picture()[:64, :64], sd_request(label="a, b"), model_name=name)
    got = a1111_parse(a1111_read_info(path))
    assert got["Model"] == name and got["Class"] == "a, b" and got["Seed"] == "12345"


def test_the_user_comment_is_in_the_exif_ifd_not_ifd0(tmp_path):
    path = tmp_path / "out.jpg"
    save_image(path, picture()[:64, :64], sd_request())
    with Image.open(path) as image:
        exif = image.getexif()
    assert 0x9286 not in exif and 0x010E not in exif  # main put it in IFD0, where no reader looks
    assert exif.get_ifd(0x8769)[0x9286].startswith(b"UNICODE\0")


# --- exiftool ------------------------------------------------------------------------------------------------------


def exiftool(*args: str) -> str:
    return subprocess.run([EXIFTOOL, *args], capture_output=True, text=True, check=True, timeout=120).stdout


@needs_exiftool
@pytest.mark.parametrize("kind", ["small", *sorted(BIG)])
@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_exiftool_reads_the_user_comment_and_the_request(tmp_path, suffix, kind):
    request = sd_request() if kind == "small" else BIG[kind]()
    path = tmp_path / f"out{suffix}"
    save_image(path, picture(), request, model_name="SD 1.5")
    [tags] = json.loads(exiftool("-j", "-G1", "-UserComment", str(path)))
    assert tags["ExifIFD:UserComment"] == parameters_text(request, (512, 512), "SD 1.5")  # not IFD0's, as on main
    assert "IFD0:UserComment" not in tags
    assert json.loads(exiftool("-b", "-XMP-lstudio:Request", str(path))) == json.loads(request.to_json())
    warnings = exiftool("-validate", "-warning", "-a", str(path))
    assert "UserComment" not in warnings and "XMP" not in warnings, warnings


# --- never failing on size -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_request_over_the_metadata_limit_still_exports_with_its_parameters_and_a_note(tmp_path, suffix):
    values = np.random.default_rng(2).standard_normal(MAX_METADATA_TEXT // 12)
    request = sd_request().with_(latent=tuple(float(v) for v in values))
    assert len(request.to_json()) > MAX_METADATA_TEXT
    path = tmp_path / f"out{suffix}"
    notes: list[str] = []
    save_image(path, picture()[:64, :64], request, notes=notes)
    assert len(notes) == 1 and "\n" not in notes[0] and "over the limit" in notes[0]
    got = a1111_parse(a1111_read_info(path))
    assert (got["Prompt"], got["Steps"], got["Seed"], got["Latent"]) == (PROMPT, "25", "12345", "explicit")
    assert stored_image_request_text(path) is None
    with pytest.raises(RequestError, match="carries no Latent Studio request") as info:
        read_request(path)
    assert info.value.path == str(path)


def test_a_parameters_text_too_long_for_a_jpeg_segment_is_cut_there_only(tmp_path):
    prompt = ("a very long prompt 😀 音 " * 2000).strip()  # ~46 000 characters: over 100 KB as UTF-16
    request = sd_request(prompt=prompt)
    notes: list[str] = []
    jpeg = tmp_path / "out.jpg"
    save_image(jpeg, picture()[:64, :64], request, notes=notes)
    assert len(notes) == 1 and "cut" in notes[0]
    got = a1111_parse(a1111_read_info(jpeg))
    assert got["Prompt"].endswith("…") and prompt.startswith(got["Prompt"][:-1]) and len(got["Prompt"]) > 10_000
    assert (got["Steps"], got["Sampler"], got["Seed"], got["Size-1"]) == ("25", "DPM++ 2M", "12345", "64")
    assert read_request(jpeg) == request  # the XMP keeps the whole request
    webp = tmp_path / "out.webp"
    save_image(webp, picture()[:64, :64], request, notes=notes)
    assert len(notes) == 1 and a1111_parse(a1111_read_info(webp))["Prompt"] == prompt


@pytest.mark.parametrize("text", ["short", "x" * 40_000 + "\nSteps: 1", "😀" * 20_000, "a\n" + "😀" * 20_000])
def test_fit_parameters_stays_within_one_segment(text):
    fitted, cut = fit_parameters(text, JPEG_SEGMENT_BYTES)
    assert len(exif_texts(fitted)) <= JPEG_SEGMENT_BYTES
    assert cut == (fitted != text)
    last = text.rpartition("\n")[2]
    if "\n" in text and cut and len(last) < 1000:
        assert fitted.rpartition("\n")[2] == last  # the settings line is kept whole (when it fits by itself)


# --- files made by earlier versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["diffusion-ddpm.jpg", "glyphs-edits.webp"])
def test_legacy_jpeg_and_webp_still_read(name):
    """3b8dbe6 wrote the request as the Exif ImageDescription (IFD0)."""
    request = read_any_request(LEGACY / name)
    assert request.model_id and request.seed is not None


def test_the_cli_writes_the_file_and_prints_one_note_when_the_request_does_not_fit(
        tmp_path, models_dir, capsys, monkeypatch):
    """The limit lowered so that a tiny model's request is over it: the JPEG is written all the same, with its
    parameters text, and `render` says what was left out in one line."""
    import studio.io.metadata
    from studio.cli import main

    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "no-shipped"))
    monkeypatch.setattr(studio.io.metadata, "MAX_METADATA_TEXT", 50)
    out = tmp_path / "x.jpg"
    code = main(["render", "--models-dir", str(models_dir), "--model", "tiny", "--seed", "7", "--prompt", "Ab",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out}" in captured.out
    notes = [line for line in captured.err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "over the limit of 50" in notes[0], captured.err
    got = a1111_parse(a1111_read_info(out))
    assert (got["Prompt"], got["Seed"]) == ("Ab", "7")
    assert stored_image_request_text(out) is None


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_a_sound_whose_request_is_over_the_limit_still_exports_with_its_parameters_and_a_note(tmp_path, suffix):
    import soundfile as sf

    from studio.export import save_audio

    values = np.random.default_rng(3).standard_normal(MAX_METADATA_TEXT // 12)
    request = sd_request().with_(latent=tuple(float(v) for v in values))
    path = tmp_path / f"out{suffix}"
    notes: list[str] = []
    wave = (0.3 * np.sin(np.arange(4410) / 5)).astype(np.float32)
    save_audio(path, wave, 44100, request, notes=notes)
    assert len(notes) == 1 and "over the limit" in notes[0]
    with sf.SoundFile(path) as f:
        assert f.frames > 0 and f.comment.startswith(PROMPT.split("\n")[0])
    with pytest.raises(RequestError, match="carries no Latent Studio request") as info:
        read_any_request(path)
    assert info.value.path == str(path)
