"""The conditions panel: what the model's family declares in the groups Conditions (a text prompt, a negative prompt,
a class …), Sampler (sampler, steps, guidance, η; width × height for models that draw at any size) and Image to image
(the init image and its strength), each control made from its spec (studio.ui.panels.controls, laid out by studio.ui.panels.param_panel)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from studio.params import CONDITION_GROUPS, CONDITIONS
from studio.ui.panels.controls import ImageControl, ranges
from studio.ui.panels.param_panel import INIT_IMAGE, FittingScrollArea, ParamPanel, shown_specs

if TYPE_CHECKING:
    from studio.ui.session import Session

__all__ = ["PromptPanel", "ranges"]

NO_CONDITION = "This model takes no condition: its latent decides everything."
FIT_HEIGHT = 150  # the panel asks for all its controls up to this height, then scrolls (the window fits 720 px)


class PromptPanel(ParamPanel):
    def __init__(self, session: "Session", parent: QWidget | None = None):
        super().__init__(session, parent)
        self.setObjectName("promptPanel")
        self.none_note = QLabel(NO_CONDITION)
        self.none_note.setObjectName("noConditionNote")
        self.none_note.setWordWrap(True)
        self._none_box = QGroupBox(CONDITIONS)
        QVBoxLayout(self._none_box).addWidget(self.none_note)

        content = QWidget()
        self._layout = QVBoxLayout(content)
        self._layout.addWidget(self._none_box)
        self._layout.addStretch(1)
        self._scroll = FittingScrollArea(content, FIT_HEIGHT)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._scroll)

        session.model_changed.connect(self._on_model_changed)
        session.request_changed.connect(self._on_request_changed)
        self._on_model_changed(session.entry)

    def _on_model_changed(self, entry) -> None:
        self._forget_controls()
        self._adopt(entry)
        specs = shown_specs(self.table)
        at = self._layout.indexOf(self._none_box) + 1
        for group in group_names(specs):
            box = self._build_group(group, [s for s in specs if s.group == group])
            self._layout.insertWidget(at, box)
            at += 1
        self._none_box.setVisible(entry is not None and CONDITIONS not in self.boxes)
        self._on_request_changed(self.session.request)

    def _on_request_changed(self, request) -> None:
        self.setEnabled(request is not None)
        self._show_params(request)

    def init_image_dialog(self) -> None:
        """Ctrl+I on a model that starts from a picture: the picker of its init image (else its first image param)."""
        pickers = [c for c in self.controls.values() if isinstance(c, ImageControl)]
        pickers.sort(key=lambda c: c.name != INIT_IMAGE)
        if pickers:
            pickers[0].button.click()


def group_names(specs) -> list[str]:
    """The conditions panel's groups present in `specs`, in the panel's order."""
    present = {s.group for s in specs}
    return [g for g in CONDITION_GROUPS if g in present]
