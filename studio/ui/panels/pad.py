"""The Pad: a square 2-D latent pad, as the StyleGAN3 visualizer's latent widget. Drag the crosshair (or click
anywhere) and the preview follows live through the preview lane; a drag is one undoable step. Arrow keys nudge it
(Shift: further), a double-click centres it.

Two modes (studio.app.pad does the mapping; nothing here runs torch):
- Directions: x and y drive two number params of the model's latent side (principal directions d0 …, truncation,
  raw dimensions …), each its default ± a reach (default: half its slider's span, so the pad covers the slider);
- Seed corners: the latent is the blend of the latents of four corner seeds, computed once per corner set on the
  worker (the engine's latent job) and blended here per mouse move.

"Add as Keyframe" adds the current request (where the pad is) to the timeline, as Ctrl+K does.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                               QSizePolicy, QStackedWidget, QVBoxLayout, QWidget)

from studio.app.pad import (DIRECTIONS_MODE, PAD_MODES, SEEDS_MODE, SeedCorners, axes_request, axis_for,
                            corner_requests, default_reach, pad_params, pad_position, seed_blend_request)
from studio.latent.pad import CORNERS, clamp_point
from studio.params import ParamTable
from studio.request import MAX_SEED, RenderRequest
from studio.ui.panels.controls import SeedEdit

if TYPE_CHECKING:
    from studio.ui.session import Session

MODE_TEXT = {DIRECTIONS_MODE: "Directions", SEEDS_MODE: "Seed corners"}
NUDGE = 0.05  # an arrow key's step, in pad units (the pad is 2 wide); Shift: NUDGE_FAR
NUDGE_FAR = 0.25
MARGIN = 22  # px around the square for the axis labels
BACKGROUND, GRID, HANDLE, DIM = QColor(0x26, 0x26, 0x26), QColor(255, 255, 255, 40), QColor(0x3D, 0x8E, 0xE6), \
    QColor(0x8C, 0x8C, 0x8C)


class PadSquare(QWidget):
    """The square itself: emits `moved(x, y, gesture)` for a drag, a click, a nudge or a double-click (x right,
    y up, each in [-1, 1]; `gesture` is a key: moves with one key are one gesture)."""

    moved = Signal(float, float, str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("latentPad")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(64, 64)  # the right column must still fit a 720-pixel screen with a bottom dock open
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Drag to move through the latent (the preview follows); arrow keys nudge (Shift: further); "
                        "double-click centres")
        self.point = (0.0, 0.0)
        self.live = True  # the handle shows the current request (dimmed when the request is not on the pad)
        self.x_label, self.y_label = "", ""
        self.corner_labels: tuple[str, str, str, str] | None = None  # s00, s10, s01, s11 (seed mode)
        self.note = ""  # over the pad ("computing the corners…")
        self._gestures = 0
        self._dragging = False

    def sizeHint(self) -> QSize:
        return QSize(260, 260)

    def square(self) -> QRectF:
        """The pad's square in widget coordinates (the largest that fits, centred, inside the label margins)."""
        side = max(10.0, min(self.width(), self.height()) - 2.0 * MARGIN)
        return QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)

    def to_widget(self, x: float, y: float) -> QPointF:
        r = self.square()
        return QPointF(r.left() + (x + 1) / 2 * r.width(), r.bottom() - (y + 1) / 2 * r.height())

    def to_pad(self, at: QPointF) -> tuple[float, float]:
        r = self.square()
        return clamp_point((at.x() - r.left()) / r.width() * 2 - 1, (r.bottom() - at.y()) / r.height() * 2 - 1)

    def show_point(self, x: float, y: float, live: bool = True) -> None:
        self.point, self.live = clamp_point(x, y), live
        self.update()

    def _move(self, x: float, y: float, gesture: str) -> None:
        self.point, self.live = clamp_point(x, y), True
        self.update()
        self.moved.emit(self.point[0], self.point[1], gesture)

    def _gesture(self) -> str:
        self._gestures += 1
        return f"pad:{id(self)}:{self._gestures}"

    # --- input ------------------------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self.isEnabled():
            super().mousePressEvent(event)
            return
        self._dragging = True
        self._drag_key = self._gesture()
        self._move(*self.to_pad(event.position()), self._drag_key)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging and event.buttons() & Qt.MouseButton.LeftButton:
            self._move(*self.to_pad(event.position()), self._drag_key)
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._dragging and event.button() == Qt.MouseButton.LeftButton:
            self._dragging = False
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = False
            self._move(0.0, 0.0, self._gesture())
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        step = NUDGE_FAR if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else NUDGE
        delta = {Qt.Key.Key_Left: (-step, 0.0), Qt.Key.Key_Right: (step, 0.0), Qt.Key.Key_Up: (0.0, step),
                 Qt.Key.Key_Down: (0.0, -step)}.get(Qt.Key(event.key()))
        if delta is None:
            super().keyPressEvent(event)
            return
        if not event.isAutoRepeat() or not getattr(self, "_nudge_key", ""):
            self._nudge_key = self._gesture()  # a held arrow key is one step; each press another
        self._move(self.point[0] + delta[0], self.point[1] + delta[1], self._nudge_key)
        event.accept()

    # --- painting ---------------------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r = self.square()
        painter.fillRect(r, BACKGROUND)
        painter.setPen(QPen(GRID, 1))
        for k in range(1, 4):
            painter.drawLine(QPointF(r.left() + r.width() * k / 4, r.top()),
                             QPointF(r.left() + r.width() * k / 4, r.bottom()))
            painter.drawLine(QPointF(r.left(), r.top() + r.height() * k / 4),
                             QPointF(r.right(), r.top() + r.height() * k / 4))
        painter.drawRect(r)
        text = self.palette().windowText().color()
        painter.setPen(text)
        metrics = painter.fontMetrics()
        if self.x_label:
            painter.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), MARGIN - 2),
                             Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, f"{self.x_label} →")
        if self.y_label:
            painter.save()
            painter.translate(r.left() - 4, r.center().y())
            painter.rotate(-90)
            painter.drawText(QRectF(-r.height() / 2, -MARGIN + 2, r.height(), MARGIN - 2),
                             Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, f"{self.y_label} →")
            painter.restore()
        if self.corner_labels is not None:
            s00, s10, s01, s11 = self.corner_labels
            h = metrics.height()
            painter.setPen(DIM)
            painter.drawText(QRectF(r.left() + 3, r.bottom() - h - 2, r.width() / 2, h), Qt.AlignmentFlag.AlignLeft,
                             s00)
            painter.drawText(QRectF(r.center().x(), r.bottom() - h - 2, r.width() / 2 - 3, h),
                             Qt.AlignmentFlag.AlignRight, s10)
            painter.drawText(QRectF(r.left() + 3, r.top() + 2, r.width() / 2, h), Qt.AlignmentFlag.AlignLeft, s01)
            painter.drawText(QRectF(r.center().x(), r.top() + 2, r.width() / 2 - 3, h), Qt.AlignmentFlag.AlignRight,
                             s11)
        colour = HANDLE if self.live and self.isEnabled() else DIM
        at = self.to_widget(*self.point)
        painter.setPen(QPen(colour, 1))
        painter.drawLine(QPointF(r.left(), at.y()), QPointF(r.right(), at.y()))
        painter.drawLine(QPointF(at.x(), r.top()), QPointF(at.x(), r.bottom()))
        painter.setPen(QPen(colour, 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(at, 7, 7)
        if self.note:
            painter.setPen(text)
            painter.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.note)
        painter.end()


class PadPanel(QWidget):
    """The Pad dock: mode, the two params (or four corner seeds), their reach, the square, Add as Keyframe."""

    add_keyframe = Signal()  # Add as Keyframe: the pad's current request joins the timeline (the window adds it)

    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("padPanel")
        self.session = session
        self.table = ParamTable(())
        self.names: list[str] = []
        self.mode = QComboBox()
        self.mode.setObjectName("padMode")
        for mode in PAD_MODES:
            self.mode.addItem(MODE_TEXT[mode], mode)
        self.mode.setToolTip("Directions: x and y move two parameters. Seed corners: the latent blends the latents "
                             "of four seeds, one per corner (as the StyleGAN3 visualizer)")
        self.x_param, self.y_param = QComboBox(), QComboBox()
        self.x_reach, self.y_reach = QDoubleSpinBox(), QDoubleSpinBox()
        for axis, combo, reach in (("X", self.x_param, self.x_reach), ("Y", self.y_param, self.y_reach)):
            combo.setObjectName(f"pad{axis}Param")
            combo.setToolTip(f"The parameter the pad's {'horizontal' if axis == 'X' else 'vertical'} axis moves")
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
            reach.setObjectName(f"pad{axis}Range")
            reach.setPrefix("± ")
            reach.setDecimals(2)
            reach.setRange(0.01, 1000.0)
            reach.setSingleStep(0.5)
            reach.setToolTip("How far the pad reaches either side of the parameter's default (default: the "
                             "slider's range); values stay inside the parameter's limits")
        directions = QWidget()
        grid = QGridLayout(directions)
        grid.setContentsMargins(0, 0, 0, 0)
        for row, (axis, combo, reach) in enumerate((("X", self.x_param, self.x_reach),
                                                    ("Y", self.y_param, self.y_reach))):
            grid.addWidget(QLabel(axis), row, 0)
            grid.addWidget(combo, row, 1)
            grid.addWidget(reach, row, 2)
        grid.setColumnStretch(1, 1)
        self.seeds = [SeedEdit(f"padSeed{name[1:]}", f"Seed of the pad's {where} corner ({name}); Enter applies",
                               f"{where} seed", maximum=MAX_SEED)
                      for name, where in zip(CORNERS, ("bottom-left", "bottom-right", "top-left", "top-right"))]
        corners = QWidget()
        cgrid = QGridLayout(corners)
        cgrid.setContentsMargins(0, 0, 0, 0)
        for edit, (row, col) in zip(self.seeds, ((1, 0), (1, 1), (0, 0), (0, 1))):  # laid out as the corners lie
            cgrid.addWidget(edit, row, col)
        self.pages = QStackedWidget()
        self.pages.addWidget(directions)
        self.pages.addWidget(corners)
        self.pages.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.square = PadSquare()
        self.status = QLabel()
        self.status.setObjectName("padStatus")
        self.status.setWordWrap(True)
        self.keyframe = QPushButton("Add as Keyframe")
        self.keyframe.setObjectName("padKeyframe")
        self.keyframe.setToolTip("Add the request where the pad is to the timeline (as Ctrl+K)")
        top = QHBoxLayout()
        top.addWidget(QLabel("Mode"))
        top.addWidget(self.mode, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.keyframe)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.pages)
        layout.addWidget(self.square, 1)
        layout.addLayout(bottom)

        self.corners = SeedCorners(session.bridge, session.message.emit, self._on_corners_ready)
        self._pending: tuple[float, float, str] | None = None  # a seed-pad move waiting for its corners
        self._mine: RenderRequest | None = None  # the request the pad made last (its handle is live on it)
        session.model_changed.connect(self._on_model_changed)
        session.request_changed.connect(self._on_request_changed)
        self.mode.currentIndexChanged.connect(self._on_mode_changed)
        self.x_param.currentIndexChanged.connect(lambda: self._on_param_changed(self.x_param, self.x_reach))
        self.y_param.currentIndexChanged.connect(lambda: self._on_param_changed(self.y_param, self.y_reach))
        self.x_reach.valueChanged.connect(lambda: self._on_request_changed(session.request))
        self.y_reach.valueChanged.connect(lambda: self._on_request_changed(session.request))
        for edit in self.seeds:
            edit.returnPressed.connect(self._on_seeds_changed)
            edit.editingFinished.connect(self._on_seeds_changed)
            edit.stepped.connect(partial(self._step_seed, edit))
        self.square.moved.connect(self.move_to)
        session.directions.changed.connect(self._fill_params)  # named directions name the axes
        # the window adds it as Ctrl+K does (at the timeline's playhead, the Timeline forward); `clicked` passes a
        # bool that add_keyframe would take for an index
        self.keyframe.clicked.connect(lambda: self.add_keyframe.emit())
        self._on_model_changed(session.entry)

    # --- state ------------------------------------------------------------------------------------------------------
    @property
    def current_mode(self) -> str:
        return str(self.mode.currentData())

    def set_mode(self, mode: str) -> None:
        self.mode.setCurrentIndex(PAD_MODES.index(mode))

    def axes(self):
        return (axis_for(self.table, str(self.x_param.currentData()), self.x_reach.value()),
                axis_for(self.table, str(self.y_param.currentData()), self.y_reach.value()))

    def shown_name(self, param: str) -> str:
        """A param as the pad names it: a named direction by its name ("Bold"), others by their own ("d3", "ψ" …)."""
        return self.session.directions.names.label(param) or param

    def _fill_params(self) -> None:
        """The two combo boxes: every pad param, a named direction as "d0 · Bold" (the selection kept)."""
        for combo in (self.x_param, self.y_param):
            blocked = combo.blockSignals(True)
            for i in range(combo.count()):
                param = str(combo.itemData(i))
                shown = self.shown_name(param)
                combo.setItemText(i, f"{param} · {shown}" if shown != param else param)
            combo.blockSignals(blocked)
        self._on_request_changed(self.session.request)

    def corner_seeds(self) -> list[int] | None:
        seeds = [edit.seed() for edit in self.seeds]
        return None if any(s is None for s in seeds) else [int(s) for s in seeds if s is not None]

    def set_corner_seeds(self, seeds: list[int]) -> None:
        for edit, seed in zip(self.seeds, seeds):
            edit.setText(str(seed))
        self._on_seeds_changed()

    # --- session → pad ----------------------------------------------------------------------------------------------
    def _on_model_changed(self, entry) -> None:
        ok = entry is not None and getattr(entry, "ok", False) and entry.manifest is not None
        self.table = entry.parameters if ok else ParamTable(())
        self.names = pad_params(self.table)
        self.corners.forget()
        self._pending = None
        for combo, index in ((self.x_param, 0), (self.y_param, 1)):
            blocked = combo.blockSignals(True)
            combo.clear()
            for name in self.names:
                combo.addItem(name, name)
            combo.setCurrentIndex(min(index, len(self.names) - 1))
            combo.blockSignals(blocked)
        for combo, reach in ((self.x_param, self.x_reach), (self.y_param, self.y_reach)):
            self._on_param_changed(combo, reach, show=False)
        self._fill_params()
        request = self.session.request
        if request is not None:
            self.set_corner_seeds([request.seed + k for k in range(4)] if request.seed + 3 <= MAX_SEED
                                  else [request.seed - k for k in range(4)])
        self._on_mode_changed()

    def _on_param_changed(self, combo: QComboBox, reach: QDoubleSpinBox, show: bool = True) -> None:
        name = str(combo.currentData() or "")
        if name:
            blocked = reach.blockSignals(True)
            reach.setValue(default_reach(self.table, name))
            reach.blockSignals(blocked)
        if show:
            self._on_request_changed(self.session.request)

    def _on_mode_changed(self) -> None:
        seeds = self.current_mode == SEEDS_MODE
        self.pages.setCurrentIndex(int(seeds))
        usable = self.session.request is not None and (seeds or len(self.names) >= 2)
        self.square.setEnabled(usable)
        self.keyframe.setEnabled(self.session.request is not None)
        if seeds:
            self._fetch_corners()
        self._on_request_changed(self.session.request)

    def _on_request_changed(self, request: RenderRequest | None) -> None:
        self.keyframe.setEnabled(request is not None)
        if request is None:
            self.square.setEnabled(False)
            return
        if self.current_mode == DIRECTIONS_MODE:
            if len(self.names) < 2:
                self.square.setEnabled(False)
                self.square.x_label = self.square.y_label = ""
                self.square.corner_labels = None
                self._say("This model has fewer than two number parameters to put on a pad: use Seed corners")
                self.square.update()
                return
            self.square.setEnabled(True)
            x_axis, y_axis = self.axes()
            x_name, y_name = self.shown_name(x_axis.name), self.shown_name(y_axis.name)
            self.square.x_label, self.square.y_label = x_name, y_name
            self.square.corner_labels = None
            vx, vy = (self.table.value(request, a.name) for a in (x_axis, y_axis))
            vx = x_axis.base if vx is None else vx
            vy = y_axis.base if vy is None else vy
            self._say(f"{x_name} = {vx:.2f}, {y_name} = {vy:.2f}")
            self.square.show_point(*pad_position(request, self.table, x_axis, y_axis))
        else:
            seeds = self.corner_seeds()
            self.square.x_label = self.square.y_label = ""  # the corners carry their seeds
            self.square.corner_labels = tuple(str(s) for s in seeds) if seeds is not None else None  # type: ignore
            live = self._mine is not None and request.latent == self._mine.latent
            self.square.show_point(*self.square.point, live=live)
            if self.corners.pending:
                self._say("Computing the corners' latents…")
            elif self.corners.ready:
                self._say("Drag to blend the four corner seeds' latents" if not live else
                          f"Blend at x {self.square.point[0]:+.2f}, y {self.square.point[1]:+.2f}")

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.square.note = "Computing the corners…" if self.current_mode == SEEDS_MODE and self.corners.pending \
            else ""

    # --- pad → session ----------------------------------------------------------------------------------------------
    def move_to(self, x: float, y: float, gesture: str = "") -> None:
        """Make the request at pad point (x, y) current: one undoable step per `gesture` (a drag, a nudge)."""
        request = self.session.request
        if request is None:
            return
        merge = gesture or None
        if self.current_mode == DIRECTIONS_MODE:
            if len(self.names) < 2:
                return
            x_axis, y_axis = self.axes()
            try:
                moved = axes_request(request, self.table, x_axis, y_axis, x, y)
            except Exception as exc:  # noqa: BLE001 - a request the model refuses is said, never raised into Qt
                self.session.message.emit("error", "The pad cannot set that", getattr(exc, "problem", str(exc)))
                return
            self._mine = moved
            self.session.set_request(moved, f"Pad {x_axis.name}, {y_axis.name}", merge)
            return
        seeds = self.corner_seeds()
        if seeds is None:
            self._say("Type the four corner seeds first")
            return
        # the corners of this model, size and precision (asked again when any changed: a new set is fetched)
        if not self.corners.fetch(corner_requests(request, self.table, seeds)):
            self._pending = (x, y, gesture)
            self.square.show_point(x, y, live=False)
            self._on_request_changed(request)
            return
        assert self.corners.latents is not None
        kinds = self.session.core.latent_kinds(request.model_id)
        moved = seed_blend_request(request, self.table, kinds, self.corners.latents, x, y)
        self._mine = moved
        self.session.set_request(moved, "Pad seed blend", merge)

    def _step_seed(self, edit: SeedEdit, seed: int) -> None:
        """↑/↓ in a corner's seed field: the next or previous seed, applied at once."""
        edit.setText(str(seed))
        self._on_seeds_changed()

    def _on_seeds_changed(self) -> None:
        if self.current_mode == SEEDS_MODE:
            self._fetch_corners()
            self._on_request_changed(self.session.request)

    def _fetch_corners(self) -> None:
        request, seeds = self.session.request, self.corner_seeds()
        if request is None or seeds is None or not self.table.specs:
            return
        if self.corners.fetch(corner_requests(request, self.table, seeds)):
            return
        self._on_request_changed(request)

    def _on_corners_ready(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and self.current_mode == SEEDS_MODE:
            self.move_to(*pending)
        self._on_request_changed(self.session.request)
