"""Autosave and crash recovery.

A running app owns one slot: `<folder>/<session_id>.lstudio` plus `<folder>/<session_id>.lock`. The lock file is held
open with an exclusive OS lock for the whole session, so the OS releases it when the process dies however it dies.
A slot whose lock is missing or can be taken is left over from a crash and can be recovered; a slot whose lock is
held belongs to a running instance (this one included) and is never offered. The lock file also holds JSON
{"pid", "started", "source"}; its content is informative only and a corrupt one does not block recovery.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studio.errors import ProjectError
from studio.paths import user_data_dir
from studio.project.document import SUFFIX, Document, load_document, save_document

LOCK_SUFFIX = ".lock"
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_LOCK_TRIES = 5  # a probe by another instance holds a free lock for microseconds; retry briefly before giving up
_LOCK_RETRY_S = 0.02
_MAX_LOCK_JSON = 64 * 1024

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        """Take the exclusive lock without waiting; False if another open file holds it."""
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import errno
    import fcntl

    def _try_lock(fd: int) -> bool:
        """Take the exclusive lock without waiting; False if another open file holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass


def autosave_dir() -> Path:
    """Where autosave slots live: <user data>/autosave."""
    return user_data_dir() / "autosave"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Recoverable:
    """An autosave left behind by an instance that did not exit cleanly."""

    path: Path  # the autosaved .lstudio
    source: str  # the document's own path at the time ("" for an untitled document)
    saved_at: float  # mtime

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(LOCK_SUFFIX)

    def describe(self) -> str:
        """A one-line label, e.g. "poster.lstudio, autosaved 2026-11-28 19:02" (local time)."""
        name = Path(self.source).name if self.source else "Untitled"
        stamp = datetime.fromtimestamp(self.saved_at).strftime("%Y-%m-%d %H:%M")
        return f"{name}, autosaved {stamp}"


class Autosave:
    """This instance's autosave slot. start() once, write() as often as wanted (clear() when the document has no
    unsaved edits any more), finish() on a clean exit, release() on an exit that keeps the slot for recovery."""

    def __init__(self, folder: Path | None = None, session_id: str | None = None):
        self.folder = Path(folder) if folder is not None else autosave_dir()
        self.session_id = session_id if session_id is not None else uuid.uuid4().hex
        if not isinstance(self.session_id, str) or not _SESSION_ID.fullmatch(self.session_id):
            raise ValueError(f"session_id must be 1-64 letters, digits, '-' or '_', got {self.session_id!r}")
        self._fd: int | None = None
        self._started = ""
        self._source = ""

    @property
    def path(self) -> Path:
        return self.folder / f"{self.session_id}{SUFFIX}"

    @property
    def lock_path(self) -> Path:
        return self.folder / f"{self.session_id}{LOCK_SUFFIX}"

    @property
    def active(self) -> bool:
        return self._fd is not None

    def start(self) -> None:
        """Create the folder and take the slot's lock. ProjectError naming the folder or lock file if impossible."""
        if self._fd is not None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ProjectError("cannot create the autosave folder: a file is in the way", self.folder) from None
        except OSError as exc:
            raise ProjectError(f"cannot create the autosave folder: {exc.strerror or exc}", self.folder) from None
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as exc:
            raise ProjectError(f"cannot create the autosave lock: {exc.strerror or exc}", self.lock_path) from None
        if not _lock_with_retries(fd):
            os.close(fd)
            raise ProjectError("this autosave slot is in use by another running instance", self.lock_path)
        self._fd = fd
        self._started = _now_iso()
        self._source = ""
        self._write_lock_info()

    def write(self, doc: Document, source: str | Path | None = None) -> Path:
        """Save `doc` atomically to the slot and record `source` (the document's own path, None/"" if untitled)."""
        if self._fd is None:
            raise ProjectError("autosave is not started (or already finished)", self.path)
        saved = save_document(doc, self.path)
        new_source = os.path.abspath(source) if source else ""
        if new_source != self._source:
            self._source = new_source
            self._write_lock_info()
        return saved

    def clear(self) -> None:
        """Remove the slot's autosave (the document is unedited or saved again: nothing to recover); the lock stays
        held. Safe when there is none."""
        if self._fd is not None:
            _remove_slot_files(self.path, strict=False)

    def release(self) -> None:
        """Exit keeping the autosave for the next start (a quit by a signal with unsaved edits): release the lock and
        leave the slot and its lock file, so find_recoverable offers it. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _unlock(fd)
        os.close(fd)

    def finish(self) -> None:
        """Clean exit: delete the autosave and the lock file and release the lock. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _remove_slot_files(self.path, strict=False)
        if os.name == "nt":  # pragma: no cover - Windows cannot delete an open file
            _unlock(fd)
            os.close(fd)
            _unlink(self.lock_path, strict=False)
        else:  # delete while still held, so no one sees a free lock beside a half-removed slot
            _unlink(self.lock_path, strict=False)
            _unlock(fd)
            os.close(fd)

    def _write_lock_info(self) -> None:
        assert self._fd is not None
        info = {"pid": os.getpid(), "started": self._started, "source": self._source}
        data = json.dumps(info, ensure_ascii=False).encode("utf-8")
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)
            os.ftruncate(self._fd, len(data))
        except OSError as exc:
            raise ProjectError(f"cannot write the autosave lock: {exc.strerror or exc}", self.lock_path) from None

    def __repr__(self) -> str:
        return f"Autosave({str(self.path)!r}, active={self.active})"


def find_recoverable(folder: Path | None = None) -> list[Recoverable]:
    """Autosaves whose lock no live process holds, newest first. Unrelated files are ignored."""
    root = Path(folder) if folder is not None else autosave_dir()
    try:
        candidates = sorted(root.iterdir())
    except OSError:  # no folder yet (nothing was ever autosaved), or unreadable: nothing to offer
        return []
    found: list[Recoverable] = []
    for path in candidates:
        if not _is_slot(path):
            continue
        lock = path.with_suffix(LOCK_SUFFIX)
        if _is_held(lock):
            continue
        try:
            saved_at = path.stat().st_mtime  # after the probe: a clean exit may have removed it meanwhile
        except OSError:
            continue
        found.append(Recoverable(path=path, source=_read_source(lock), saved_at=saved_at))
    found.sort(key=lambda item: (-item.saved_at, item.path.name))
    return found


def discard(item: Recoverable) -> None:
    """Delete a recoverable autosave and its lock file. ProjectError naming the file if it cannot be deleted."""
    _remove_slot_files(item.path, strict=True)
    _unlink(item.lock_path, strict=True)


def adopt(item: Recoverable) -> Document:
    """Load a recoverable autosave (ProjectError if it is corrupt; the caller shows it and may discard)."""
    return load_document(item.path)


# --- helpers -------------------------------------------------------------------------------------------------------
def _lock_with_retries(fd: int) -> bool:
    for attempt in range(_LOCK_TRIES):
        if _try_lock(fd):
            return True
        if attempt + 1 < _LOCK_TRIES:
            time.sleep(_LOCK_RETRY_S)
    return False


def _is_slot(path: Path) -> bool:
    """A `<session_id>.lstudio` file (not a hidden temporary file of an atomic write)."""
    return path.suffix == SUFFIX and _SESSION_ID.fullmatch(path.stem) is not None and path.is_file()


def _is_held(lock: Path) -> bool:
    """True when a live process holds `lock`. A missing lock is not held; one we cannot open counts as held."""
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        if not _try_lock(fd):
            return True
        _unlock(fd)  # only a probe: release at once
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _read_source(lock: Path) -> str:
    """The document path recorded in a lock file; "" when missing or corrupt."""
    try:
        with open(lock, "rb") as handle:
            info: Any = json.loads(handle.read(_MAX_LOCK_JSON).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return ""
    source = info.get("source") if isinstance(info, dict) else None
    return source if isinstance(source, str) else ""


def _remove_slot_files(path: Path, strict: bool) -> None:
    """Delete an autosave and any temporary files an interrupted atomic write left beside it."""
    _unlink(path, strict)
    try:
        leftovers = list(path.parent.glob(f".{path.name}.*.part{SUFFIX}"))
    except OSError:
        leftovers = []
    for leftover in leftovers:
        _unlink(leftover, strict=False)


def _unlink(path: Path, strict: bool) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if strict:
            raise ProjectError(f"cannot delete: {exc.strerror or exc}", path) from None
