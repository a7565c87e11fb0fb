"""Import a checkpoint in the app: a pickled Stable Diffusion .ckpt becomes a .safetensors file the app opens, an NVIDIA
StyleGAN network pickle becomes a package (recognised by its content, read by the restricted reader), and any
other PyTorch checkpoint is mapped onto an installed package's architecture and written as a new package in the user
models folder. Pickles are read without running anything in them, on a worker thread: a 4 GB
checkpoint takes a while, and the window stays live. The result, or the error naming the file, comes back as a
signal on the GUI thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.errors import StudioError
from studio.library import PackageEntry

SD_CHOICE = "Stable Diffusion 1.x checkpoint"
NN_TILDE_CHOICE = "nn~ / RAVE sound model (TorchScript .ts, read in a worker process)"


def converts_on_its_own(source: Path) -> bool:
    """Whether a family recognises `source` by its content (an NVIDIA network pickle): no architecture to ask for."""
    from studio.families.registry import importing_family

    return importing_family(source) is not None


def import_job(source: Path, like: PackageEntry | str | None, out: Path | None = None) -> Path:
    """What the worker runs: the converted file (SD) or the new package folder (a checkpoint onto `like`'s
    architecture, an nn~ module (`like` is NN_TILDE_CHOICE), or a file a family recognises by content, such as an
    NVIDIA network pickle). Raises StudioError."""
    from studio.families import get_family
    from studio.families.registry import importing_family
    from studio.importers.checkpoint import import_like

    if like == NN_TILDE_CHOICE:  # a program: its attributes are read in the engine's worker process, never here
        from studio.importers.nn_tilde import import_nn_tilde

        return import_nn_tilde(source, out)
    if like is None:
        family = importing_family(source)
        if family is not None:
            return family.import_file(source, out)
    if like is None or isinstance(like, str):
        return get_family("stable-diffusion").import_file(source, out)
    return import_like(source, like, out, taken="remove it or rename the checkpoint")


class Importer(QObject):
    """Runs one import at a time on a Python thread (no torch on the GUI thread)."""

    finished = Signal(str, str)  # source, result path
    failed = Signal(str, str)  # source, message

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, source: Path, like: PackageEntry | str | None, out: Path | None = None) -> bool:
        if self.busy:
            return False

        def run() -> None:
            try:
                result = import_job(source, like, out)
            except StudioError as exc:
                self.failed.emit(str(source), str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the thread silently
                self.failed.emit(str(source), f"{source}: {type(exc).__name__}: {exc}")
            else:
                self.finished.emit(str(source), str(result))

        self._thread = threading.Thread(target=run, name="import-checkpoint", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
