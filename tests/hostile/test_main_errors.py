"""The command line's last line of defence (`main()`): a refusal is one line naming the file, exit code 1, no
traceback unless --debug; a file-system failure names the file (or the output it was writing); a true bug still says
"unexpected error" (one line, cut) so that the hostile-input suite can prove no bad input reaches it."""

from __future__ import annotations

import errno

import pytest

import studio.cli
from studio.cli import MAX_MESSAGE, main
from studio.errors import ManifestError, StudioError


def _raising(monkeypatch, exc):
    def boom(args):
        raise exc
    monkeypatch.setattr(studio.cli, "cmd_models", boom)
    monkeypatch.setattr(studio.cli, "cmd_render", boom)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_refusal_is_one_line_naming_the_file_and_field(monkeypatch, capsys):
    _raising(monkeypatch, ManifestError("must be a number", "/m/model.toml", "output.width"))
    code, _, err = run(capsys, "models")
    assert code == 1
    assert err == "latent-studio: error: /m/model.toml [output.width]: must be a number\n"


def test_a_multi_line_problem_is_joined_into_one_line(monkeypatch, capsys):
    _raising(monkeypatch, StudioError("not a readable ONNX model:\n  [ONNXRuntimeError] : 1 : FAIL\n\n  at node x",
                                      "/m/generator.onnx"))
    code, _, err = run(capsys, "models")
    assert code == 1
    assert err.count("\n") == 1 and "/m/generator.onnx" in err and "at node x" in err


def test_a_huge_message_is_cut_not_echoed(monkeypatch, capsys):
    _raising(monkeypatch, StudioError("bad value " + "A" * 50_000_000, "/m/shared.png", "params.prompt"))
    code, _, err = run(capsys, "models")
    assert code == 1
    assert len(err) < MAX_MESSAGE + 100
    assert err.startswith("latent-studio: error: /m/shared.png [params.prompt]: bad value AAA")
    assert " characters)" in err and "(500000" in err  # the length, not the value


@pytest.mark.parametrize("exc, words", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/m/weights.safetensors"),
     ["/m/weights.safetensors: No such file or directory"]),
    (PermissionError(errno.EACCES, "Permission denied", "/m/out.png"), ["/m/out.png: Permission denied"]),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/m/project.lstudio"), ["/m/project.lstudio", "directory"]),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "/m/settings.toml"),
     ["/m/settings.toml: Too many levels of symbolic links"]),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a/tmp", None, "/b/out"), ["/a/tmp → /b/out"]),
])
def test_a_file_system_error_names_the_file(monkeypatch, capsys, exc, words):
    _raising(monkeypatch, exc)
    code, _, err = run(capsys, "models")
    assert code == 1
    assert err.startswith("latent-studio: error: ") and err.count("\n") == 1
    assert "unexpected" not in err and "Traceback" not in err
    for word in words:
        assert word in err


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO])
def test_a_failed_write_without_a_file_name_names_the_output(monkeypatch, capsys, tmp_path, number):
    _raising(monkeypatch, OSError(number, "No space left on device"))
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "render", "--out", out)
    assert code == 1
    assert err == f"latent-studio: error: {out}: cannot write: No space left on device\n"


def test_a_real_full_disk_while_saving_names_the_output(monkeypatch, capsys, tmp_path):
    """End to end: the tiny model renders, and the picture's save fails with ENOSPC (no file name attached)."""
    from PIL import Image

    from conftest import make_tiny_package

    make_tiny_package(tmp_path / "models" / "tiny")
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "none"))

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "out" / "x.png"
    out.parent.mkdir()
    code, _, err = run(capsys, "render", "--models-dir", tmp_path / "models", "--model", "tiny", "--out", out)
    assert code == 1
    assert err.count("\n") == 1 and str(out) in err and "No space left on device" in err
    assert "unexpected" not in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []  # no partial file


@pytest.mark.parametrize("exc", [RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                 ZeroDivisionError("division by zero"), ValueError("x" * 10_000)])
def test_a_bug_still_says_unexpected_error_in_one_line(monkeypatch, capsys, exc):
    """Not hidden: the suite looks for exactly these words to prove no hostile input reaches this path."""
    _raising(monkeypatch, exc)
    code, _, err = run(capsys, "models")
    assert code == 1
    assert err.startswith(f"latent-studio: unexpected error: {type(exc).__name__}")
    assert err.count("\n") == 1 and len(err) < MAX_MESSAGE + 200 and "--debug" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("exc", [ManifestError("bad", "/m/model.toml", "id"),
                                 OSError(errno.ENOENT, "No such file or directory", "/m/x"),
                                 RecursionError("maximum recursion depth exceeded")])
def test_debug_shows_the_traceback_and_the_line(monkeypatch, capsys, exc):
    _raising(monkeypatch, exc)
    code, _, err = run(capsys, "models", "--debug")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("latent-studio: ")


def test_interrupt_is_130(monkeypatch, capsys):
    _raising(monkeypatch, KeyboardInterrupt())
    code, _, err = run(capsys, "models")
    assert code == 130 and err == "latent-studio: interrupted\n"
