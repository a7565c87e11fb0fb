"""Hostile Stable Diffusion pipeline folders: every part file is read through studio.files (regular files only, size
and depth checked) and the networks its configs describe are counted on the meta device before diffusers or
transformers opens anything; each refusal is one short line naming the file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from sd_tiny import make_parts, write_configs  # noqa: E402
from studio.errors import ManifestError, StudioError, WeightsError  # noqa: E402
from studio.families.stable_diffusion.family import _scheduler_settings, source_manifest  # noqa: E402
from studio.families.stable_diffusion.files import check_parts, check_tokenizer, find_source  # noqa: E402
from studio.limits import MAX_PARAMETERS, MAX_SIDE  # noqa: E402

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """A tiny pipeline's config folder (configs, tokenizer, scheduler; no weights)."""
    return write_configs(tmp_path_factory.mktemp("sd-hostile") / "configs", make_parts(0))


@pytest.fixture
def folder(configs, tmp_path):
    """A fresh copy of the config folder, with empty safetensors files where the weights go (find_source only looks
    at what is there)."""
    copy = tmp_path / "pipe"
    shutil.copytree(configs, copy)
    for part, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        (copy / part / f"{stem}.safetensors").write_bytes(b"")
    return copy


def _short(exc: BaseException, *parts: str) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) < 400, message
    for part in parts:
        assert part in message, message
    return message


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_the_tiny_pipeline_passes_every_check(folder):
    check_parts(folder)
    assert find_source(folder).kind == "folder"


def test_a_model_index_nested_100000_deep_is_one_line(folder):
    (folder / "model_index.json").write_text(DEEP, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        find_source(folder)
    _short(info.value, "model_index.json", "nested")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_model_index_that_is_a_fifo_is_refused_without_blocking(folder):
    (folder / "model_index.json").unlink()
    os.mkfifo(folder / "model_index.json")
    with pytest.raises(ManifestError) as info:
        find_source(folder)
    _short(info.value, "model_index.json", "FIFO")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_weights_linked_to_dev_zero_are_refused(folder):
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    weights.symlink_to("/dev/zero")
    with pytest.raises(WeightsError) as info:
        find_source(folder)
    _short(info.value, "diffusion_pytorch_model.safetensors", "character device")


@pytest.mark.parametrize("vocab, words", [
    ([1, 2, 3], "not a JSON object"),
    ({"a": "one"}, "whole number"),
    ({"a": True}, "whole number"),
    ({"a": 10**12}, "whole number"),
])
def test_a_malformed_vocab_json_names_the_file(folder, vocab, words):
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        check_tokenizer(folder / "tokenizer")
    _short(info.value, "vocab.json", words)


def test_a_deep_or_huge_vocab_json_names_the_file(folder):
    vocab = folder / "tokenizer" / "vocab.json"
    vocab.write_text('{"a": ' + DEEP + "}", encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        check_tokenizer(folder / "tokenizer")
    _short(info.value, "vocab.json", "nested")
    with open(vocab, "wb") as f:
        f.truncate(64 << 20)  # sparse
    with pytest.raises(WeightsError) as info:
        check_tokenizer(folder / "tokenizer")
    _short(info.value, "vocab.json", "over the limit")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_malformed_or_fifo_merges_name_the_file(folder):
    merges = folder / "tokenizer" / "merges.txt"
    merges.write_text("#version: 0.2\na b\nthree parts here\n", encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        check_tokenizer(folder / "tokenizer")
    _short(info.value, "merges.txt", "line 3")
    merges.unlink()
    os.mkfifo(merges)
    with pytest.raises(WeightsError) as info:
        check_tokenizer(folder / "tokenizer")
    _short(info.value, "merges.txt", "FIFO")


def test_a_deep_tokenizer_config_names_the_file(folder):
    (folder / "tokenizer" / "tokenizer_config.json").write_text(DEEP, encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        check_parts(folder)
    _short(info.value, "tokenizer_config.json", "nested")


def test_a_unet_channel_count_over_the_limit_is_refused(folder):
    _edit(folder / "unet" / "config.json", lambda c: c.update(block_out_channels=[32, 10**7]))
    with pytest.raises(ManifestError) as info:
        check_parts(folder)
    _short(info.value, "unet/config.json", "block_out_channels")


def test_a_text_encoder_too_big_is_counted_on_the_meta_device_and_refused(folder):
    _edit(folder / "text_encoder" / "config.json",
          lambda c: c.update(hidden_size=16_000, intermediate_size=16_000, num_attention_heads=16,
                             num_hidden_layers=200))
    with pytest.raises(ManifestError) as info:
        check_parts(folder)
    _short(info.value, "text_encoder/config.json", "parameters", f"{MAX_PARAMETERS:,}")


def test_a_config_diffusers_cannot_build_is_one_line(folder):
    _edit(folder / "vae" / "config.json", lambda c: c.update(down_block_types=["NoSuchBlock2D"] * 2))
    with pytest.raises(ManifestError) as info:
        check_parts(folder)
    _short(info.value, "vae/config.json", "cannot build")


def test_a_native_side_over_the_limit_is_refused(folder):
    _edit(folder / "unet" / "config.json", lambda c: c.update(sample_size=10**6))
    with pytest.raises(ManifestError) as info:
        source_manifest(find_source(folder))
    _short(info.value, "model_index.json", "unet.sample_size", f"{MAX_SIDE:,}")


def test_a_schedule_of_a_billion_steps_is_refused(folder):
    path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(ManifestError) as info:
        _scheduler_settings({**config, "num_train_timesteps": 10**9}, path)
    _short(info.value, "scheduler_config.json", "num_train_timesteps")


def test_every_refusal_is_a_studio_error():
    assert issubclass(ManifestError, StudioError) and issubclass(WeightsError, StudioError)
