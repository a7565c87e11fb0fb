"""Atomic writes: a temporary file in the target folder, renamed into place. A failure leaves no partial file.

Temporaries are named `.<target>.pid<pid>.<random>.part[<suffix>]` (hidden, unique, and marked with the process that
made them). A process killed outright (kill -9, a power cut) cannot remove its own, so the next export into that
folder sweeps them: only names of exactly that pattern whose process is gone, or that are older than a day
(`STALE_SECONDS`, for a pid that was reused), never anything else. While a process lives, the temporaries it has
open are remembered, so a CLI ended by SIGTERM or SIGHUP removes them on the way out (`remove_live`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
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


STALE_SECONDS = 24 * 3600  # a temporary this old is stale even if a process of its pid is alive (pids are reused)
# `.<name>.pid<pid>.<8 random>.part[<name's suffix>]` or `….old`: exactly what tempfile.mkstemp/mkdtemp make from
# the prefix and suffixes below. Nothing without the pid marker is ever swept (a user's `.notes.chapter1.part` is safe).
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.pid(?P<pid>\d{1,10})\.[a-z0-9_]{8}\.(?P<kind>part|old)(?P<rest>\.[^./]+)?",
                      re.S)
_live: set[Path] = set()  # temporaries this process has made and not yet renamed or removed
_live_lock = threading.Lock()
_swept: set[str] = set()  # folders swept by this process (once each: a grid writes many files into one folder)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or not ours to judge: keep it
    return True


def is_stale_temporary(path: Path, now: float | None = None) -> bool:
    """Whether `path` is a temporary of ours (its name has exactly our pattern) that no live process will finish:
    its process is gone, or it is older than STALE_SECONDS."""
    match = _TEMP_RE.fullmatch(path.name)
    if match is None or (match.group("rest") or "") not in ("", Path(match.group("name")).suffix):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    age = (time.time() if now is None else now) - st.st_mtime
    return age > STALE_SECONDS or not _pid_alive(int(match.group("pid")))


def sweep_stale(folder: str | Path) -> list[Path]:
    """Remove the stale temporaries of killed exports in `folder` (see is_stale_temporary; nothing else is
    touched, and a folder is swept once per process). The paths removed."""
    folder = Path(folder)
    key = os.path.abspath(folder)
    if key in _swept:
        return []
    _swept.add(key)
    removed = []
    try:
        with os.scandir(folder) as entries:
            candidates = [Path(e.path) for e in entries if e.name.startswith(".") and _TEMP_RE.fullmatch(e.name)]
    except OSError:
        return []
    now = time.time()
    for path in candidates:
        if not is_stale_temporary(path, now):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def forget(path: Path) -> None:
    """`path` (a temporary from temporary_beside) was renamed into place or removed: no longer ours to clean."""
    with _live_lock:
        _live.discard(Path(path))


def remove_live() -> list[Path]:
    """Remove every temporary this process still has (an export interrupted by a signal): the paths removed."""
    with _live_lock:
        paths = sorted(_live)
        _live.clear()
    removed = []
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(path)
        except OSError:
            pass
    return removed


def temporary_beside(target: Path, parent: Path, folder: bool = False, suffix: str = ".part") -> Path:
    """A new hidden temporary file (or folder) in `parent`, named after `target` and this process
    (`.<name>.pid<pid>.<random>.part`, a file keeping `target`'s suffix), with the mode open() (or mkdir()) would
    give; an ExportError naming `parent` when it cannot be made. Stale temporaries of killed exports in `parent`
    are swept first (sweep_stale)."""
    sweep_stale(parent)
    prefix = f".{target.name}.pid{os.getpid()}."
    try:
        if folder:
            tmp, mode = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)), FOLDER_MODE
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix + target.suffix, dir=parent)
            os.close(fd)
            tmp, mode = Path(name), FILE_MODE
    except OSError as exc:
        raise ExportError(f"cannot create a {'folder' if folder else 'file'} here: {exc.strerror or exc}",
                          parent) from None
    with _live_lock:
        _live.add(tmp)
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
        forget(tmp)
