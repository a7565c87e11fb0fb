"""The main window: composes the panels around the preview canvas, owns menus, shortcuts, drag and drop, the
window title, autosave and the remembered layout. The session holds the state; the panels bind to it."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QFile, QSettings, QStandardPaths, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import (QAction, QActionGroup, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent,
                           QGuiApplication, QKeySequence)
from PySide6.QtWidgets import (QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QScrollArea, QStackedWidget, QToolButton, QWidget)

from studio import __version__
from studio.app.opening import is_video
from studio.errors import StudioError
from studio.export import AUDIO_SUFFIXES
from studio.export.image import FORMATS
from studio.io.foreign import read_foreign_settings
from studio.params import Capability
from studio.project import SUFFIX, Autosave, Recoverable, adopt, discard, find_recoverable
from studio.ui import dialogs, export_dialogs
from studio.ui.audio_view import AudioView
from studio.ui.canvas import PreviewCanvas
from studio.ui.compare import CompareView
from studio.ui.layout import (COLLAPSED_KEY, BottomDocks, fit_right_column, fit_to_screen, mark_layout_version,
                              remember_thumb_sizes, saved_layout_usable)
from studio.ui.panels.history import HistoryStrip
from studio.ui.panels.latent import LatentPanel
from studio.ui.panels.library import LibraryPanel
from studio.ui.panels.messages import MessageArea
from studio.ui.panels.models import ModelBrowser
from studio.ui.panels.pad import PadPanel
from studio.ui.panels.prompt import PromptPanel
from studio.ui.panels.gallery import GalleryPanel
from studio.ui.panels.queue import QueuePanel
from studio.ui.panels.timeline import TimelinePanel
from studio.ui.panels.variations import VariationsPanel
from studio.ui.session import ERROR, INFO, Session, UndoActions
from studio.ui.export_dialogs import export_folder, remember_folder
from studio.ui.open_files import apply_image_settings, has_own_request
from studio.ui.toast import ExportToast

if TYPE_CHECKING:
    from studio.ui.training.dialog import TrainDialog

log = logging.getLogger(__name__)

AUTOSAVE_MS = 15_000
RECENT_LIMIT = 8
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PROGRESS_DELAY_S = 0.5  # work that ends sooner shows no progress (no flash of "1/1")
CANCELLED_PREFIX = "Cancelled"
TRASH_CHUNK = 50  # files moved to the trash between two turns of the event loop (a whole gallery takes seconds)


class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: QSettings | None = None, autosave: Autosave | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        # a file that names a model folder that is not installed: the user decides (the dialog defaults to No)
        session.set_folder_asker(lambda question: dialogs.ask_add_model_folder(self, question))
        self.settings = settings or QSettings()
        self.autosave = autosave
        self._autosaved_revision = -1  # the revision in the autosave slot; -1: the slot holds none
        self._quit_signal: int | None = None  # the signal a quit_for_signal closes for
        self.train_dialog: TrainDialog | None = None  # File → Train on Your Own Data…, made when first opened
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)

        # the preview: the canvas for images, the waveform / spectrogram view with playback for sounds
        self.canvas = PreviewCanvas()
        self.canvas.set_placeholder("No preview yet")
        self.audio_view = AudioView()
        self.audio_view.set_placeholder("No sound yet")
        self.views = QStackedWidget()
        self.views.setObjectName("previewStack")
        self.views.addWidget(self.canvas)
        self.views.addWidget(self.audio_view)
        self.compare = CompareView(session)  # View ▸ Compare (C): the current render against a pinned picture
        self.views.addWidget(self.compare)
        self.views.setMinimumSize(self.canvas.minimumSizeHint())  # not the widest page's: the window stays narrow
        self.setCentralWidget(self.views)
        self.models = ModelBrowser(session)
        self.prompt = PromptPanel(session)
        self.latent = LatentPanel(session)
        self.library = LibraryPanel(session)
        self.pad = PadPanel(session)
        self.history = HistoryStrip(session)
        self.messages = MessageArea(session)
        self.variations = VariationsPanel(session)
        self.timeline = TimelinePanel(session)
        self.queue = QueuePanel(session)
        self.gallery = GalleryPanel(session)
        self.docks: dict[str, QDockWidget] = {}
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("Models", self.models, left)
        self._dock("Conditions", self.prompt, right)
        self._dock("Latent", self.latent, right)
        self._dock("Library", self.library, right)
        self.tabifyDockWidget(self.docks["Latent"], self.docks["Library"])
        # the pad edits the latent the Latent dock edits, and needs a square: a tab of the tall right column (the
        # bottom docks are short and collapse; there the preview would shrink while dragging)
        self.tabifyDockWidget(self.docks["Library"], self._dock("Pad", self.pad, right))
        self.docks["Latent"].raise_()
        timeline_scroll = QScrollArea()  # a narrow window scrolls the timeline's controls instead of refusing to shrink
        timeline_scroll.setWidgetResizable(True)
        timeline_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        timeline_scroll.setWidget(self.timeline)
        # each bottom dock joins the History's tabs as it is added: side by side for a moment, their widths would add
        # up and stretch the window past a small screen
        self._dock("History", self.history, bottom)
        for title, widget in (("Messages", self.messages), ("Variations", self.variations),
                              ("Timeline", timeline_scroll), ("Queue", self.queue), ("Gallery", self.gallery)):
            self.tabifyDockWidget(self.docks["History"], self._dock(title, widget, bottom))
        self.docks["History"].raise_()
        self.resizeDocks([self.docks["Models"], self.docks["Latent"]], [250, 360], Qt.Orientation.Horizontal)
        # the bottom docks collapse to their tabs (the preview gets the room) and open when one is asked for
        self.bottom_docks = BottomDocks(self, [self.docks[t] for t in ("History", "Messages", "Variations",
                                                                       "Timeline", "Queue", "Gallery")])
        self.bottom_docks.shown.connect(self._fit_docks)

        self.toast = ExportToast(self, lambda folder: self.open_folder(folder))  # tests replace open_folder
        self.timeline.exported.connect(self.show_export_toast)
        self.queue.open_folder.connect(lambda folder: self.open_folder(Path(folder)))
        self.gallery.open_folder.connect(lambda folder: self.open_folder(Path(folder)))
        self.gallery.trash_files.connect(self.move_to_trash)
        self.gallery.pin_image.connect(self._compare_with_gallery)
        self.pad.add_keyframe.connect(self.add_keyframe)
        self._build_status_bar()
        self._build_actions()
        self._build_menus()

        session.image_changed.connect(self._on_image_changed)
        session.sound_changed.connect(self._on_sound_changed)
        self.variations.audition.connect(self._on_audition)
        session.rendered.connect(self._on_rendered)
        session.model_changed.connect(self._on_model_changed)
        session.document_changed.connect(self._on_document_changed)
        session.bridge.progress.connect(self._on_progress)
        session.bridge.started.connect(self._on_render_started)
        session.bridge.frame.connect(self._on_frame)
        session.bridge.rendered.connect(self._on_render_finished)
        session.bridge.failed.connect(self._on_render_finished)
        session.bridge.cancelled.connect(self._on_render_cancelled)
        session.bridge.busy_changed.connect(self._on_busy_changed)
        session.bridge.task_progress.connect(self._on_task_progress)
        session.bridge.tasks_changed.connect(self._on_tasks_changed)
        self.messages.attention.connect(self._on_attention)
        self.canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f} %"))

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave_now)
        if autosave is not None:
            self.autosave_timer.start()
        self._restore_layout()
        remember_thumb_sizes(self.settings, {"history": self.history, "variations": self.variations})
        self._on_document_changed()
        self._on_model_changed(session.entry)

    # --- construction ---------------------------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device_label = QLabel(f"Device: {self.session.bridge.engine.device}")
        self.device_label.setToolTip("Where models run (set with --device or settings.toml)")
        self.model_label = QLabel()
        self.model_label.setToolTip("The current model")
        self.time_label = QLabel()
        self.time_label.setObjectName("renderTime")
        self.time_label.setToolTip("Time of the last render")
        self.zoom_label = QLabel()
        self.zoom_label.setToolTip("Preview zoom (Ctrl+0 fit, Ctrl+1 actual size)")
        # ONE progress display: the task's (a projection, an export) while one runs, else the preview render's; shown
        # only for work still running after PROGRESS_DELAY_S, so instant work never flashes a bar
        self.task_label = QLabel()
        self.task_label.setObjectName("progressLabel")
        self.task_label.setToolTip("The work in progress")
        self.task_progress = QProgressBar()
        self.task_progress.setObjectName("progressBar")
        self.task_progress.setMaximumWidth(160)
        self.task_progress.setMaximumHeight(14)
        self.task_progress.setTextVisible(False)
        self.task_progress.setToolTip("Progress (Cancel or Esc stops it)")
        self.task_cancel = QToolButton()
        self.task_cancel.setObjectName("progressCancel")
        self.task_cancel.setText("Cancel")
        self.task_cancel.setToolTip("Stop the work in progress (Esc stops everything)")
        self.task_cancel.clicked.connect(self._cancel_shown_work)
        self._task_widgets = (self.task_label, self.task_progress, self.task_cancel)
        for widget in self._task_widgets:
            widget.setVisible(False)
        for widget in (*self._task_widgets, self.time_label, self.model_label, self.zoom_label, self.device_label):
            bar.addPermanentWidget(widget)
        self._render_started: float | None = None  # when the newest preview started rendering (None: none runs)
        self._render_step = (0, 0)  # its newest step, total
        self._showing_partial = False  # the canvas shows a per-step frame of an unfinished render
        self._shown_work = ""  # "task" or "render": what the progress display shows and its Cancel stops
        self._progress_timer = QTimer(self)  # reveals the display once work has run PROGRESS_DELAY_S; updates "left"
        self._progress_timer.setInterval(100)
        self._progress_timer.timeout.connect(self._update_progress)

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        s = self.session
        K = QKeySequence.StandardKey
        self.act_new = self._action("&New", self.new_document, K.New, "Start a new project")
        self.act_open = self._action("&Open…", self.open_document_dialog, K.Open,
                                     "Open a project, or an image, sound or video this app exported (its request or "
                                     "project comes back)")
        self.act_image_settings = self._action("Open Image Se&ttings…", self.image_settings_dialog, None,
                                               "Take the settings of a picture from this app, AUTOMATIC1111, "
                                               "ComfyUI or InvokeAI onto the current model")
        self.act_save = self._action("&Save", self.save_document, K.Save, "Save the project")
        self.act_save_as = self._action("Save &As…", self.save_document_as, K.SaveAs, "Save the project under a new name")
        # the folder / file / import actions run the browser's whole step (ask, add, select), not only its dialog
        self.act_open_models = self._action("Open &Model Folder…", self.models.open_model_folder, "Ctrl+Shift+O",
                                            "Add the model packages in a folder, or a diffusers pipeline folder")
        self.act_open_model_file = self._action("Open Model &File…", self.models.open_model_file, None,
                                                "Add a Stable Diffusion 1.x .safetensors checkpoint, or open an "
                                                "NVIDIA StyleGAN network pickle (converted once, never run)")
        self.act_import = self._action("&Import Checkpoint…", self.models.import_checkpoint, None,
                                       "Convert a PyTorch checkpoint, read without running any of its code")
        self.act_export = self._action("&Export Image…", self.export_dialog, "Ctrl+E",
                                       "Export the current image (PNG, JPEG, WebP) with its request inside")
        self.act_copy = self._action("&Copy Image", self.copy_image, "Ctrl+Shift+C", "Copy the preview image")
        self.act_train = self._action("&Train on Your Own Data…", self.show_train_dialog, None,
                                      "Train a model on a folder of your pictures or sounds")
        self.act_encode = self._action("E&ncode Image…", self.image_dialog, "Ctrl+I",
                                       "Take the latent from an image")
        self.act_quit = self._action("&Quit", self.close, K.Quit, "Quit Latent Studio")
        # Edit → Undo / Redo: driven by the document's undo stack (the core's), texts such as "Undo Seed 5"
        self.undo_actions = UndoActions(s.undo, self)
        self.act_undo, self.act_redo = self.undo_actions.undo, self.undo_actions.redo
        self.act_undo.setShortcuts(_shortcuts(K.Undo, "Ctrl+Z"))
        self.act_redo.setShortcuts(_shortcuts("Ctrl+Shift+Z", K.Redo, "Ctrl+Y"))
        self.addActions([self.act_undo, self.act_redo])
        self.act_reset = self._action("Reset All &Sliders", self.latent.reset_all_edits, "Ctrl+Shift+R",
                                      "Reset every latent edit")
        self.act_save_latent = self._action("Save &Latent", self.library.save_current, "Ctrl+L",
                                            "Save the current latent in the library")
        self.act_cancel = self._action("&Cancel Render", s.bridge.cancel, "Esc",
                                       "Stop the render in flight and any task (a projection, an export)")
        self.act_cancel.triggered.connect(lambda *_: self.timeline.stop())  # Esc stops the timeline playing too
        self.act_random = self._action("&Random Seed", s.random_seed, "Ctrl+R", "Draw a new random seed")
        self.act_next = self._action("&Next Seed", s.next_seed, "F5", "Next seed by the seed mode")
        self.act_generate = self._action("&Generate", self.generate, "Ctrl+Return",
                                         "Queue the current request: batch count × batch size renders over seeds by "
                                         "the seed mode (the Queue panel sets them)")
        self.act_generate.setShortcuts(_shortcuts("Ctrl+Return", "Ctrl+Enter"))
        self.act_variations = self._action("&Variations", self.show_variations, "Ctrl+Shift+V",
                                           "Render variations of the current output to audition and pick from")
        self.act_keyframe = self._action("Add &Keyframe", self.add_keyframe, "Ctrl+K",
                                         "Add the current state as a keyframe of the timeline")
        self.act_export_grid = self._action("Export &Grid…", self.export_grid_dialog, "Ctrl+Shift+G",
                                            "An X/Y plot of the current image over two parameters, with labels")
        self.act_export_video = self._action("Export &Video…", self.export_video_dialog, "Ctrl+Shift+E",
                                             "Render the timeline to MP4, WebM, GIF or PNG frames")
        self.act_play = self._action("&Play / Stop", self.audio_view.toggle_playback, "Ctrl+Space",
                                     "Play the sound, or stop it")
        self.act_rerender = self._action("Re&render", s.rerender, "Ctrl+Shift+F5", "Render the current request again")
        self.act_fit = self._action("&Fit", self.canvas.fit, "Ctrl+0", "Fit the image in the view")
        self.act_actual = self._action("&Actual Size", self.canvas.actual_size, "Ctrl+1", "One image pixel per "
                                                                                         "screen pixel")
        self.act_zoom_in = self._action("Zoom &In", self.canvas.zoom_in, K.ZoomIn)
        self.act_zoom_out = self._action("Zoom &Out", self.canvas.zoom_out, K.ZoomOut)
        # C toggles compare while the preview has the focus (typing a C anywhere else stays a C)
        self.act_compare = QAction("&Compare", self, checkable=True)
        self.act_compare.setShortcut(QKeySequence("C"))
        self.act_compare.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.act_compare.setToolTip("Compare the current render with a pinned picture (C in the preview)")
        self.act_compare.setStatusTip(self.act_compare.toolTip())
        self.act_compare.toggled.connect(self.show_compare)
        self.views.addAction(self.act_compare)
        self.act_pin = self._action("&Pin Current for Compare", self.pin_current, "Ctrl+Shift+P",
                                    "Pin the current render: Compare shows it beside what you render next")
        self.act_about = self._action("&About Latent Studio", self.about)
        self.act_shortcuts = self._action("&Keyboard Shortcuts", self.show_shortcuts, "F1")
        self.act_log = self._action("Show &Log File", self.show_log_file, None,
                                    "Open the folder of the log file (what the app did, and what went wrong)")
        self.act_data = self._action("Open User &Data Folder", self.show_data_folder, None,
                                     "Settings, your models, autosaves and training runs")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addActions([self.act_new, self.act_open])
        self.recent_menu = file.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file.addAction(self.act_image_settings)
        file.addActions([self.act_save, self.act_save_as])
        file.addSeparator()
        file.addActions([self.act_open_models, self.act_open_model_file, self.act_import, self.act_train,
                         self.act_encode])
        file.addSeparator()
        file.addActions([self.act_export, self.act_export_grid, self.act_export_video, self.act_copy])
        file.addSeparator()
        file.addAction(self.act_quit)
        edit = bar.addMenu("&Edit")
        edit.addActions([self.act_undo, self.act_redo])
        edit.addSeparator()
        edit.addActions([self.act_reset, self.act_save_latent])
        render = bar.addMenu("&Render")
        render.addActions([self.act_generate, self.act_random, self.act_next, self.act_variations, self.act_keyframe, self.act_rerender,
                           self.act_cancel])
        render.addSeparator()
        render.addAction(self.act_play)
        render.addSeparator()
        # the request's precision (undoable, saved with the request): float16 halves a model's GPU memory; the CPU
        # computes float16 requests in float32 and the status bar says so
        self.precision_menu = render.addMenu("&Precision")
        self.precision_group = QActionGroup(self)
        self.precision_actions: dict[str, QAction] = {}
        for name, text in (("float32", "Float 32 (exact, the default)"),
                           ("float16", "Float 16 (half the memory on a GPU)"),
                           ("bfloat16", "BFloat 16 (GPUs and CPUs with bf16)")):
            action = QAction(text, self, checkable=True)
            action.setData(name)
            action.triggered.connect(lambda _checked=False, n=name: self.set_precision(n))
            self.precision_group.addAction(action)
            self.precision_menu.addAction(action)
            self.precision_actions[name] = action
        self.session.request_changed.connect(self._show_precision)
        self._show_precision(self.session.request)
        view = bar.addMenu("&View")
        view.addActions([self.act_fit, self.act_actual, self.act_zoom_in, self.act_zoom_out])
        view.addSeparator()
        view.addActions([self.act_compare, self.act_pin])
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.act_shortcuts, self.act_log, self.act_data])
        help_menu.addSeparator()
        help_menu.addAction(self.act_about)

    # --- session → window -----------------------------------------------------------------------------------------
    @Slot(object)
    def _on_image_changed(self, image) -> None:
        self.canvas.set_image(image)
        self.compare.set_current(image)

    @Slot(object)
    def _on_sound_changed(self, output) -> None:
        self.audio_view.set_sound(output.data, int(output.info.get("sample_rate", 0)))

    @Slot(int)
    def _on_audition(self, index: int) -> None:
        """A variation tile was picked: show it (and play it, for sounds) in the preview."""
        _, output = self.session.variations[index]
        if output.kind == "audio":
            self.audio_view.set_sound(output.data, int(output.info.get("sample_rate", 0)))
            if self.audio_view.playback_available:
                self.audio_view.play()
        else:
            self.canvas.set_image(output.data)

    @property
    def preview(self):
        """The preview widget in use: the canvas (images) or the audio view (sounds)."""
        return self.views.currentWidget()

    def _on_rendered(self, request, seconds: float, info: dict) -> None:
        self.preview.clear_progress()
        notes = [info[k] for k in ("fallback", "dtype_note") if info.get(k)]  # out of memory; precision not used
        note = "".join(f" — {n}" for n in notes)
        self.time_label.setText(f"{seconds * 1000:.0f} ms{note}")
        if info.get("device"):
            self.device_label.setText(f"Device: {info['device']} ({info.get('dtype', '')})")

    def _on_model_changed(self, entry) -> None:
        QTimer.singleShot(0, self, self._fit_docks)  # once the panels' new controls are laid out
        name = entry.manifest.name if entry is not None and entry.manifest is not None else "no model"
        self.model_label.setText(f"Model: {name}")
        sound = self.session.output_kind == "audio"
        if not sound:
            self.audio_view.stop()
        self.views.setCurrentWidget(self.audio_view if sound else
                                    self.compare if self.act_compare.isChecked() else self.canvas)
        for action in (self.act_copy, self.act_fit, self.act_actual, self.act_zoom_in, self.act_zoom_out,
                       self.act_export_grid, self.act_export_video, self.act_compare, self.act_pin):
            action.setEnabled(not sound)
        self.act_play.setEnabled(sound)
        self.zoom_label.setVisible(not sound)
        what = "Sound" if sound else "Image"
        self.act_export.setText(f"&Export {what}…")
        tip = ("Export the current sound (WAV, FLAC, OGG, MP3) with its request inside" if sound
               else "Export the current image (PNG, JPEG, WebP) with its request inside")
        self.act_export.setToolTip(tip)
        self.act_export.setStatusTip(tip)
        if sound:
            text, tip = "E&ncode Sound…", "Take the latent (the timbre) from a sound file"
        elif self._takes_init_image():
            text, tip = "&Init Image…", "Start image-to-image from a picture"
        elif self.session.projects:
            text, tip = "Pro&ject Image…", "Find the style that redraws an image (projection)"
        else:
            text, tip = "E&ncode Image…", "Take the latent from an image"
        self.act_encode.setText(text)
        self.act_encode.setToolTip(tip)
        self.act_encode.setStatusTip(tip)

    def _on_document_changed(self) -> None:
        self.setWindowTitle(f"Latent Studio — {self.session.display_name}[*]")
        self.setWindowModified(self.session.modified)

    def _on_progress(self, step: int, total: int, message: str) -> None:
        if total > 1:
            self.preview.set_progress(step, total, message)
        self._render_step = (step, total)
        self._update_progress()

    def _on_render_started(self, _request) -> None:
        self._render_started = time.monotonic()
        self._render_step = (0, 0)
        if self.statusBar().currentMessage().startswith(CANCELLED_PREFIX):
            self.statusBar().clearMessage()
        self._update_progress()

    def _on_frame(self, _request, _output) -> None:
        self._showing_partial = True

    def _on_render_finished(self, *_args) -> None:
        self._showing_partial = False
        self._render_started = None
        self._update_progress()

    def _on_render_cancelled(self, _request) -> None:
        """Esc during a render: a half-made picture is marked as such (dimmed, "Cancelled at step 7/25") rather
        than left looking like a result; the status bar says what is shown."""
        step, total = self._render_step
        self._render_started = None
        if self._showing_partial and self.preview is self.canvas and total > 1:
            note = f"{CANCELLED_PREFIX} at step {step}/{total}"
            self.canvas.set_cancelled(note)
            self.statusBar().showMessage(f"{note}: the picture is unfinished (Ctrl+Shift+F5 renders it again)")
        else:
            what = "sound" if self.preview is self.audio_view else "picture"
            self.statusBar().showMessage(f"{CANCELLED_PREFIX}: the {what} shown is the last finished one")
        self._update_progress()

    def _on_task_progress(self, label: str, step: int, total: int) -> None:
        self._update_progress()

    def _on_tasks_changed(self) -> None:
        self._update_progress()

    def _on_busy_changed(self, busy: bool) -> None:
        if busy:
            self._progress_timer.start()
        else:
            self._progress_timer.stop()
            self._render_started = None
            self.preview.clear_progress()
        self._update_progress()

    def _update_progress(self) -> None:
        """The one progress display: the oldest running task with steps, else the preview render, each once it has
        run for PROGRESS_DELAY_S; hidden otherwise."""
        now = time.monotonic()
        text, step, total, work = "", 0, 0, ""
        task = next((t for t in self.session.bridge.tasks if t.total > 1), None)
        if task is not None and now - task.started >= PROGRESS_DELAY_S:
            left = task.seconds_left()
            text = f"{task.label}: {task.step}/{task.total}" + (f", {_clock(left)} left" if left is not None else "")
            step, total, work = task.step, task.total, "task"
            tip = "Stop the task (the preview keeps rendering); Esc stops everything"
        elif self._render_started is not None and self._render_step[1] > 1 \
                and now - self._render_started >= PROGRESS_DELAY_S:
            step, total = self._render_step
            text, work = f"Rendering: step {step}/{total}", "render"
            tip = "Stop the render (Esc)"
        self._shown_work = work
        if not work:
            for widget in self._task_widgets:
                widget.setVisible(False)
            return
        self.task_label.setText(text)
        self.task_progress.setRange(0, total)
        self.task_progress.setValue(step)
        self.task_cancel.setToolTip(tip)
        for widget in self._task_widgets:
            widget.setVisible(True)

    def _cancel_shown_work(self) -> None:
        if self._shown_work == "task":
            self.session.bridge.cancel_tasks()
        else:
            self.session.bridge.cancel()

    def _on_attention(self, level: str, text: str) -> None:
        self.statusBar().showMessage(text, 8000)
        if level == ERROR:
            self.docks["Messages"].show()
            self.docks["Messages"].raise_()
            self.bottom_docks.expand(self.docks["Messages"])

    # --- documents ------------------------------------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """True when it is fine to replace or close the document (saved if the user asked)."""
        if not self.session.modified:
            return True
        answer = dialogs.ask_save_changes(self, self.session.display_name)
        if answer == dialogs.SAVE:
            return self.save_document()
        return answer == dialogs.DISCARD

    def new_document(self) -> None:
        if self.confirm_discard():
            self.session.new_document()
            self.canvas.set_image(None)
            self.audio_view.clear()

    def open_document_dialog(self) -> None:
        """Ctrl+O: a project, or an exported image, sound or video (the same as dropping it on the window; a
        picture from another tool gives its settings)."""
        folder = str(self.session.path.parent) if self.session.path else self._export_folder("image")
        path = dialogs.ask_open_any(self, folder)
        if not path:
            return
        chosen = Path(path)
        if chosen.suffix.lower() in IMAGE_SUFFIXES and not has_own_request(chosen) and self._foreign(chosen):
            apply_image_settings(self.session, chosen)
        else:
            self.open_path(chosen)

    def _takes_prompt(self) -> bool:
        """Whether the current model draws from a text prompt (what another tool's picture settings are about)."""
        entry = self.session.entry
        return entry is not None and any(spec.name == "prompt" for spec in entry.parameters)

    def _foreign(self, path: Path) -> bool:
        """Whether a picture carries another tool's settings (a damaged chunk counts: applying says what is wrong)."""
        try:
            return read_foreign_settings(path) is not None
        except StudioError:
            return True

    def image_settings_dialog(self) -> None:
        """File → Open Image Settings: a picture's settings (ours, AUTOMATIC1111's, ComfyUI's, InvokeAI's) onto the
        current model as one undoable step; what the model does not use is listed in the message."""
        path = dialogs.ask_image_settings(self, self._export_folder("image"))
        if path:
            apply_image_settings(self.session, path)

    def open_document(self, path: str | Path) -> bool:
        ok = self.session.open_document(path)
        if ok and not is_video(path):
            self._add_recent(Path(path))
        if ok:
            if self.session.timeline.keyframes:  # a project with an animation: show it
                self.docks["Timeline"].show()
                self.docks["Timeline"].raise_()
                self.bottom_docks.expand(self.docks["Timeline"])
        return ok

    def save_document(self) -> bool:
        if self.session.path is None:
            return self.save_document_as()
        ok = self.session.save()
        if ok:
            self._add_recent(self.session.path)
        return ok

    def save_document_as(self) -> bool:
        path = dialogs.ask_save_project(self, str(self.session.path or Path.home() / f"Untitled{SUFFIX}"))
        if not path:
            return False
        ok = self.session.save(path)
        if ok:
            self._add_recent(self.session.path)
        return ok

    def _add_recent(self, path: Path | None) -> None:
        if path is None:
            return
        recent = [p for p in self.recent_documents() if Path(p) != path.resolve()]
        self.settings.setValue("recent", json.dumps([str(path.resolve()), *recent][:RECENT_LIMIT]))

    def recent_documents(self) -> list[str]:
        stored = self.settings.value("recent", "[]")
        if not isinstance(stored, str):  # QSettings hands back whatever the file holds
            return []
        try:
            value = json.loads(stored or "[]")
        except ValueError:
            return []
        return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_documents()
        for path in recent:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.confirm_discard() and self.open_document(p))
        if not recent:
            self.recent_menu.addAction("(none)").setEnabled(False)

    # --- autosave and recovery ------------------------------------------------------------------------------------
    def autosave_now(self) -> None:
        """Write the autosave slot when the document has unsaved edits; with none (a fresh or a saved document) the
        slot is removed: a later start never offers to restore a document nobody edited."""
        if self.autosave is None:
            return
        self.session.flush_history()
        if not self.session.modified:
            if self._autosaved_revision != -1:
                self.autosave.clear()
                self._autosaved_revision = -1
            return
        if self.session.revision == self._autosaved_revision:
            return
        try:
            self.autosave.write(self.session.document, self.session.path)
            self._autosaved_revision = self.session.revision
        except StudioError as exc:
            self.session.message.emit(ERROR, "Autosave failed", str(exc))

    def offer_recovery(self, items: list[Recoverable] | None = None) -> bool:
        """After a crash: offer the newest autosave; True when it was restored."""
        items = find_recoverable(self.autosave.folder if self.autosave else None) if items is None else items
        if not items:
            return False
        newest = items[0]
        if not dialogs.ask_recover(self, items):
            if self._quit_signal is None:  # (a Ctrl+C that closed the question is no answer: the autosave stays)
                discard(newest)
            return False
        try:
            document = adopt(newest)
        except StudioError as exc:
            self.session.message.emit(ERROR, "The autosave cannot be read", str(exc))
            return False
        self.session.adopt_document(document, Path(newest.source) if newest.source else None, modified=True)
        discard(newest)
        self.session.message.emit(INFO, f"Restored {newest.describe()}", str(newest.path))
        return True

    # --- export and clipboard ---------------------------------------------------------------------------------------
    def _export_folder(self, kind: str) -> str:
        """Where an export of `kind` ("image", "sound", "video") starts: the last folder used for it, else the
        platform's Pictures / Music / Videos folder (never the app's own)."""
        return export_folder(self.settings, kind)

    def export_dialog(self) -> None:
        """Ctrl+E: export the current image (where, and its output size) or sound (where, and the format); a toast
        with Show in Folder says when it is written."""
        if self.session.request is None:
            return
        request = self.session.request
        sound = self.session.output_kind == "audio"
        kind = "sound" if sound else "image"
        suggestion = str(Path(self._export_folder(kind)) / f"{request.model_id}-{request.seed}."
                                                            f"{'wav' if sound else 'png'}")
        output_size = None
        if sound:
            path, subtype = dialogs.ask_export_sound(self, suggestion)
        else:
            last = self.session.last_output
            source = (int(last.data.shape[1]), int(last.data.shape[0])) \
                if last is not None and last.kind == "image" else None
            choice = export_dialogs.ask_image_export(self, suggestion, source)
            path, subtype = (choice.path, None) if choice is not None else ("", None)
            output_size = choice.output_size if choice is not None else None
        if path:
            remember_folder(self.settings, kind, path)
            self.session.export(path, subtype, self.show_export_toast, output_size)

    def show_export_toast(self, path: Path) -> None:
        """The bottom-right note that an export is written, with Show in Folder."""
        self.toast.show_export(path)

    def copy_image(self) -> None:
        image = self.canvas.image()
        if image is None:
            self.statusBar().showMessage("No image to copy yet", 3000)
            return
        QGuiApplication.clipboard().setImage(image)
        self.statusBar().showMessage("Copied the image", 3000)

    # --- drag and drop ----------------------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        event.acceptProposedAction()
        for path in paths:
            self.open_path(path)

    def open_path(self, path: Path) -> None:
        """What a dropped (or command-line) path does: a model folder adds models, a project opens, an image we
        exported restores its request, a picture from AUTOMATIC1111 / ComfyUI / InvokeAI gives its settings to a
        model that takes a prompt (Ctrl+I still makes it the init image), any other image is encoded into the
        latent — or, for models that start from an image instead (diffusion), becomes the init image."""
        if path.is_dir():
            self.session.add_model_folder(path)
        elif path.suffix.lower() == SUFFIX or is_video(path):  # a video this app exported carries its project
            if self.confirm_discard():
                self.open_document(path)
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            if has_own_request(path):
                self.session.restore_from_file(path)
            elif self.session.output_kind == "audio":
                self.session.encode_sound(path)
            else:
                self.session.message.emit(ERROR, f"{path.name} carries no Latent Studio request",
                                          "Switch to a sound model to encode it into the latent.")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            if path.suffix.lower() in FORMATS and has_own_request(path):
                self.session.restore_from_file(path)
            elif self._takes_prompt() and self._foreign(path):  # an A1111 / ComfyUI / InvokeAI picture on a
                apply_image_settings(self.session, path)  # prompted model: its settings, as Ctrl+O gives them
            elif self._takes_init_image():
                self.session.set_init_image(path)
            else:
                choice = dialogs.chars_for(self, self.session, str(path))
                if choice is not None:
                    self.session.encode_image(*choice)
        else:
            self.session.message.emit(ERROR, f"Cannot open {path.name}",
                                      "Open a model folder, a .lstudio project, an image, a sound or a video this "
                                      "app exported.")

    def image_dialog(self) -> None:
        """Ctrl+I: take the latent from an image (encode / project) or a sound, or the init image of image-to-image."""
        if self._takes_init_image():
            self.prompt.init_image_dialog()
        else:
            self.latent.encode_dialog()

    def _takes_init_image(self) -> bool:
        caps = self.session.entry.capabilities if self.session.entry is not None else Capability.NONE
        return Capability.IMG2IMG in caps and Capability.ENCODE not in caps

    def add_keyframe(self) -> None:
        """Ctrl+K: the current state becomes a keyframe; the Timeline comes forward."""
        self.docks["Timeline"].show()
        self.docks["Timeline"].raise_()
        self.bottom_docks.expand(self.docks["Timeline"])
        self.timeline.add_at_playhead()

    def export_grid_dialog(self) -> None:
        """Ctrl+Shift+G: an X/Y plot of the current request (asks for the two axes and where)."""
        request = self.session.request
        if request is None:
            return
        folder = self._export_folder("image")
        answer = dialogs.ask_grid(self, request.seed, str(Path(folder) / f"{request.model_id}-grid.png"))
        if answer:
            path, rows, cols = answer
            remember_folder(self.settings, "image", path)
            self.session.export_grid(path, rows, cols, self._grid_written)

    def _grid_written(self, path: Path) -> None:
        """A grid is shown, not only written: it opens in the gallery's viewer."""
        self.show_export_toast(path)
        self.gallery.show_file(path, "X/Y grid")

    def export_video_dialog(self) -> None:
        """Ctrl+Shift+E: render the timeline to a video (asks where)."""
        self.docks["Timeline"].show()
        self.docks["Timeline"].raise_()
        self.bottom_docks.expand(self.docks["Timeline"])
        self.timeline.export_video()

    def generate(self) -> None:
        """Ctrl+Enter: queue the current request with the Queue panel's batch count, size and mode; the Queue comes
        forward."""
        if self.queue.session.request is None:
            return
        self.queue.generate()
        self.docks["Queue"].show()
        self.docks["Queue"].raise_()
        self.bottom_docks.expand(self.docks["Queue"])

    # --- compare ---------------------------------------------------------------------------------------------------
    def show_compare(self, on: bool = True) -> None:
        """View ▸ Compare (C): the compare view in place of the canvas (at the canvas's zoom unless it is fitted)."""
        if self.act_compare.isChecked() != on:
            self.act_compare.setChecked(on)  # toggled: comes back here
            return
        if self.session.output_kind == "audio":
            return
        self.compare.set_zoom(None if self.canvas.fit_mode else self.canvas.zoom)
        self.views.setCurrentWidget(self.compare if on else self.canvas)
        (self.compare.area if on else self.canvas).setFocus()

    def pin_current(self) -> None:
        """Ctrl+Shift+P: pin the current render for Compare."""
        if self.compare.pin_current():
            self.statusBar().showMessage(f"Pinned {self.compare.pinned_label}: Compare (C) shows it beside the "
                                         "current render", 5000)

    def compare_with(self, image, label: str) -> None:
        """Compare the current render with `image` (a numpy array or QImage: a gallery item, say), named `label`."""
        self.compare.pin(image, label)
        self.show_compare(True)

    def _compare_with_gallery(self, image, label: str) -> None:
        """The gallery viewer's *Compare with Current*: the main window comes forward with the compare view."""
        self.compare_with(image, label)
        self.raise_()
        self.activateWindow()

    def show_variations(self) -> None:
        """Ctrl+Shift+V: render a fresh set of variations and bring their grid forward."""
        self.docks["Variations"].show()
        self.docks["Variations"].raise_()
        self.bottom_docks.expand(self.docks["Variations"])
        self.variations.render_variations()

    # --- precision ---------------------------------------------------------------------------------------------------
    def set_precision(self, dtype: str) -> None:
        request = self.session.request
        if request is not None and request.dtype != dtype:
            self.session.change(f"Precision {dtype}", dtype=dtype)

    def _show_precision(self, request) -> None:
        self.precision_menu.setEnabled(request is not None)
        if request is not None and request.dtype in self.precision_actions:
            self.precision_actions[request.dtype].setChecked(True)

    # --- training on your own data -----------------------------------------------------------------------------------
    def show_train_dialog(self) -> None:
        """File → Train on Your Own Data…: the (one, non-modal) training dialog."""
        if self.train_dialog is None:
            from studio.ui.training.dialog import TrainDialog  # imports the trainers (torch): only when asked for

            self.train_dialog = TrainDialog(self.session, self)
        self.train_dialog.show()
        self.train_dialog.raise_()
        self.train_dialog.activateWindow()

    # --- help -------------------------------------------------------------------------------------------------------
    def about(self) -> None:
        shown = self.device_label.text().removeprefix("Device: ")  # with the precision once a render has run
        QMessageBox.about(self, "About Latent Studio",
                          about_text(shown or self.session.bridge.engine.device))

    def move_to_trash(self, picked: list) -> None:
        """Move gallery items' files to the system trash (never unlink them); the index forgets those that went, and
        those already gone; any that would not move are named."""
        gone: list[int] = []
        stuck: list[str] = []
        # Qt's trash on Linux lives in the XDG data folder and fails ("Bad file descriptor") when that folder does not
        # exist yet, as on a fresh account
        data_home = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
        if data_home:
            Path(data_home).mkdir(parents=True, exist_ok=True, mode=0o700)
        pending = list(picked)

        def step() -> None:  # TRASH_CHUNK files, then the event loop turns (the window answers, the bar counts)
            for item_id, path in pending[:TRASH_CHUNK]:
                if not Path(path).exists() or QFile.moveToTrash(str(path)):
                    gone.append(item_id)
                else:
                    stuck.append(Path(path).name)
            del pending[:TRASH_CHUNK]
            if pending:
                self.statusBar().showMessage(f"Moving to the trash: {len(picked) - len(pending):,} of "
                                             f"{len(picked):,} files …")
                QTimer.singleShot(0, step)
                return
            self.gallery.forget(gone)
            if len(picked) > TRASH_CHUNK:
                self.statusBar().showMessage(f"Moved {len(gone):,} files to the trash", 5000)
            if stuck:
                self.session.message.emit(ERROR, f"Could not move {len(stuck)} file(s) to the trash",
                                          "The system trash refused: " + ", ".join(stuck[:20]))

        step()

    def open_folder(self, folder: Path) -> bool:
        """Show a folder in the desktop's file manager (tests replace this); False when none could open it."""
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def show_log_file(self) -> None:
        from studio.logs import log_path

        path = log_path()
        if not path.exists():
            self.session.message.emit(INFO, "There is no log file yet", f"It will be written to {path}")
            return
        opened = self.open_folder(path.parent)
        self.session.message.emit(INFO, f"The log file is {path}",
                                  "" if opened else "No file manager could open its folder; copy the path above.")

    def show_data_folder(self) -> None:
        from studio.paths import user_data_dir

        folder = user_data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        opened = self.open_folder(folder)
        self.session.message.emit(INFO, f"Your data folder is {folder}",
                                  "" if opened else "No file manager could open it; copy the path above.")

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """The F1 sheet: each action with every key that triggers it (Redo: Ctrl+Shift+Z and Ctrl+Y …), then the
        preview's own keys."""
        native = QKeySequence.SequenceFormat.NativeText
        plain = {self.act_undo: "Undo", self.act_redo: "Redo"}  # not "Undo Seed 5"
        rows = [(plain.get(a, re.sub("&(.)", r"\1", a.text())),
                 ", ".join(k.toString(native) for k in a.shortcuts()))
                for a in self.actions() if a.shortcuts()]
        rows += [("Preview (when it has the focus): fit, actual size, zoom", "F, 1, +, −"),
                 ("Preview: compare with the pinned picture", "C"),
                 ("Preview: zoom about the pointer", "Wheel")]
        return rows

    def show_shortcuts(self) -> None:
        import html

        table = "".join(f"<tr><td>{html.escape(name)}</td><td>&nbsp;&nbsp;<b>{html.escape(keys)}</b></td></tr>"
                        for name, keys in self.shortcut_rows())
        QMessageBox.information(self, "Keyboard Shortcuts", f"<table>{table}</table>")

    # --- layout and closing ---------------------------------------------------------------------------------------
    def _restore_layout(self) -> None:
        """The remembered size, place and docks (studio.ui.layout: fitted to the screen; a state saved by an older
        layout version is not restored); a fresh start fits 1280 × 820 to the screen, bottom docks collapsed."""
        geometry, state = self.settings.value("geometry"), self.settings.value("windowState")
        fit_to_screen(self)
        if geometry is not None and self.restoreGeometry(geometry):
            fit_to_screen(self, self.size())
        restored = state is not None and saved_layout_usable(self.settings) and self.restoreState(state)
        if restored and geometry is not None:  # again: the restored docks may allow a smaller window than before
            layout = self.layout()  # (the window's minimum is the layout's, once it has seen the restored docks)
            if layout is not None:
                layout.activate()
            if self.restoreGeometry(geometry):
                fit_to_screen(self, self.size())
        collapsed = self.settings.value(COLLAPSED_KEY, True) if restored else True
        if collapsed in (True, "true", 1, "1"):  # QSettings INI hands back "true"
            self.bottom_docks.collapse()

    def save_layout(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        self.settings.setValue(COLLAPSED_KEY, self.bottom_docks.collapsed)
        mark_layout_version(self.settings)

    def _fit_docks(self) -> None:
        """The right column split by content for the model in use (Conditions as tall as its controls)."""
        fit_right_column(self, self.docks["Conditions"], self.docks["Latent"])

    def quit_for_signal(self, signum: int) -> None:
        """Ctrl+C in the terminal or SIGTERM (studio.ui.signals): close without asking; unsaved edits stay in the
        autosave slot, which the next start offers to restore."""
        self._quit_signal = signum
        for _ in range(8):  # a question or file dialog open: answer it "no" (Esc) first, or it keeps the app alive
            modal = QApplication.activeModalWidget()
            if modal is None or modal is self:
                break
            modal.close()
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        by_signal = self._quit_signal is not None
        if not by_signal and not self.confirm_discard():
            event.ignore()
            return
        if self.train_dialog is not None:  # never quit with training running: ask, or (a signal) stop it
            if by_signal:
                self.train_dialog.stop_and_wait()
            elif not self.train_dialog.stop_for_quit():
                event.ignore()
                return
        self.save_layout()
        self.autosave_timer.stop()
        if self.autosave is not None:
            if by_signal and self.session.modified:
                self.autosave_now()
                self.autosave.release()  # kept for the next start
            else:
                self.autosave.finish()
        event.accept()


def about_text(device) -> str:
    """The About box: versions of the app and what it runs on, the device in use, and where its files are."""
    import platform

    import av
    import numpy
    import soundfile
    import torch
    from PySide6 import __version__ as pyside_version

    from studio.logs import log_path
    from studio.paths import user_data_dir

    gpu = ""
    if torch.cuda.is_available():
        gpu = f" · CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        gpu = " · Apple MPS available"
    frozen = " (installed bundle)" if getattr(sys, "frozen", False) else ""
    return (f"<b>Latent Studio {__version__}</b>{frozen}<br>An offline studio for local generative models: "
            f"images, sound and video.<br><br>"
            f"Device in use: <b>{device}</b>{gpu}<br>"
            f"PyTorch {torch.__version__} · PySide6 {pyside_version} · NumPy {numpy.__version__} · "
            f"PyAV {av.__version__} · libsndfile {soundfile.__libsndfile_version__}<br>"
            f"Python {platform.python_version()} on {platform.system()} {platform.machine()}<br><br>"
            f"Your data: {user_data_dir()}<br>Log file: {log_path()}<br><br>"
            "GPL-3.0-or-later. The video encoder x264 inside PyAV is GPL too.")


def _shortcuts(*keys) -> list[QKeySequence]:
    """Key sequences (standard keys or text), each once: a platform's standard key may be one of the others."""
    found: list[QKeySequence] = []
    for key in keys:
        bindings = QKeySequence.keyBindings(key) if isinstance(key, QKeySequence.StandardKey) else [QKeySequence(key)]
        found += [b for b in bindings if not b.isEmpty() and b not in found]
    return found


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
