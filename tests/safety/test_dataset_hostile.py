"""A training folder is the user's, but what lands in it often comes from elsewhere: a FIFO or a pixel bomb among
the pictures is skipped with its reason, never a hang or an allocation of gigabytes; the usable pictures train."""

from __future__ import annotations

import os
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from studio.train.data.folders import load_image_folder, scan_images


def _bomb_png(path, side=100_000):
    """A PNG whose header claims side × side pixels (its data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _in_thread(fn, timeout=60):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "reading the training folder blocked"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_and_a_pixel_bomb_in_a_training_folder_are_skipped_with_their_reason(tmp_path):
    folder = tmp_path / "leaves"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / f"leaf{i}.png")
    os.mkfifo(folder / "pipe.png")
    _bomb_png(folder / "bomb.png")
    said = []
    images = _in_thread(lambda: load_image_folder(folder, 16, log=said.append))
    assert len(images) == 3
    text = " ".join(said)
    # the FIFO is not a file (the folder's listing passes it over); the bomb is refused from its header
    assert "bomb.png" in text and "100000×100000" in text and "over the limit" in text
    summary = _in_thread(lambda: scan_images(folder, "vae", 1))
    assert "bomb.png" in str(summary)
