"""File → Open Image Settings: the settings a picture carries, put onto the current model as one undoable step.

A picture this app exported restores its exact request (as dropping it does). A picture from AUTOMATIC1111, ComfyUI
or InvokeAI (studio.io.foreign) gives what the current model takes — prompt, negative prompt, seed, steps,
guidance, a matching sampler, the size where the model draws at any size, its LoRAs — and the message lists the rest.

LoRAs (for a model with a LoRA list, studio.io.loras): each `<lora:name:w>` of the picture is matched to a LoRA file
here and kept under its local name, or reported as "not matched". A file already known to have the picture's hash
("Lora hashes") wins; else the file of that name is taken without reading it; else, when the picture gives a hash,
the LoRA files whose hash is not known yet are read (sha256 of each file's data: 150 MB takes a fraction of a
second, a folder of a hundred several seconds to a minute). That reading runs on a worker thread: the message says
so, the window stays live, and the settings are applied when it is done, onto the request current then. Hashes are
kept per file (path, size, times), so the next picture naming those LoRAs is matched at once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from studio.errors import StudioError
from studio.export import stored_any_request_text
from studio.io.foreign import map_settings, read_foreign_settings, summary
from studio.io.loras import LORA_PARAM, LoraLibrary, list_loras
from studio.params import Capability
from studio.ui.session import ERROR, INFO, WARNING, Session


def has_own_request(path: Path) -> bool:
    """Whether an image or a sound carries a Latent Studio request (valid or not: restoring says what is wrong)."""
    try:
        return stored_any_request_text(path) is not None
    except StudioError:
        return False


def apply_image_settings(session: Session, path: str | Path, hashed: bool = False) -> bool:
    """Apply the settings the picture at `path` carries to the current request (one undoable step); True when
    something was applied. Every outcome is said in the message area, naming the file. When a LoRA of the picture
    can only be matched by reading LoRA files' hashes, those are read on a worker thread first (`LoraHashJob`) and
    this runs again when they are known (`hashed`: they were read; what is still unknown is not matched)."""
    path = Path(path)
    if has_own_request(path):
        return session.restore_from_file(path)
    entry, request = session.entry, session.request
    if entry is None or request is None:
        session.message.emit(ERROR, f"Cannot apply the settings of {path.name}", "Choose a model first.")
        return False
    try:
        settings = read_foreign_settings(path)
    except StudioError as exc:
        session.message.emit(ERROR, f"Cannot read the settings of {path.name}", str(exc))
        return False
    if settings is None:
        session.message.emit(WARNING, f"{path.name} carries no settings this app reads",
                             "It holds no Latent Studio request and no AUTOMATIC1111 'parameters', ComfyUI "
                             "'prompt'/'workflow' or InvokeAI metadata.")
        return False
    name = entry.manifest.name if entry.manifest is not None else entry.id
    library = list_loras(entry.manifest) if entry.manifest is not None and entry.parameters.find(LORA_PARAM) \
        else None
    to_read: list[str] = []  # short hashes only the LoRA files' data can match

    def find_lora(lora: str, short: str | None) -> str | None:
        assert library is not None
        local = library.find(lora, short)
        if local is None and short and not hashed and library.unhashed(short):
            to_read.append(short)
        return local

    try:
        mapped = map_settings(settings, request, entry.parameters, Capability.ANY_SIZE in entry.capabilities, name,
                              find_lora if library is not None else None)
    except StudioError as exc:
        session.message.emit(ERROR, f"Cannot apply the settings of {path.name}", str(exc))
        return False
    if to_read and library is not None:
        LoraHashJob(session, path, library, to_read).start()
        return False
    title, detail = summary(settings, mapped, name, path.name)
    if mapped.request == request:
        session.message.emit(WARNING if not mapped.used else INFO, title, detail)
        return False
    session.set_request(mapped.request, f"Settings from {path.name}")
    session.message.emit(INFO, title, detail)
    return True


class LoraHashJob(QObject):
    """Reads the hashes of the LoRA files that may match a picture's LoRAs on a worker thread (no file data is read
    on the GUI thread), then applies the picture's settings again (`apply_image_settings(…, hashed=True)`) on the
    GUI thread. A child of the session: it ends with it. `running` holds the jobs not finished yet."""

    finished = Signal()
    running: set["LoraHashJob"] = set()

    def __init__(self, session: Session, path: Path, library: LoraLibrary, shorts: list[str]):
        super().__init__(session)
        self.session, self.path, self.library, self.shorts = session, path, library, list(dict.fromkeys(shorts))
        self._stop = threading.Event()
        self.error = ""  # what went wrong on the worker, said when it is done
        self.finished.connect(self._on_finished)
        self.destroyed.connect(self._stop.set)

    def start(self) -> None:
        files = {p for short in self.shorts for p in self.library.unhashed(short)}
        size = sum(_size(p) for p in files)
        where = ", ".join(str(f) for f in self.library.folders)
        self.session.message.emit(INFO, f"Matching the LoRAs of {self.path.name} by their hashes",
                                  f"Reading up to {len(files)} LoRA file{'s' if len(files) != 1 else ''} "
                                  f"({size / 1e6:,.0f} MB) in {where}; the settings are applied when that is done.")
        LoraHashJob.running.add(self)
        threading.Thread(target=self._run, name="latent-studio-lora-hashes", daemon=True).start()

    def _run(self) -> None:
        try:  # files that cannot be read are not matched (hash_until_found skips them)
            self.library.hash_until_found(self.shorts, self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 - a bug on the worker is said on the GUI thread, never dropped
            self.error = f"{type(exc).__name__}: {exc}"
        try:
            self.finished.emit()
        except RuntimeError:  # the session (and this job) was deleted meanwhile: nothing to apply to
            pass

    @Slot()
    def _on_finished(self) -> None:
        LoraHashJob.running.discard(self)
        self.deleteLater()
        if self._stop.is_set():
            return
        if self.error:
            self.session.message.emit(WARNING, f"Could not read all LoRA hashes for {self.path.name}",
                                      f"{self.error} (in {', '.join(str(f) for f in self.library.folders)})")
        apply_image_settings(self.session, self.path, hashed=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
