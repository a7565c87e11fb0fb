"""The timeline's track: a ruler in seconds and frames, the keyframes as thumbnails at their times, a playhead, the
in and out points (outside them shaded), and the sound's waveform with the audio mappings' curves under it.

It paints the timeline it is given and says what the user did with signals; the panel turns those into session
edits (a drag of a keyframe is one undo step: its merge key carries the drag's number). Mouse: click or drag on the
ruler or an empty part of the track moves the playhead; drag a keyframe (not the first, which is the start) to
retime it; wheel zooms the time axis around the pointer, Shift+wheel (or a sideways wheel) scrolls it. Keys (when
the track has the focus): Space plays or stops, I / O set the in / out point at the playhead, Left / Right step a
frame, Home / End jump to the in / out point. The context menu does the same.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import (QColor, QContextMenuEvent, QFont, QImage, QKeyEvent, QMouseEvent, QPainter, QPainterPath,
                           QPaintEvent, QPen, QPixmap, QPolygonF, QWheelEvent)
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from studio.app.waveform import SoundSketch, columns, sketch_sound
from studio.errors import StudioError
from studio.project.timeline import Timeline
from studio.request import RenderRequest
from studio.ui.canvas import qimage_from_array

RULER_H = 24
THUMB_H = 44
TRACK_TOP = RULER_H + 4
TRACK_H = THUMB_H + 8
WAVE_TOP = TRACK_TOP + TRACK_H + 4
WAVE_H = 40
HEIGHT = WAVE_TOP + WAVE_H + 4
MARGIN = 12  # pixels left of time 0 at the default view
DRAG_START = 4  # pixels a press moves before it is a drag
MIN_SCALE, MAX_SCALE = 2.0, 4000.0  # pixels per second
MAX_KEYFRAME_THUMBS = 256  # thumbnails kept beyond the keyframes in use (undo brings old ones back)
# the audio mappings' curves, in the mapping table's order
CURVE_COLOURS = ("#e8a33d", "#4fc1e9", "#a0d468", "#ec87c0", "#ac92ec", "#ed5565")
# steps between labelled ticks, in seconds (sub-second ones are shown in frames)
SECOND_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)
TRACK_KEYS = (Qt.Key.Key_Space, Qt.Key.Key_I, Qt.Key.Key_O, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Home,
              Qt.Key.Key_End)


def curve_colour(index: int) -> QColor:
    return QColor(CURVE_COLOURS[index % len(CURVE_COLOURS)])


def time_label(seconds: float, fps: float, frames: bool) -> str:
    """A tick label: "3s", or with frames "1s 12f" ("12f" under a second)."""
    if not frames:
        whole = round(seconds)
        return f"{whole // 60}:{whole % 60:02d}" if whole >= 60 else f"{whole}s"
    frame = int(round(seconds * fps))
    per = max(1, int(round(fps)))
    s, f = divmod(frame, per)
    return f"{f}f" if s == 0 else (f"{s}s" if f == 0 else f"{s}s {f}f")


def tick_step(scale: float, fps: float, min_px: float = 64.0) -> tuple[float, bool]:
    """(seconds between labelled ticks, whether they are counted in frames) so that labels stay `min_px` apart.
    Frame steps divide a second (at 24 fps: 1, 2, 3, 4, 6, 8, 12 frames) so that every second is labelled."""
    frame = 1.0 / fps
    per = max(1, int(round(fps)))
    for n in (n for n in range(1, per) if per % n == 0):
        if n * frame * scale >= min_px:
            return n * frame, True
    for n in SECOND_STEPS:
        if n * scale >= min_px:
            return float(n), False
    return float(SECOND_STEPS[-1]) * math.ceil(min_px / (SECOND_STEPS[-1] * scale)), False


@dataclass
class _Press:
    x: float
    key: int | None  # the keyframe pressed (None: the ruler or the empty track)
    origin: float = 0.0  # the pressed keyframe's time
    dragging: bool = False


class TimelineTrack(QWidget):
    scrubbed = Signal(float)  # the user moved the playhead to this time (seconds)
    keyframe_selected = Signal(int)
    retimed = Signal(int, float, int)  # keyframe, new time, the drag's number (one undo step per drag)
    in_point_wanted = Signal(object)  # float | None: set (or clear) the in point
    out_point_wanted = Signal(object)
    play_toggled = Signal()
    stop_wanted = Signal()
    add_wanted = Signal()  # add the current request as a keyframe at the playhead

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("timelineTrack")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(False)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Click or drag the ruler to preview a time; drag a keyframe to retime it; wheel: zoom, "
                        "Shift+wheel: scroll; Space: play, I / O: in / out point at the playhead")
        self.timeline = Timeline()
        self.playhead = 0.0
        self.selected = -1
        self.scale = 80.0  # pixels per second
        self.offset = 0.0  # the time at x = MARGIN
        self.thumbs: dict[int, QImage] = {}  # keyframe index → its thumbnail (a placeholder box until there)
        self.sketch: SoundSketch | None = None
        self.sound_note = ""  # shown in the waveform lane when there is no sketch ("No sound", "Reading …")
        self.placeholder = "…"  # in a keyframe's box until its thumbnail comes
        self.playing = False
        self._press: _Press | None = None
        self._drags = 0
        self._zoomed = False  # the user zoomed or scrolled: the view no longer fits the timeline by itself
        self._static: QPixmap | None = None  # everything but the playhead, and what it was painted for
        self._static_key: tuple = ()

    # --- what the panel sets --------------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(600, HEIGHT)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(200, HEIGHT)

    def set_timeline(self, timeline: Timeline) -> None:
        self.timeline = timeline
        if not self._zoomed:  # until the user zooms or scrolls, the whole timeline shows
            self.fit()
        if self.selected >= len(timeline.keyframes):
            self.selected = len(timeline.keyframes) - 1
        self.update()

    def set_playhead(self, seconds: float) -> None:
        """Move the playhead (the view follows it when it leaves the visible part)."""
        self.playhead = max(0.0, float(seconds))
        x = self.x_of(self.playhead)
        if self._zoomed and (x < MARGIN or x > self.width() - 4):
            self.offset = max(0.0, self.playhead - (self.width() - 2 * MARGIN) * (0.1 if self.playing else 0.5)
                              / self.scale)
        self.update()

    def set_thumbnails(self, thumbs: dict[int, QImage]) -> None:
        self.thumbs = thumbs
        self.update()

    def set_sketch(self, sketch: SoundSketch | None, note: str = "") -> None:
        self.sketch, self.sound_note = sketch, note
        self.update()

    def set_selected(self, index: int) -> None:
        self.selected = index
        self.update()

    def set_playing(self, playing: bool) -> None:
        self.playing = playing
        self.update()

    def fit(self) -> None:
        """Show the whole timeline (or the first 10 s of an empty one), and keep fitting it as it changes or the
        track is resized, until the user zooms or scrolls."""
        length = max(self.timeline.length, self.timeline.starts[-1] if self.timeline.keyframes else 0.0)
        length = length if length > 0 else 10.0
        width = max(100, self.width() - 2 * MARGIN - THUMB_H * 3)  # room for the last keyframe's thumbnail
        self.scale = min(MAX_SCALE, max(MIN_SCALE, width / length))
        self.offset = 0.0
        self._zoomed = False
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if not self._zoomed:
            self.fit()

    # --- coordinates ------------------------------------------------------------------------------------------------
    def x_of(self, seconds: float) -> float:
        return MARGIN + (seconds - self.offset) * self.scale

    def time_at(self, x: float) -> float:
        return self.offset + (x - MARGIN) / self.scale

    def snapped(self, seconds: float) -> float:
        """`seconds` on the nearest frame (at the timeline's fps), never before 0."""
        fps = self.timeline.fps
        return max(0.0, round(seconds * fps) / fps)

    def thumb_rect(self, index: int) -> QRectF:
        """Where keyframe `index`'s thumbnail is drawn: its left edge at its time."""
        x = self.x_of(self.timeline.starts[index])
        image = self.thumbs.get(index)
        aspect = image.width() / image.height() if image is not None and image.height() else 1.0
        width = max(THUMB_H * 0.6, min(THUMB_H * 3.0, THUMB_H * aspect))
        return QRectF(x, TRACK_TOP + 4, width, THUMB_H)

    def keyframe_at(self, point: QPointF) -> int | None:
        """The keyframe under `point` (the one drawn on top: the later, or the selected one)."""
        hits = [i for i in range(len(self.timeline.keyframes)) if self.thumb_rect(i).contains(point)]
        if not hits:
            return None
        return self.selected if self.selected in hits else hits[-1]

    # --- painting ---------------------------------------------------------------------------------------------------
    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        """The playhead over a cached picture of the rest (ruler, keyframes, waveform, points): while playing, only
        the playhead moves, so a frame costs one pixmap copy."""
        ratio = self.devicePixelRatioF()
        key = (self.timeline, self.offset, self.scale, self.width(), self.height(), ratio, self.thumbs, self.sketch,
               self.sound_note, self.selected, self.hasFocus(), self.placeholder)
        if self._static is None or self._static_key != key:
            self._static = self._paint_static(ratio)
            self._static_key = key
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self._static)
        self._paint_playhead(painter)
        painter.end()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        if event.type() == QEvent.Type.PaletteChange:
            self._static = None
        super().changeEvent(event)

    def _paint_static(self, ratio: float) -> QPixmap:
        pixmap = QPixmap(max(1, round(self.width() * ratio)), max(1, round(self.height() * ratio)))
        pixmap.setDevicePixelRatio(ratio)
        palette = self.palette()
        pixmap.fill(palette.window().color())
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        base, text = palette.base().color(), palette.text().color()
        painter.fillRect(QRectF(0, TRACK_TOP, self.width(), TRACK_H), base)
        painter.fillRect(QRectF(0, WAVE_TOP, self.width(), WAVE_H), base.darker(110))
        self._paint_span(painter)
        self._paint_ruler(painter, text)
        self._paint_wave(painter, text)
        self._paint_keyframes(painter, text)
        self._paint_points(painter)
        if self.hasFocus():
            painter.setPen(QPen(palette.highlight().color(), 1))
            painter.drawRect(QRectF(0, 0, self.width() - 1, self.height() - 1))
        painter.end()
        return pixmap

    def _paint_span(self, painter: QPainter) -> None:
        """Shade what is outside the animation, and outside the in/out points."""
        timeline = self.timeline
        shade = QColor(0, 0, 0, 90)
        end = self.x_of(timeline.length) if timeline.length > 0 else self.x_of(0)
        painter.fillRect(QRectF(end, TRACK_TOP, max(0.0, self.width() - end), TRACK_H + 4 + WAVE_H), QColor(0, 0, 0, 40))
        if timeline.in_point is not None or timeline.out_point is not None:
            start, stop = timeline.span
            left, right = self.x_of(start), self.x_of(stop)
            painter.fillRect(QRectF(0, RULER_H, max(0.0, left), HEIGHT - RULER_H), shade)
            painter.fillRect(QRectF(right, RULER_H, max(0.0, self.width() - right), HEIGHT - RULER_H), shade)

    def _paint_ruler(self, painter: QPainter, text: QColor) -> None:
        fps = self.timeline.fps
        font = QFont(painter.font())
        font.setPixelSize(10)
        painter.setFont(font)
        step, frames = tick_step(self.scale, fps)
        first = max(0, math.floor(self.time_at(0) / step))
        last = math.ceil(self.time_at(self.width()) / step)
        minor = 1.0 / fps if frames or self.scale / fps >= 4 else step / 5
        painter.setPen(QPen(text.darker(150) if text.lightness() > 128 else text.lighter(200), 1))
        if minor * self.scale >= 4:
            t0 = max(0, math.floor(self.time_at(0) / minor))
            t1 = math.ceil(self.time_at(self.width()) / minor)
            for k in range(t0, min(t1, t0 + 4000) + 1):
                x = round(self.x_of(k * minor))
                painter.drawLine(x, RULER_H - 5, x, RULER_H - 1)
        painter.setPen(QPen(text, 1))
        for k in range(first, min(last, first + 1000) + 1):
            t = k * step
            x = round(self.x_of(t))
            painter.drawLine(x, RULER_H - 11, x, RULER_H - 1)
            painter.drawText(QPointF(x + 3, 11), time_label(t, fps, frames))
        painter.drawLine(0, RULER_H - 1, self.width(), RULER_H - 1)

    def _paint_keyframes(self, painter: QPainter, text: QColor) -> None:
        keys = self.timeline.keyframes
        highlight = self.palette().highlight().color()
        order = [i for i in range(len(keys)) if i != self.selected] + ([self.selected] if 0 <= self.selected < len(keys)
                                                                          else [])
        for i in order:
            rect = self.thumb_rect(i)
            if rect.right() < 0 or rect.left() > self.width():
                continue
            x = rect.left()
            painter.setPen(QPen(text, 1))
            painter.drawLine(QPointF(x, TRACK_TOP), QPointF(x, TRACK_TOP + TRACK_H))
            image = self.thumbs.get(i)
            if image is not None:
                painter.drawImage(rect, image)
            else:  # a placeholder until its render arrives
                painter.fillRect(rect, self.palette().alternateBase().color())
                painter.setPen(QPen(text, 1, Qt.PenStyle.DashLine))
                painter.drawRect(rect.adjusted(0, 0, -1, -1))
                painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.placeholder)
            painter.setPen(QPen(highlight if i == self.selected else text.darker(130), 2 if i == self.selected else 1))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
            label = QRectF(rect.left() + 2, rect.top() + 1, 20, 12)
            painter.fillRect(label, QColor(0, 0, 0, 140))
            painter.setPen(QPen(QColor("white"), 1))
            painter.drawText(label, Qt.AlignmentFlag.AlignCenter, str(i + 1))

    def _paint_wave(self, painter: QPainter, text: QColor) -> None:
        sketch = self.sketch
        mid = WAVE_TOP + WAVE_H / 2
        if self.sound_note:  # "No sound", "Reading x.wav …", a problem
            painter.setPen(QPen(text, 1))
            painter.drawText(QRectF(MARGIN, WAVE_TOP, self.width() - MARGIN, WAVE_H),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, self.sound_note)
        if sketch is None:
            return
        width = self.width()
        mins, maxs = columns(sketch, self.time_at(0), 1.0 / self.scale, width)
        peak = float(max(np.abs(mins).max(initial=0.0), np.abs(maxs).max(initial=0.0), 1e-6))
        half = WAVE_H / 2 - 2
        painter.setPen(QPen(text.darker(120) if text.lightness() > 128 else text.lighter(160), 1))
        top = np.round(mid - maxs / peak * half).astype(int)
        bottom = np.round(mid - mins / peak * half).astype(int)
        for x in np.flatnonzero(maxs > mins):
            painter.drawLine(int(x), int(top[x]), int(x), int(bottom[x]))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for k, curve in enumerate(sketch.curves):
            if not len(curve):
                continue
            high = float(np.abs(curve).max()) or 1.0
            t0 = max(0, int(math.floor(self.time_at(0) * sketch.fps)))
            t1 = min(len(curve), int(math.ceil(self.time_at(width) * sketch.fps)) + 1)
            step = max(1, (t1 - t0) // max(1, width))
            path = QPainterPath()
            for n, frame in enumerate(range(t0, t1, step)):
                point = QPointF(self.x_of(frame / sketch.fps), WAVE_TOP + WAVE_H - 2 - curve[frame] / high * (WAVE_H - 4))
                path.moveTo(point) if n == 0 else path.lineTo(point)
            painter.setPen(QPen(curve_colour(k), 1.5))
            painter.drawPath(path)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def _paint_points(self, painter: QPainter) -> None:
        colour = QColor("#3daee9")
        for point, sign in ((self.timeline.in_point, 1), (self.timeline.out_point, -1)):
            if point is None:
                continue
            x = self.x_of(point)
            painter.setPen(QPen(colour, 2))
            painter.drawLine(QPointF(x, 2), QPointF(x, HEIGHT - 2))
            painter.drawLine(QPointF(x, 2), QPointF(x + 6 * sign, 2))
            painter.drawLine(QPointF(x, HEIGHT - 2), QPointF(x + 6 * sign, HEIGHT - 2))

    def _paint_playhead(self, painter: QPainter) -> None:
        x = self.x_of(self.playhead)
        colour = QColor("#e5484d")
        painter.setPen(QPen(colour, 1))
        painter.drawLine(QPointF(x, RULER_H - 8), QPointF(x, HEIGHT))
        painter.setBrush(colour)
        painter.drawPolygon(QPolygonF([QPointF(x - 5, RULER_H - 10), QPointF(x + 5, RULER_H - 10),
                                       QPointF(x, RULER_H - 3)]))
        painter.setBrush(Qt.BrushStyle.NoBrush)

    # --- mouse and keys -----------------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        point = event.position()
        key = self.keyframe_at(point) if point.y() >= TRACK_TOP else None
        self._press = _Press(point.x(), key, self.timeline.starts[key] if key is not None else 0.0)
        if key is not None:
            self.selected = key
            self.keyframe_selected.emit(key)
            self.update()
        else:
            self._scrub(point.x())
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        press = self._press
        if press is None:
            return
        x = event.position().x()
        if press.key is None:
            self._scrub(x)
            return
        if press.key == 0:  # the first keyframe is the start: it does not move
            return
        if not press.dragging and abs(x - press.x) >= DRAG_START:
            press.dragging = True
            self._drags += 1
        if press.dragging:
            self.retimed.emit(press.key, self.snapped(press.origin + (x - press.x) / self.scale), self._drags)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._press = None
        event.accept()

    def _scrub(self, x: float) -> None:
        t = self.snapped(self.time_at(x))
        limit = max(self.timeline.length, self.timeline.starts[-1] if self.timeline.keyframes else 0.0)
        t = min(t, limit) if limit > 0 else 0.0
        if t != self.playhead or self._press is not None:
            self.playhead = t
            self.update()
            self.scrubbed.emit(t)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        delta = event.angleDelta()
        if delta.x() and not delta.y() or event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            steps = (delta.x() or delta.y()) / 120.0
            self.offset = max(0.0, self.offset - steps * 60.0 / self.scale)
            self._zoomed = True
        else:
            self.zoom(2 ** (delta.y() / 120.0 / 2), event.position().x())
        self.update()
        event.accept()

    def zoom(self, factor: float, x: float) -> None:
        """Zoom the time axis by `factor`, the time under `x` staying put."""
        anchor = self.time_at(x)
        self.scale = min(MAX_SCALE, max(MIN_SCALE, self.scale * factor))
        self.offset = max(0.0, anchor - (x - MARGIN) / self.scale)
        self._zoomed = True
        self.update()

    def event(self, event: QEvent) -> bool:
        """The track's keys win over the window's shortcuts while it has the focus (Esc only while playing: else
        it stays the window's Cancel Render)."""
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier \
                and (event.key() in TRACK_KEYS or event.key() == Qt.Key.Key_Escape and self.playing):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        frame = 1.0 / self.timeline.fps
        if key == Qt.Key.Key_Space:
            self.play_toggled.emit()
        elif key == Qt.Key.Key_Escape:
            self.stop_wanted.emit()
        elif key == Qt.Key.Key_I:
            self.in_point_wanted.emit(self.playhead)
        elif key == Qt.Key.Key_O:
            self.out_point_wanted.emit(self.playhead)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self._scrub(self.x_of(self.playhead + (frame if key == Qt.Key.Key_Right else -frame)))
        elif key == Qt.Key.Key_Home:
            self._scrub(self.x_of(self.timeline.span[0]))
        elif key == Qt.Key.Key_End:
            self._scrub(self.x_of(self.timeline.span[1]))
        else:
            return super().keyPressEvent(event)
        event.accept()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802
        menu = QMenu(self)
        at = f"{self.playhead:.2f} s"
        menu.addAction(f"Add Keyframe at {at}", self.add_wanted.emit)
        menu.addSeparator()
        menu.addAction(f"Set In Point at {at}\tI", lambda: self.in_point_wanted.emit(self.playhead))
        menu.addAction(f"Set Out Point at {at}\tO", lambda: self.out_point_wanted.emit(self.playhead))
        clear_in = menu.addAction("Clear In Point", lambda: self.in_point_wanted.emit(None))
        clear_out = menu.addAction("Clear Out Point", lambda: self.out_point_wanted.emit(None))
        clear_in.setEnabled(self.timeline.in_point is not None)
        clear_out.setEnabled(self.timeline.out_point is not None)
        menu.addSeparator()
        menu.addAction("Fit the Timeline", self.fit)
        menu.exec(event.globalPos())


class KeyframeThumbnails(QObject):
    """Thumbnails of keyframe requests, rendered one at a time as tasks of the session's runner (the export lane:
    never torch here) and kept by request; `changed` when one arrives. Sound models' keyframes get none."""

    changed = Signal()

    def __init__(self, session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.cache: dict[RenderRequest, QImage] = {}
        self._wanted: list[RenderRequest] = []
        self._pending: RenderRequest | None = None
        self._failed: set[RenderRequest] = set()
        self.placeholder = "…"  # what a keyframe without a thumbnail shows ("♪": a sound model's, which has none)

    def for_keyframes(self, timeline: Timeline) -> dict[int, QImage]:
        """The thumbnails there are for `timeline`'s keyframes (by index); those missing are asked for."""
        requests = [k.request for k in timeline.keyframes]
        entry = self.session.entry_for(requests[0].model_id) if requests else None
        images = entry is not None and entry.manifest is not None and entry.manifest.output.kind == "image"
        self.placeholder = "…" if images or not requests else "♪"
        self._wanted = [r for r in requests if r not in self.cache and r not in self._failed] if images else []
        if len(self.cache) > 4 * MAX_KEYFRAME_THUMBS:  # keep those in use (undo may bring others back: re-rendered)
            self.cache = {r: self.cache[r] for r in requests if r in self.cache}
        self._next()
        return {i: self.cache[r] for i, r in enumerate(requests) if r in self.cache}

    def _next(self) -> None:
        if self._pending is not None or not self._wanted:
            return
        request = self._pending = self._wanted.pop(0)

        def done(output) -> None:
            self._pending = None
            if output.kind == "image":
                image = qimage_from_array(output.data)
                self.cache[request] = image.scaledToHeight(THUMB_H * 2, Qt.TransformationMode.SmoothTransformation)
                self.changed.emit()
            self._next()

        def failed(_text: str = "", _detail: str = "") -> None:  # (the preview shows the model's own error)
            self._pending = None
            self._failed.add(request)
            self._next()

        def cancelled() -> None:  # Esc: asked for again when the timeline next changes
            self._pending = None

        self.session.bridge.run(request, "Keyframe thumbnail", on_done=done, on_error=failed,
                                on_cancelled=cancelled)


class SoundSketcher(QObject):
    """Sketches of the timeline's sound (studio.app.waveform), made on a worker thread once per sound, fps and
    mappings; `ready(sketch or None, note)` on the GUI thread with the newest one."""

    ready = Signal(object, str)
    _done = Signal(object, object, str)  # key, sketch, note: from the worker thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._key: tuple | None = None
        self._done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)

    def want(self, path: Path | None, fps: float, mappings: tuple) -> None:
        key = (str(path) if path is not None else None, fps, mappings)
        if key == self._key:
            return
        self._key = key
        if path is None:
            self.ready.emit(None, "No sound")
            return
        self.ready.emit(None, f"Reading {path.name} …")
        threading.Thread(target=self._work, args=(key, path, fps, mappings), name="sound-sketch", daemon=True).start()

    def _work(self, key: tuple, path: Path, fps: float, mappings: tuple) -> None:
        peaks: list[SoundSketch] = []

        def first(sketch: SoundSketch) -> None:  # the waveform shows while the curves are computed
            peaks.append(sketch)
            self._done.emit(key, sketch, "Computing the mappings' curves …")

        sketch: SoundSketch | None
        try:
            sketch, note = sketch_sound(path, fps, mappings, on_peaks=first), ""
        except (StudioError, ValueError, OSError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            sketch, note = (peaks[0] if peaks else None), f"Cannot draw {path.name}: {problem}"
        self._done.emit(key, sketch, note)

    @Slot(object, object, str)
    def _on_done(self, key: tuple, sketch: SoundSketch | None, note: str) -> None:
        if key == self._key:  # not a sketch of a sound replaced since
            self.ready.emit(sketch, note)
