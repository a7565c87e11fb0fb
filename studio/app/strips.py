"""Which characters a glyph strip shows: what the Encode / Project Image dialog offers before the artist types.

A strip is read as equal-width cells, one per character, a space skipping a cell (studio.export.read_glyph_strip).
A strip drawn by a glyph model is one row of square cells, so it shows width / height cells. The offer, best first:
the prompt stored in the picture (an image this app exported: its exact text, spaces and all), then the current
prompt's first line fitted to the cells (its first N characters; a character the model cannot draw skips its cell).
No Qt, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError
from studio.export import read_request
from studio.io.images import open_picture


@dataclass(frozen=True)
class StripGuess:
    """The characters to offer, how many cells the picture looks like (0: unreadable), and where the characters
    came from ("the picture's request" or "the prompt")."""

    chars: str
    cells: int
    source: str


def strip_cells(path: str | Path) -> int:
    """How many square cells a one-row strip at `path` shows (at least 1); 0 when it cannot be read."""
    try:
        with open_picture(path) as image:
            width, height = image.size
    except (StudioError, OSError):
        return 0
    return max(1, round(width / max(height, 1)))


def guess_strip_chars(path: str | Path, prompt: str | None, charset: str = "") -> StripGuess:
    """The characters to offer for the strip at `path` of a model drawing `charset` (""= any), given the current
    `prompt`."""
    cells = strip_cells(path)
    try:
        stored = read_request(path).param("prompt")
    except (StudioError, OSError):
        stored = None
    if isinstance(stored, str) and stored.strip() and "\n" not in stored.strip("\n") \
            and (cells == 0 or len(stored.strip("\n")) == cells):
        return StripGuess(_drawable(stored.strip("\n"), charset), cells, "the picture's request")
    line = next((ln for ln in (prompt or "").split("\n") if ln.strip()), "")
    if cells and len(line) > cells:
        line = line[:cells]
    return StripGuess(_drawable(line, charset), cells, "the prompt")


def _drawable(text: str, charset: str) -> str:
    """`text` with each character the model cannot draw made a space (its cell is skipped, the others stay put)."""
    if not charset:
        return text
    allowed = set(charset)
    return "".join(c if c in allowed or c.isspace() else " " for c in text)
