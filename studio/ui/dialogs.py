"""The app's few modal questions, in one place so that tests can answer them (monkeypatch these functions)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QInputDialog, QLineEdit,
                               QMessageBox, QWidget)

from studio.project import SUFFIX, Recoverable

if TYPE_CHECKING:
    from studio.app.models import FolderQuestion  # the panels import this module: no torch through the app layer

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
PROJECT_FILTER = f"Latent Studio projects (*{SUFFIX})"
OPEN_FILTER = (f"Projects and exported files (*{SUFFIX} *.png *.jpg *.jpeg *.webp *.wav *.flac *.ogg *.mp3 *.mp4 "
               f"*.webm *.gif);;{PROJECT_FILTER};;Images (*.png *.jpg *.jpeg *.webp);;Sounds (*.wav *.flac *.ogg *.mp3);;"
               "Videos (*.mp4 *.webm *.gif)")
EXPORT_FILTER = "PNG image (*.png);;JPEG image (*.jpg *.jpeg);;WebP image (*.webp)"
SOUND_FILTER = "Sounds (*.wav *.flac *.ogg *.oga *.mp3 *.aif *.aiff)"
# the sound export choices: a file-dialog filter each, with its suffix and sample format (None: the format's own)
SOUND_EXPORTS = {
    "WAV 16-bit (*.wav)": (".wav", "PCM_16"),
    "WAV 24-bit (*.wav)": (".wav", "PCM_24"),
    "WAV 32-bit float (*.wav)": (".wav", "FLOAT"),
    "FLAC 16-bit (*.flac)": (".flac", "PCM_16"),
    "FLAC 24-bit (*.flac)": (".flac", "PCM_24"),
    "OGG Vorbis (*.ogg)": (".ogg", None),
    "MP3 (*.mp3)": (".mp3", None),
}

# the video export choices: a file-dialog filter each, with its suffix ("" = a folder of PNG frames)
VIDEO_EXPORTS = {
    "MP4 video (*.mp4)": ".mp4",
    "WebM video (*.webm)": ".webm",
    "GIF animation (*.gif)": ".gif",
    "PNG frames (a folder)": "",
}

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def ask_open_any(parent: QWidget, folder: str = "") -> str:
    """File → Open: a project, or an image, sound or video this app exported ("" when cancelled)."""
    return QFileDialog.getOpenFileName(parent, "Open", folder, OPEN_FILTER, options=_file_dialog_options())[0]


def ask_image_settings(parent: QWidget, folder: str = "") -> str:
    """File → Open Image Settings: a picture from this app or another tool ("" when cancelled)."""
    return QFileDialog.getOpenFileName(parent, "Open Image Settings", folder, IMAGE_FILTER,
                                       options=_file_dialog_options())[0]


def _file_dialog_options() -> QFileDialog.Option:
    """Qt's own dialog where no desktop one is reachable (offscreen, a bare X server): it works with the keyboard."""
    from PySide6.QtGui import QGuiApplication

    bare = QGuiApplication.platformName() in ("offscreen", "minimal") or not os.environ.get("XDG_CURRENT_DESKTOP")
    return QFileDialog.Option.DontUseNativeDialog if bare and sys.platform.startswith("linux") else \
        QFileDialog.Option(0)


def ask_save_project(parent: QWidget, suggestion: str) -> str:
    path = QFileDialog.getSaveFileName(parent, "Save Project As", suggestion, PROJECT_FILTER)[0]
    if path and not Path(path).suffix:
        path += SUFFIX
    return path


def ask_export_image(parent: QWidget, suggestion: str) -> str:
    path, chosen = QFileDialog.getSaveFileName(parent, "Export Image", suggestion, EXPORT_FILTER)
    if path and not Path(path).suffix:
        path += ".jpg" if "JPEG" in chosen else ".webp" if "WebP" in chosen else ".png"
    return path


def ask_export_sound(parent: QWidget, suggestion: str) -> tuple[str, str | None]:
    """(path, sample format) for a sound export; ("", None) when cancelled. The chosen filter sets the format."""
    path, chosen = QFileDialog.getSaveFileName(parent, "Export Sound", suggestion, ";;".join(SOUND_EXPORTS))
    if not path:
        return "", None
    suffix, subtype = SOUND_EXPORTS.get(chosen, (".wav", "PCM_16"))
    if not Path(path).suffix:
        path += suffix
    elif Path(path).suffix.lower() != suffix:  # the name says another format: its default sample format
        subtype = None
    return path, subtype


def ask_sound(parent: QWidget) -> str:
    """A sound file to encode ("" when cancelled)."""
    return QFileDialog.getOpenFileName(parent, "Encode Sound", "", SOUND_FILTER)[0]


def ask_sound_file(parent: QWidget) -> str:
    """A sound file for the timeline; "" when cancelled."""
    return QFileDialog.getOpenFileName(parent, "Timeline Sound", "", SOUND_FILTER)[0]


def ask_video_path(parent: QWidget, suggestion: str) -> tuple[str, tuple[int, int] | None]:
    """(path, frame size or None for the model's own) for a video export; ("", None) when cancelled. The chosen
    filter adds its suffix to a bare name; "PNG frames" names a folder (no suffix)."""
    path, chosen = QFileDialog.getSaveFileName(parent, "Export Video", suggestion, ";;".join(VIDEO_EXPORTS))
    if not path:
        return "", None
    suffix = VIDEO_EXPORTS.get(chosen, ".mp4")
    if suffix and not Path(path).suffix:
        path += suffix
    elif not suffix and Path(path).suffix:
        path = str(Path(path).with_suffix(""))
    return path, None


def ask_grid(parent: QWidget, seed: int, suggestion: str) -> tuple[str, str, str] | None:
    """(path, rows, cols) of an X/Y plot ("seed=1,2,3", "d0=-2,0,2"); None when cancelled."""
    box = QDialog(parent)
    box.setWindowTitle("Export Grid")
    rows = QLineEdit(f"seed={seed},{seed + 1},{seed + 2}")
    cols = QLineEdit("d0=-2,0,2")
    for edit in (rows, cols):
        edit.setToolTip("NAME=V1,V2,…: seed, steps, guidance, eta, strength, or a latent edit (d0, truncation …)")
    form = QFormLayout(box)
    form.addRow("Rows", rows)
    form.addRow("Columns", cols)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(box.accept)
    buttons.rejected.connect(box.reject)
    form.addRow(buttons)
    if box.exec() != QDialog.DialogCode.Accepted:
        return None
    path = ask_export_image(parent, suggestion)
    return (path, rows.text(), cols.text()) if path else None


def ask_model_folder(parent: QWidget) -> str:
    return QFileDialog.getExistingDirectory(parent, "Open Model Folder")


def folder_question_box(parent: QWidget, question: FolderQuestion) -> QMessageBox:
    """The dialog that shows a FolderQuestion (the decision is the app's): Yes or No, with No the default and the
    escape button, so Enter or Escape loads nothing."""
    box = QMessageBox(QMessageBox.Icon.Warning, question.title, question.text,
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setInformativeText(question.detail)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    box.setEscapeButton(QMessageBox.StandardButton.No)
    return box


def ask_add_model_folder(parent: QWidget, question: FolderQuestion) -> bool:
    """Whether to add the model folder a file asks for (True: Yes)."""
    box = folder_question_box(parent, question)
    return QMessageBox.StandardButton(box.exec()) == QMessageBox.StandardButton.Yes


def ask_chars(parent: QWidget, image: str, default: str, cells: int = 0) -> str | None:
    """The characters the strip `image` shows ("" or Cancel: None); `cells`: how many it looks like (0: unknown)."""
    looks = f"it looks like {cells} cell{'s' if cells != 1 else ''}: " if cells else ""
    text, ok = QInputDialog.getText(parent, "Encode Image",
                                    f"Which characters does {Path(image).name} show, left to right?\n"
                                    f"({looks}one per equal-width cell; a space skips a cell)", text=default)
    return text if ok and text.strip() else None


def ask_encode_image(parent: QWidget, session) -> tuple[str, str] | None:
    title = "Project Image" if getattr(session, "projects", False) else "Encode Image"
    path = QFileDialog.getOpenFileName(parent, title, "", IMAGE_FILTER)[0]
    if not path:
        return None
    return chars_for(parent, session, path)


def ask_init_image(parent: QWidget) -> str:
    """The picture image-to-image starts from ("" when cancelled)."""
    return QFileDialog.getOpenFileName(parent, "Init Image", "", IMAGE_FILTER)[0]


def chars_for(parent: QWidget, session, path: str) -> tuple[str, str] | None:
    """(path, characters) for encoding `path` with the session's model; asks for the characters on text models."""
    entry = session.entry
    if entry is None or entry.manifest is None:
        return None
    if entry.manifest.conditions.kind in ("text", "class") \
            and not getattr(entry.family, "encodes_pictures", False):  # a picture model: no cells
        guess = session.strip_chars(path)  # the strip's own cells: its stored prompt, or the prompt fitted to them
        chars = ask_chars(parent, path, guess.chars, guess.cells)
        return (path, chars) if chars else None
    return path, ""


def ask_save_changes(parent: QWidget, name: str) -> str:
    box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved Changes", f"Save the changes to {name} before closing?",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, parent)
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    return {QMessageBox.StandardButton.Save: SAVE, QMessageBox.StandardButton.Discard: DISCARD}.get(
        QMessageBox.StandardButton(answer), CANCEL)


def ask_recover(parent: QWidget, items: list[Recoverable]) -> bool:
    newest = items[0]
    more = f"\n\n({len(items) - 1} older autosave(s) will be kept for later.)" if len(items) > 1 else ""
    answer = QMessageBox.question(parent, "Restore Unsaved Work",
                                  "Latent Studio did not close cleanly last time.\n\n"
                                  f"Restore {newest.describe()}?{more}",
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.Yes)
    return answer == QMessageBox.StandardButton.Yes
