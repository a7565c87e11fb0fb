"""The log file: what the app did and what went wrong, where a user can find it (Help → Show Log File).

`setup_logging()` adds one rotating file handler (1 MB × 3) in the user log folder to the root logger, once per
process, and logs uncaught exceptions (also those of worker threads) before the usual report. When the folder cannot
be written the app runs without a log file and says why on stderr; it never fails to start over its log.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path

from studio.paths import user_log_dir

LOG_NAME = "latent-studio.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"

_handler: logging.Handler | None = None
_path: Path | None = None


def log_path() -> Path:
    """Where the log file is (or would be)."""
    return _path or user_log_dir() / LOG_NAME


def setup_logging(level: int = logging.INFO, folder: Path | None = None) -> Path | None:
    """Log to the user log folder (or `folder`); the log file's path, or None when it cannot be written. Calling it
    again with another folder moves the log there (tests, and a data folder changed by the environment)."""
    global _handler, _path
    path = (folder or user_log_dir()) / LOG_NAME
    if _handler is not None and _path == path:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                       encoding="utf-8", delay=False)
    except OSError as exc:
        print(f"latent-studio: no log file ({path.parent}: {exc.strerror or exc})", file=sys.stderr)
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    _handler, _path = handler, path
    _hook_uncaught()
    from studio import __version__

    logging.getLogger("studio").info("Latent Studio %s, Python %s on %s", __version__, sys.version.split()[0],
                                     sys.platform)
    return path


def _hook_uncaught() -> None:
    if getattr(sys.excepthook, "_latent_studio", False):
        return
    previous, previous_thread = sys.excepthook, threading.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            logging.getLogger("studio").critical("uncaught exception", exc_info=(kind, value, tb))
        previous(kind, value, tb)

    def thread_hook(args):
        if args.exc_type is not SystemExit:
            logging.getLogger("studio").critical("uncaught exception in thread %s",
                                                 getattr(args.thread, "name", "?"),
                                                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        previous_thread(args)

    hook._latent_studio = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    threading.excepthook = thread_hook
