"""What File → Open can open besides a project: the project stored inside a video this app exported (MP4, WebM,
GIF; the document JSON under "latent-studio"), read as strictly as a project file (size, depth, every field)."""

from __future__ import annotations

import json
from pathlib import Path

from studio.errors import ProjectError, StudioError
from studio.export.video import read_video_metadata
from studio.limits import MAX_JSON_DEPTH, MAX_PROJECT_BYTES, json_depth
from studio.project import Document

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")  # the videos that carry their project (PNG frames: a folder)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def document_in_video(path: str | Path) -> Document:
    """The project a video this app exported carries; ProjectError naming the file when there is none or it is
    damaged."""
    try:
        text = read_video_metadata(path)
    except StudioError as exc:
        raise ProjectError(exc.problem, path) from None
    if not text:
        raise ProjectError("this video carries no Latent Studio project (no 'latent-studio' metadata)", path)
    if len(text) > MAX_PROJECT_BYTES:
        raise ProjectError(f"the stored project is {len(text):,} characters, over the limit of "
                           f"{MAX_PROJECT_BYTES:,}", path)
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ProjectError(f"the stored project nests {depth:,} levels deep, over the limit of {MAX_JSON_DEPTH}",
                           path)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProjectError(f"the stored project is not valid JSON ({str(exc)[:200]})", path) from None
    return Document.from_dict(data, path)
