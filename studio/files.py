"""Only regular files are read: every file the app opens on a user's or a file's say-so goes through here.

A FIFO blocks open() until a writer comes, a device (`/dev/zero`, `/dev/urandom`) never ends, a symlink loop raises
ELOOP: each is refused with a message naming the file, before anything is read. `open_regular` opens without
blocking (O_NONBLOCK) and checks what it opened with fstat, so a file swapped for a FIFO between the check and the
open is still refused. Reads are capped (`max_bytes`) so a huge file is refused before it is read into memory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from studio.errors import StudioError
from studio.limits import check_json_depth, check_toml_depth


def file_kind(mode: int) -> str:
    """What a stat mode says the thing is, for messages: "a folder", "a FIFO (named pipe)", "a character device"…"""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "file not found"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


def check_regular(path: str | Path, error: type[StudioError] = StudioError, field: str | None = None,
                  what: str = "file") -> os.stat_result:
    """The stat of `path` (links followed) when it is a regular file; else `error` naming it and what it is."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(_os_problem(exc), path, field) from None
    except ValueError as exc:  # an embedded NUL
        raise error(f"not a usable path: {exc}", repr(str(path))[:200], field) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"is {file_kind(st.st_mode)}, not a regular {what}", path, field)
    return st


def exists_at(path: str | Path) -> bool:
    """Whether anything is at `path`: a file of any kind, a dangling link or a link loop (those are then refused by
    name, not taken for absent); never blocks, never raises."""
    try:
        os.lstat(path)
        return True
    except (OSError, ValueError):
        return False


def is_regular(path: str | Path) -> bool:
    """Whether `path` is a regular file (links followed); never blocks, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: str | Path, error: type[StudioError] = StudioError, field: str | None = None,
                 max_bytes: int | None = None, what: str = "file") -> BinaryIO:
    """Open `path` for binary reading when it is a regular file of at most `max_bytes`; else `error`."""
    check_regular(path, error, field, what)  # a clear message before any open
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(_os_problem(exc), path, field) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the check and the open
            raise error(f"is {file_kind(st.st_mode)}, not a regular {what}", path, field)
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"is {st.st_size:,} bytes, over the limit of {max_bytes:,} for a {what}", path, field)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, error: type[StudioError] = StudioError, field: str | None = None,
               max_bytes: int | None = None, what: str = "file") -> bytes:
    """The bytes of the regular file `path` (at most `max_bytes`), or `error` naming it."""
    with open_regular(path, error, field, max_bytes, what) as f:
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as exc:
            raise error(_os_problem(exc), path, field) from None
    if max_bytes is not None and len(data) > max_bytes:  # grew while being read
        raise error(f"is over the limit of {max_bytes:,} bytes for a {what}", path, field)
    return data


def read_text(path: str | Path, error: type[StudioError] = StudioError, field: str | None = None,
              max_bytes: int | None = None, what: str = "file") -> str:
    """The UTF-8 text of the regular file `path`, or `error` naming it."""
    data = read_bytes(path, error, field, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path, field) from None


def read_json(path: str | Path, error: type[StudioError] = StudioError, field: str | None = None,
              max_bytes: int | None = None, what: str = "JSON file"):
    """The parsed JSON of the regular file `path`, depth-checked before parsing; `error` naming it otherwise."""
    import json

    from studio.limits import MAX_JSON_BYTES
    text = read_text(path, error, field, MAX_JSON_BYTES if max_bytes is None else max_bytes, what)
    check_json_depth(text, path, field, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path, field) from None
    except (RecursionError, ValueError) as exc:
        raise error(f"not usable JSON: {str(exc)[:200]}", path, field) from None


def read_toml_text(path: str | Path, error: type[StudioError] = StudioError, field: str | None = None,
                   max_bytes: int | None = None, what: str = "TOML file") -> str:
    """The text of the regular TOML file `path`, size- and depth-checked before it is parsed."""
    from studio.limits import MAX_MANIFEST_BYTES
    text = read_text(path, error, field, MAX_MANIFEST_BYTES if max_bytes is None else max_bytes, what)
    check_toml_depth(text, path, field, error)
    return text


def check_name(name: str, what: str = "id", error: type[StudioError] = StudioError, path: str | Path | None = None,
               field: str | None = None) -> str:
    """`name` when it can be used as one path component: not empty, no separator, not `.`/`..`, no NUL or control
    character, not hidden, at most 128 characters. Ids and names from users and files go through this before any
    path is built from them."""
    from studio.limits import quote
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty"
    elif len(name) > 128:
        problem = "is longer than 128 characters"
    elif name in (".", "..") or name.startswith("."):
        problem = "may not start with a dot"
    elif "/" in name or "\\" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        problem = "may not contain a path separator"
    elif any(ord(c) < 32 or c == "\x7f" for c in name) or ":" in name:
        problem = "may not contain control characters or ':'"
    if problem:
        raise error(f"the {what} {quote(name)} {problem}: it must be a plain name", path, field)
    return name
