"""The loss curve of the training dialog: every figure the trainer reports over the steps, a faint raw line and a
smoothed one each, in a bounded number of points however long the run."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

MAX_CURVE_POINTS = 2000  # per figure: older points are averaged in pairs beyond this
CURVE_COLOURS = ("#6cb4ff", "#ffb454", "#7bd88f", "#ff6b81", "#c792ea", "#4dd0e1")


class _Series:
    """One figure's points over steps; beyond MAX_CURVE_POINTS neighbouring points are averaged in pairs, and new ones
    arrive averaged over as many steps (`stride`), so a long run keeps its whole shape in a bounded list."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.values: list[float] = []
        self.stride = 1
        self._sum = 0.0
        self._count = 0
        self._first = 0.0
        self.latest = math.nan
        self.low = math.inf  # the lowest value seen (a log axis needs it positive)

    def add(self, step: float, value: float) -> None:
        if not math.isfinite(value):
            return
        self.latest = value
        self.low = min(self.low, value)
        if self._count == 0:
            self._first = step
        self._sum += value
        self._count += 1
        if self._count < self.stride:
            return
        self.steps.append(self._first)
        self.values.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0
        if len(self.values) > MAX_CURVE_POINTS:
            n = len(self.values) // 2 * 2
            v = np.asarray(self.values[:n]).reshape(-1, 2).mean(1).tolist()
            s = self.steps[:n:2]
            self.values, self.steps = v + self.values[n:], s + self.steps[n:]
            self.stride *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.steps, dtype=np.float64), np.asarray(self.values, dtype=np.float64)


def smooth(values: np.ndarray) -> np.ndarray:
    """A trailing moving average over about a thirtieth of the points (the first ones average what there is)."""
    n = len(values)
    window = max(1, n // 30)
    if window == 1 or n == 0:
        return values.copy()
    c = np.cumsum(np.concatenate([[0.0], values]))
    out = np.empty(n)
    out[:window] = c[1:window + 1] / np.arange(1, window + 1)
    out[window:] = (c[window + 1:] - c[1:n - window + 1]) / window
    return out


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class LossCurve(QWidget):
    """The loss figures over steps: a faint raw line and a smoothed one per figure, a legend with the newest values;
    the y axis is logarithmic while every value is positive."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainLossCurve")
        self.setToolTip("The training loss over the steps (faint: as measured; bright: smoothed). Lower is better.")
        self.setMinimumSize(260, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.series: dict[str, _Series] = {}

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add(self, step: int, figures: dict[str, float]) -> None:
        for name, value in figures.items():
            self.series.setdefault(name, _Series()).add(float(step), float(value))

    def point_count(self, name: str | None = None) -> int:
        chosen = [self.series[name]] if name is not None else self.series.values()
        return sum(len(s.values) for s in chosen)

    @property
    def log_scale(self) -> bool:
        return all(s.low > 0 for s in self.series.values() if s.values)

    def sizeHint(self) -> QSize:
        return QSize(480, 260)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        metrics = painter.fontMetrics()
        shown = {name: s.arrays() for name, s in self.series.items() if s.values}
        if not shown:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss curve appears once training starts")
            return
        logy = self.log_scale
        ys = np.concatenate([v for _, v in shown.values()])
        ys = np.log10(ys) if logy else ys
        xs = np.concatenate([s for s, _ in shown.values()])
        y0, y1 = float(ys.min()), float(ys.max())
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.5, y1 + 0.5
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
        x0, x1 = float(xs.min()), float(xs.max())
        if x1 <= x0:
            x1 = x0 + 1
        ticks = self._y_ticks(y0, y1, logy)
        label_width = max(metrics.horizontalAdvance(text) for _, text in ticks) if ticks else 0
        plot = QRectF(label_width + 10, 8, self.width() - label_width - 18, self.height() - metrics.height() - 16)
        if plot.width() < 20 or plot.height() < 20:
            return

        def px(x: np.ndarray) -> np.ndarray:
            return plot.left() + (x - x0) / (x1 - x0) * plot.width()

        def py(y: np.ndarray) -> np.ndarray:
            return plot.bottom() - (y - y0) / (y1 - y0) * plot.height()

        grid = QColor(self.palette().mid().color()).lighter(130)
        text = self.palette().placeholderText().color()
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        for value, label in ticks:
            y = float(py(np.float64(value)))
            painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - metrics.height() / 2, label_width + 4, metrics.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
        step = _nice_step(x1 - x0, max(2, int(plot.width() // 90)))
        painter.setPen(text)
        for i in range(math.ceil(x0 / step), math.floor(x1 / step) + 1):
            x = float(px(np.float64(i * step)))
            label = f"{i * step:g}"
            w = metrics.horizontalAdvance(label) + 4
            left = min(max(x - w / 2, plot.left() - w / 2), self.width() - w)  # the last label stays in view
            painter.drawText(QRectF(left, plot.bottom() + 3, w, metrics.height()), Qt.AlignmentFlag.AlignCenter, label)

        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setClipRect(plot.adjusted(-1, -1, 1, 1))
        for index, (name, (steps, values)) in enumerate(shown.items()):
            colour = QColor(CURVE_COLOURS[index % len(CURVE_COLOURS)])
            yv = np.log10(values) if logy else values
            faint = QColor(colour)
            faint.setAlpha(70)
            for line, pen in ((yv, QPen(faint, 1)), (smooth(yv), QPen(colour, 1.8))):
                painter.setPen(pen)
                points = [QPointF(x, y) for x, y in zip(px(steps).tolist(), py(line).tolist())]
                if len(points) == 1:
                    painter.drawEllipse(points[0], 1.5, 1.5)
                else:
                    painter.drawPolyline(QPolygonF(points))
        painter.setClipping(False)

        # the legend: one row per figure with its newest value, top right inside the plot
        rows = [(name, self.series[name].latest) for name in shown]
        texts = [f"{name}  {value:.4g}" for name, value in rows]
        width = max(metrics.horizontalAdvance(t) for t in texts) + 26
        box = QRectF(plot.right() - width - 6, plot.top() + 6, width, len(rows) * (metrics.height() + 2) + 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 140))
        painter.drawRoundedRect(box, 3, 3)
        for index, label in enumerate(texts):
            y = box.top() + 3 + index * (metrics.height() + 2)
            painter.setPen(QPen(QColor(CURVE_COLOURS[index % len(CURVE_COLOURS)]), 2.5))
            painter.drawLine(QPointF(box.left() + 6, y + metrics.height() / 2),
                             QPointF(box.left() + 18, y + metrics.height() / 2))
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(box.left() + 22, y, width - 22, metrics.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)

    @staticmethod
    def _y_ticks(y0: float, y1: float, logy: bool) -> list[tuple[float, str]]:
        """(position in plot units, label): decades on a log axis (1, 2, 5 within one decade), else round values."""
        if logy:
            first, last = math.ceil(y0), math.floor(y1)
            if last - first >= 1:
                every = max(1, math.ceil((last - first + 1) / 6))
                return [(float(e), f"{10.0 ** e:g}") for e in range(first, last + 1, every)]
            ticks = []
            for e in range(math.floor(y0), math.ceil(y1) + 1):
                for m in (1, 2, 5):
                    v = math.log10(m) + e
                    if y0 <= v <= y1:
                        ticks.append((v, f"{m * 10.0 ** e:.3g}"))
            return ticks or [(y0, f"{10 ** y0:.3g}"), (y1, f"{10 ** y1:.3g}")]
        step = _nice_step(y1 - y0, 5)
        return [(i * step, f"{i * step:.4g}") for i in range(math.ceil(y0 / step), math.floor(y1 / step) + 1)]
