"""Atomic writes: a temporary file in the target folder, renamed into place. A failure leaves no partial file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from studio.errors import ExportError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp/mkdtemp make private files, ours get the modes open()/mkdir() would give
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK


def check_parent_folder(path: str | Path) -> Path:
    """The folder `path` will be made in; an ExportError naming it if it is missing or not writable."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise ExportError("the output folder does not exist", folder)
    if not folder.is_dir():
        raise ExportError("the output folder is not a folder", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError("the output folder is not writable", folder)
    return folder


def check_writable_folder(path: str | Path) -> Path:
    """The folder the file `path` will be written in (as check_parent_folder), and `path` is not a folder."""
    target = Path(path)
    folder = check_parent_folder(target)
    if target.is_dir():
        raise ExportError("is a folder; give a file name", target)
    return folder


def temporary_beside(target: Path, parent: Path, folder: bool = False) -> Path:
    """A new hidden temporary file (or folder) in `parent`, named after `target`, with the mode open() (or mkdir())
    would give; an ExportError naming `parent` when it cannot be made."""
    try:
        if folder:
            tmp, mode = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=parent)), FOLDER_MODE
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix, dir=parent)
            os.close(fd)
            tmp, mode = Path(name), FILE_MODE
    except OSError as exc:
        raise ExportError(f"cannot create a {'folder' if folder else 'file'} here: {exc.strerror or exc}",
                          parent) from None
    try:
        os.chmod(tmp, mode)
    except OSError:
        pass
    return tmp


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error it is removed."""
    target = Path(path)
    tmp = temporary_beside(target, check_writable_folder(target))
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise ExportError(f"cannot write: {exc.strerror or exc}", target) from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
