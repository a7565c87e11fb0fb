"""Image export with the request inside, and atomic writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from studio import __version__
from studio.errors import ExportError, RequestError
from studio.export import atomic_path, check_writable_folder, parameters_text, read_request, save_image
from studio.request import RenderRequest

SHA = "ab" * 32


def gradient(channels: int) -> np.ndarray:
    y, x = np.mgrid[0:16, 0:32]
    plane = ((x * 8 + y * 4) % 256).astype(np.uint8)
    return np.repeat(plane[:, :, None], channels, axis=2)


def request() -> RenderRequest:
    return RenderRequest(model_id="tiny", seed=42, params={"prompt": "Hé lo", "negative_prompt": "blur",
                                                           "guidance": 3.5, "d0": 1.5, "truncation": 0.7})


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP"),
                                         (".PNG", "PNG")])
@pytest.mark.parametrize("channels", [1, 3])
def test_save_and_read_back(tmp_path, suffix, fmt, channels):
    path = tmp_path / f"out{suffix}"
    data = gradient(channels)
    assert save_image(path, data, request(), model_name="Tiny", model_sha256=SHA) == path
    with Image.open(path) as image:
        assert image.format == fmt and image.size == (32, 16)
        back = np.asarray(image)
    if fmt == "PNG":
        assert np.array_equal(back.reshape(data.shape), data)
    got = read_request(path)
    assert got == request().with_(model_hash=SHA)  # the hash of the weights is recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_png_parameters_text(tmp_path):
    path = tmp_path / "x.png"
    save_image(path, gradient(1), request(), model_name="Tiny", model_sha256=SHA)
    with Image.open(path) as image:
        text = image.text["parameters"]
    lines = text.split("\n")
    assert lines[0] == "Hé lo" and lines[1] == "Negative prompt: blur"
    # no steps in the request and none said to be used: no "Steps" (A1111 keeps its own rather than a wrong one)
    assert lines[2].startswith("CFG scale: 3.5, Seed: 42, Size: 32x16, Model hash: abababab")
    assert "Model: Tiny" in lines[2] and 'Edits: "d0=1.5 truncation=0.7"' in lines[2]
    assert lines[2].endswith(f"Version: latent-studio {__version__}")
    assert text == parameters_text(request(), (32, 16), "Tiny", SHA)


def test_jpeg_carries_a1111_user_comment(tmp_path):
    path = tmp_path / "x.jpg"
    save_image(path, gradient(3), request(), model_name="Tiny", model_sha256=SHA)
    with Image.open(path) as image:
        comment = image.getexif().get_ifd(0x8769).get(0x9286) or image.getexif().get(0x9286)
    assert comment is not None and comment.startswith(b"UNICODE\0")
    assert comment[8:].decode("utf-16-be").startswith("Hé lo\nNegative prompt: blur\nCFG scale: ")


def test_existing_request_hash_is_kept(tmp_path):
    path = tmp_path / "x.png"
    original = request().with_(model_hash="cd" * 32)
    save_image(path, gradient(1), original, model_sha256=SHA)
    assert read_request(path).model_hash == "cd" * 32


@pytest.mark.parametrize("name", ["x.gif", "x.tiff", "x", "x.png.bak"])
def test_unknown_suffix_is_an_export_error(tmp_path, name):
    with pytest.raises(ExportError, match="unknown image format") as info:
        save_image(tmp_path / name, gradient(1), request())
    assert info.value.path == str(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_non_uint8_data_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="uint8"):
        save_image(tmp_path / "x.png", gradient(1).astype(np.float32), request())
    assert list(tmp_path.iterdir()) == []


def test_read_request_errors_name_the_file(tmp_path):
    with pytest.raises(RequestError, match="not found") as info:
        read_request(tmp_path / "gone.png")
    assert info.value.path == str(tmp_path / "gone.png")

    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(RequestError, match="not an image"):
        read_request(text)

    bare = tmp_path / "bare.png"
    Image.fromarray(gradient(1)[:, :, 0]).save(bare)
    with pytest.raises(RequestError, match="no Latent Studio request"):
        read_request(bare)

    broken = tmp_path / "broken.png"
    info_chunk = PngImagePlugin.PngInfo()
    info_chunk.add_text("latent-studio", '{"model_id": "tiny", "seed": -4}')
    Image.fromarray(gradient(1)[:, :, 0]).save(broken, pnginfo=info_chunk)
    with pytest.raises(RequestError, match="stored request is invalid") as err:
        read_request(broken)
    assert err.value.field == "seed" and str(broken) in str(err.value)


# --- atomic writes --------------------------------------------------------------------------------------------------


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible until the body is done
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("error", [ValueError("encoder broke"), OSError(28, "No space left on device")])
def test_atomic_path_keeps_the_old_file_when_the_body_raises(tmp_path, error):
    target = tmp_path / "a.png"
    target.write_bytes(b"old image")
    with pytest.raises((ValueError, ExportError)) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a new ima")
            raise error
    if isinstance(error, OSError):  # OS failures become an ExportError naming the target
        assert isinstance(info.value, ExportError) and str(target) in str(info.value)
        assert "No space left on device" in str(info.value)
    assert target.read_bytes() == b"old image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_atomic_path_new_file_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.png") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_folder(tmp_path):
    assert check_writable_folder(tmp_path / "x.png") == tmp_path
    with pytest.raises(ExportError, match="does not exist"):
        check_writable_folder(tmp_path / "missing" / "x.png")
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="not a folder"):
        check_writable_folder(tmp_path / "file" / "x.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ExportError, match="is a folder"):
        check_writable_folder(tmp_path / "dir.png")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_exported_file_gets_the_usual_permissions(tmp_path):
    """Regression: mkstemp's 0600 mode survived os.replace, so exports were readable by their owner only."""
    reference = tmp_path / "plain.bin"
    reference.write_bytes(b"")  # what open() gives under the current umask (0644 under umask 022)
    path = tmp_path / "x.png"
    save_image(path, gradient(1), request())
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_read_picture_keeps_colour_when_asked_and_grey_stays_grey(tmp_path):
    from PIL import Image

    from studio.export.image import read_picture

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[:, :3, 3] = 200, 255  # red where opaque, transparent on the right
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    Image.fromarray(np.full((4, 6), 90, np.uint8), "L").save(tmp_path / "g.png")
    colour = read_picture(tmp_path / "c.png", colour=True)
    assert colour.shape == (4, 6, 3) and tuple(colour[0, 0]) == (200, 0, 0) and tuple(colour[0, 5]) == (255, 255, 255)
    assert read_picture(tmp_path / "c.png").shape == (4, 6)  # grey unless asked (the glyph models draw grey)
    assert read_picture(tmp_path / "g.png", colour=True).shape == (4, 6)  # a grey picture stays grey
    assert read_picture(tmp_path / "c.png", max_side=3, colour=True).shape == (2, 3, 3)
