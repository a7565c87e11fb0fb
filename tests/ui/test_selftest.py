"""`latent-studio --self-test` on the shipped models: the window offscreen, every model rendered, every export format
read back; a broken shipped package fails by name while the other checks still pass; the CLI option and a fresh
process without a Qt platform set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main
from studio.library import scan
from studio.paths import shipped_models_dir
from studio.ui.selftest import ENVIRONMENT, run_self_test

FORMATS = ("PNG", "WAV", "FLAC", "MP4", "GIF")
BROKEN = "glyph-gan"  # an image model that is neither the window's default nor the one the videos animate


def shipped_ids() -> list[str]:
    return [e.id for e in scan([shipped_models_dir()])]


def self_test(**kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_self_test(out=lines.append, **kwargs)
    return code, lines


def ok_lines(lines: list[str], prefix: str) -> list[str]:
    return [line for line in lines if line.startswith(f"ok   {prefix}")]


def test_self_test_passes_on_the_shipped_models():
    before = {name: os.environ.get(name) for name in ENVIRONMENT}
    user_data = Path(os.environ["LATENT_STUDIO_DATA"])
    ids = shipped_ids()
    assert len(ids) >= 4 and {"glyphs", "one-shots"} <= set(ids)

    code, lines = self_test()

    text = "\n".join(lines)
    assert code == 0, text
    assert not [line for line in lines if line.startswith("FAIL")], text
    assert ok_lines(lines, "window (glyphs, first preview"), text
    for model_id in ids:
        assert ok_lines(lines, f"render {model_id} ("), text
    for fmt in FORMATS:
        assert ok_lines(lines, f"export {fmt} "), text
    assert ok_lines(lines, "export WAV one-shots") and ok_lines(lines, "export FLAC one-shots"), text
    assert lines[-1].startswith("self-test passed:"), text
    # the run used its own user folders, and gave the caller's environment back
    assert {name: os.environ.get(name) for name in ENVIRONMENT} == before
    assert not user_data.exists() or not any(user_data.iterdir())


def _corrupt_manifest(package: Path) -> None:
    with open(package / "model.toml", "a", encoding="utf-8") as f:
        f.write("\nthis is [not toml\n")


def _truncate_weights(package: Path) -> None:
    weights = package / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


@pytest.mark.slow
@pytest.mark.parametrize("damage, why", [(_corrupt_manifest, "model.toml"), (_truncate_weights, "weights")])
def test_a_broken_shipped_model_fails_by_name_and_the_rest_still_pass(tmp_path, monkeypatch, damage, why):
    ids = shipped_ids()
    assert BROKEN in ids
    shipped = tmp_path / "models"
    shutil.copytree(shipped_models_dir(), shipped)
    damage(shipped / BROKEN)
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(shipped))

    code, lines = self_test()

    text = "\n".join(lines)
    assert code == 1, text
    failures = [line for line in lines if line.startswith("FAIL")]
    assert len(failures) == 1 and failures[0].startswith(f"FAIL render {BROKEN}: "), text
    assert why in failures[0], text
    assert lines[-1].startswith("self-test FAILED: 1 of ") and lines[-1].endswith(f": render {BROKEN}"), text
    # every other check still ran and passed
    assert ok_lines(lines, "window"), text
    for model_id in ids:
        if model_id != BROKEN:
            assert ok_lines(lines, f"render {model_id} ("), text
    for fmt in FORMATS:
        assert ok_lines(lines, f"export {fmt} "), text


def test_a_missing_device_fails_at_once():
    code, lines = self_test(device="no-such-device")
    assert code == 1
    assert lines[1].startswith("FAIL device: ")
    assert lines[-1].endswith(": device")


def test_the_cli_option_runs_it(capsys):
    code = main(["--self-test"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok   window" in out and "ok   export MP4 " in out
    assert out.rstrip().splitlines()[-1].startswith("self-test passed:")


def test_the_cli_option_reports_failure_by_exit_code(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path / "nothing-here"))
    assert main(["--debug", "--self-test"]) == 1
    out = capsys.readouterr().out
    assert "FAIL models: the shipped models folder is missing" in out


@pytest.mark.slow
def test_a_fresh_process_sets_the_offscreen_platform_itself(tmp_path, repo_root):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join([str(repo_root), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-m", "studio", "--self-test"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   window" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("self-test passed:")
    assert list(tmp_path.iterdir()) == []  # nothing written to the current directory
