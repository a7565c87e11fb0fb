"""File → Open Image Settings: the settings a picture carries, put onto the current model as one undoable step.

A picture this app exported restores its exact request (as dropping it does). A picture from AUTOMATIC1111, ComfyUI
or InvokeAI (studio.io.foreign) gives what the current model takes — prompt, negative prompt, seed, steps,
guidance, a matching sampler, the size where the model draws at any size — and the message lists the rest."""

from __future__ import annotations

from pathlib import Path

from studio.errors import StudioError
from studio.export import stored_any_request_text
from studio.io.foreign import map_settings, read_foreign_settings, summary
from studio.params import Capability
from studio.ui.session import ERROR, INFO, WARNING, Session


def has_own_request(path: Path) -> bool:
    """Whether an image or a sound carries a Latent Studio request (valid or not: restoring says what is wrong)."""
    try:
        return stored_any_request_text(path) is not None
    except StudioError:
        return False


def apply_image_settings(session: Session, path: str | Path) -> bool:
    """Apply the settings the picture at `path` carries to the current request (one undoable step); True when
    something was applied. Every outcome is said in the message area, naming the file."""
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
    try:
        mapped = map_settings(settings, request, entry.parameters, Capability.ANY_SIZE in entry.capabilities, name)
    except StudioError as exc:
        session.message.emit(ERROR, f"Cannot apply the settings of {path.name}", str(exc))
        return False
    title, detail = summary(settings, mapped, name, path.name)
    if mapped.request == request:
        session.message.emit(WARNING if not mapped.used else INFO, title, detail)
        return False
    session.set_request(mapped.request, f"Settings from {path.name}")
    session.message.emit(INFO, title, detail)
    return True
