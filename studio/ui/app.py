"""Start the desktop app: QApplication, theme, engine, session, main window, crash recovery."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from studio import __version__
from studio.errors import StudioError
from studio.paths import APP_NAME

log = logging.getLogger(__name__)


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once), HiDPI-sharp and dark."""
    instance = QApplication.instance()
    if isinstance(instance, QApplication):
        app = instance
    elif instance is not None:  # a QCoreApplication (no widgets) made by someone else: no window can be shown
        raise RuntimeError("Latent Studio needs a QApplication, and a QCoreApplication exists already")
    else:
        # Qt Multimedia lists every optional codec library it could not load (VA-API, PipeWire…) at start-up; none
        # matters for playing a sound. A rule the user sets still wins.
        os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.symbolsresolver=false;qt.multimedia.ffmpeg=false")
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else [sys.argv[0]])
    app.setApplicationName("Latent Studio")
    app.setDesktopFileName("latent-studio")  # Wayland / X11 match the window to latent-studio.desktop
    app.setWindowIcon(app_icon())
    app.setOrganizationName(APP_NAME)
    app.setApplicationVersion(__version__)
    from studio.ui.theme import apply_dark_theme
    from studio.ui.wheel import install_wheel_guard

    apply_dark_theme(app)
    install_wheel_guard(app)  # the wheel scrolls panels; it edits only a value widget the user focused
    return app


def app_icon() -> QIcon:
    """The application icon in every size the app ships (studio/data/icons), found through the package."""
    from importlib import resources

    icon = QIcon()
    folder = resources.files("studio") / "data" / "icons"
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        path = folder / f"latent-studio-{size}.png"
        if path.is_file():
            icon.addFile(str(path), QSize(size, size))
    return icon


def settings() -> QSettings:
    """The window's remembered layout and recent files: an INI file in the user data folder (isolated by
    LATENT_STUDIO_DATA). Model folders are not kept here but in settings.toml, which the CLI reads too."""
    from studio.paths import user_data_dir

    return QSettings(str(user_data_dir() / "window.ini"), QSettings.Format.IniFormat)


def run(model: str | None = None, open_paths: list[str] | None = None, device: str | None = None,
        models_dirs: list[str] | None = None, threads: int | None = None, exit_after_ms: int | None = None,
        report: str | None = None) -> int:
    """Open the main window and run the event loop; returns the exit code.

    `exit_after_ms` and `report` serve end-to-end tests: quit after that long (as a user would, through close),
    and write the window's and widgets' screen geometry to `report` once the first preview is shown.
    """
    app = make_application()
    from studio.engine import Engine
    from studio.library import default_roots
    from studio.project import Autosave
    from studio.settings import load_or_reset_settings
    from studio.ui.main_window import MainWindow
    from studio.ui.session import Session

    from studio.logs import setup_logging

    setup_logging()
    user, settings_problem = load_or_reset_settings()  # a broken settings.toml never keeps the app from starting
    store = settings()
    try:
        if move_window_folders(store):
            user, _ = load_or_reset_settings()
    except StudioError as exc:  # kept in window.ini for the next start
        log.warning("the model folders of window.ini could not be moved to settings.toml: %s", exc)
    roots = default_roots([*user.model_folders, *(models_dirs or [])])
    engine = Engine(device=device or user.device or "auto", roots=roots, threads=threads)
    session = Session(engine, roots=roots)
    autosave = Autosave()
    window = MainWindow(session, store, autosave)
    from studio.ui.signals import SignalQuit

    quitter = SignalQuit(window.quit_for_signal, window)  # Ctrl+C / SIGTERM: quit cleanly, edits kept in the autosave
    if settings_problem:
        session.message.emit("warning", "Your settings could not be read and were reset", settings_problem)
    try:
        recovered = window.offer_recovery()
        autosave.start()
    except Exception as exc:  # never keep the app from starting over autosave trouble
        log.warning("autosave unavailable: %s", exc)
        session.message.emit("warning", "Autosave is off for this session", str(exc))
        recovered = False
        window.autosave = None
    if quitter.exit_code is not None:  # Ctrl+C / SIGTERM while the restore question was open: that autosave stays
        quitter.restore()
        if window.autosave is not None:
            window.autosave.finish()
        session.shutdown()
        return quitter.exit_code
    if not recovered:
        session.start(model)
        session.undo.setClean()
    for path in open_paths or []:
        window.open_path(Path(path))
    window.show()
    if report:
        _report_geometry_when_shown(window, report)
    if exit_after_ms:
        QTimer.singleShot(exit_after_ms, window.close)
    code = app.exec()
    quitter.restore()
    store.sync()  # the layout and recent files on disk now: the process may end without destructors (cli.end_process)
    session.shutdown()
    return quitter.exit_code if quitter.exit_code is not None else code


def move_window_folders(store: QSettings) -> list[Path]:
    """The model folders an older version kept in window.ini (invisible to the CLI), moved once into settings.toml,
    the one store of model folders; returns those moved. StudioError (the key kept) when settings.toml cannot be
    written."""
    from studio.settings import remember_model_folders

    value = store.value("model_folders")
    if value is None:
        return []
    try:
        listed = json.loads(value or "[]")
    except (TypeError, ValueError):
        listed = []
    folders = [Path(p) for p in listed if isinstance(p, str) and Path(p).is_dir()] if isinstance(listed, list) else []
    if folders:
        remember_model_folders(folders)
    store.remove("model_folders")
    store.sync()
    return folders


def _layout_report(window) -> dict:
    """What the layout tests check beyond rectangles: the window's minimum and its screen's available area, each
    dock's minimum height and whether the bottom docks are collapsed, how each parameter control is reached."""
    from studio.ui.layout import reach_report

    from PySide6.QtWidgets import QTabBar

    screen = window.screen().availableGeometry()
    tabs = {}
    for bar in window.findChildren(QTabBar):
        for i in range(bar.count()):
            r = bar.tabRect(i)
            if (bar.isVisible() and bar.tabText(i) in window.docks  # and not a stale bar under other widgets
                    and window.childAt(bar.mapTo(window, r.center())) is bar):
                at = bar.mapToGlobal(r.topLeft())
                tabs[bar.tabText(i)] = [at.x(), at.y(), r.width(), r.height()]
    entry = window.session.entry
    minimum = window.minimumSizeHint().expandedTo(window.minimumSize())
    return {"windowMinimum": [minimum.width(), minimum.height()],
            "screenArea": [screen.x(), screen.y(), screen.width(), screen.height()],
            "dockMinimumHeights": {title: dock.minimumSizeHint().height() for title, dock in window.docks.items()
                                   if dock.isVisible()},
            "bottomCollapsed": window.bottom_docks.collapsed,
            "dockTabs": tabs,
            "model": entry.manifest.id if entry is not None and entry.manifest is not None else "",
            "controls": reach_report(window, [window.prompt, window.latent])}


def _samples_shown(window) -> int:
    """How many samples the sound view holds (0 when it shows no sound)."""
    sound = window.audio_view.sound()
    return 0 if sound is None else int(len(sound))


def _report_geometry_when_shown(window, path: str) -> None:
    """Write the screen rectangles of the window's named widgets once the first image (or sound) is shown."""
    written: list[bool] = []

    def write(*_args) -> None:
        if not written:
            written.append(True)
            QTimer.singleShot(300, dump)

    def dump() -> None:
        data: dict[str, Any] = {}
        for widget in [window, *window.findChildren(object)]:
            name = getattr(widget, "objectName", lambda: "")()
            if not name or not hasattr(widget, "mapToGlobal") or not widget.isVisible():
                continue
            top_left = widget.mapToGlobal(widget.rect().topLeft())
            data[name] = [top_left.x(), top_left.y(), widget.width(), widget.height()]
        canvas = window.canvas
        r = canvas.image_rect()
        origin = canvas.mapToGlobal(canvas.rect().topLeft())
        data["previewImage"] = [origin.x() + int(r.x()), origin.y() + int(r.y()), int(r.width()), int(r.height())]
        data["ratio"] = window.devicePixelRatioF()
        data.update(_layout_report(window))
        # what a screenshot cannot tell a test without reading text: the status bar's message, the canvas's
        # cancelled note, how many progress bars show
        from PySide6.QtWidgets import QProgressBar

        data["state"] = {"status": window.statusBar().currentMessage(), "canvas_note": canvas.cancelled_note,
                         "progress_bars": sum(1 for bar in window.findChildren(QProgressBar) if bar.isVisible()),
                         "modified": window.isWindowModified(), "undo_index": window.session.undo.index(),
                         "focus": getattr(QApplication.focusWidget(), "objectName", lambda: "")(),
                         "sound_samples": _samples_shown(window), "timeline": window.timeline.state(),
                         "params": dict(session.request.params) if session.request is not None else {},
                         "seed": session.request.seed if session.request is not None else None,
                         "latent_values": len(session.request.latent or ()) if session.request is not None else 0}
        tmp = path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    session = window.session
    session.image_changed.connect(write)
    session.sound_changed.connect(write)
    again = Path(path + ".again")  # a test asks for a fresh report (after a model switch, a resize) by making it

    def poll() -> None:
        if written and again.exists():
            dump()
            again.unlink(missing_ok=True)

    timer = QTimer(window)
    timer.setInterval(100)
    timer.timeout.connect(poll)
    timer.start()
