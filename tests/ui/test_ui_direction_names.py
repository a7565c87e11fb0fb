"""Named directions in the latent panel (studio.ui.panels.direction_names), offscreen over the fake engine: a
double-click on a direction's label renames it (one undo step), the slider, its tooltip and its undo steps say the
name, the set row saves and lists sets, and a model change shows that model's names."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.app.direction_sets import NONE_KEY, user_sets_dir
from studio.latent.direction_sets import read_set
from studio.ui.panels.direction_names import DirectionLabels, DirectionSetBar
from studio.ui.panels.latent import LatentPanel


def _panel(qtbot, session) -> LatentPanel:
    panel = LatentPanel(session)
    qtbot.addWidget(panel)
    panel.show()
    return panel


def test_double_click_renames_a_direction_as_one_undo_step(qtbot, session, monkeypatch):
    panel = _panel(qtbot, session)
    assert panel.direction_bar is not None and panel.direction_bar.objectName() == "directionSetBar"
    asked = []
    monkeypatch.setattr(DirectionLabels, "ask_name",
                        lambda self, index, current: asked.append((index, current)) or "Bold")
    caption = panel.controls["d1"].caption
    assert caption.text() == "Dir 2"
    qtbot.mouseDClick(caption, Qt.MouseButton.LeftButton)
    assert asked == [(1, "")]
    assert caption.text() == "Bold"
    assert "Bold — principal direction d1" in panel.controls["d1"].editor.toolTip()
    assert session.undo.stack.undo_text == "Name d1 'Bold'"
    assert session.request.params.get("d1") is None  # a name is a label: the request is unchanged

    slider = panel.sliders["d1"]
    slider.slider.setValue(slider._raw(1.2))
    assert session.undo.stack.undo_text == "Bold +1.20"  # the Edit menu and the history say the name
    session.undo.stack.undo()
    session.undo.stack.undo()
    assert caption.text() == "Dir 2" and session.directions.names.name(1) == ""
    session.undo.stack.redo()
    assert caption.text() == "Bold"


def test_a_taken_name_is_refused_in_the_message_area(qtbot, session):
    panel = _panel(qtbot, session)
    said = []
    session.message.connect(lambda *m: said.append(m))
    assert panel.direction_labels.set_name(0, "Bold")
    assert not panel.direction_labels.set_name(2, "bold")
    assert said[-1][0] == "error" and "Cannot name direction d2" in said[-1][1] and "already called" in said[-1][1]
    assert panel.controls["d2"].caption.text() == "Dir 3"


def test_save_lists_the_set_and_a_model_change_shows_that_models_names(qtbot, session, monkeypatch):
    panel = _panel(qtbot, session)
    panel.direction_labels.set_name(0, "Bold")
    bar = panel.direction_bar
    assert bar.combo.currentText() == "No names *"  # unsaved names
    monkeypatch.setattr(DirectionSetBar, "ask_set_name", lambda self: "Weights")
    qtbot.mouseClick(bar.save_button, Qt.MouseButton.LeftButton)
    path = user_sets_dir("tiny") / "Weights.lsdirs"
    assert read_set(path).find("Bold").index == 0
    assert [bar.combo.itemText(i) for i in range(bar.combo.count())] == ["No names", "Weights"]
    assert bar.combo.currentText() == "Weights"

    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.use_model("tiny-plain")
    assert panel.controls["d0"].caption.text() == "Dir 1"
    assert panel.direction_bar is not None and panel.direction_bar.combo.currentData() == NONE_KEY
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.use_model("tiny")
    assert panel.controls["d0"].caption.text() == "Bold"
    assert panel.direction_bar.combo.currentText() == "Weights"

    panel.direction_bar.combo.setCurrentIndex(0)
    panel.direction_bar.combo.activated.emit(0)
    assert panel.controls["d0"].caption.text() == "Dir 1"


def test_importing_a_set_for_another_model_says_why(qtbot, session, tmp_path):
    panel = _panel(qtbot, session)
    panel.direction_labels.set_name(0, "Bold")
    shared = session.directions.names.export(tmp_path / "tiny.lsdirs")
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.use_model("tiny-plain")
    said = []
    session.message.connect(lambda *m: said.append(m))
    assert not panel.direction_bar.import_path(shared)
    assert said[-1][0] == "error" and "Cannot import tiny.lsdirs" in said[-1][1]
    assert "made for model 'tiny', not 'tiny-plain'" in said[-1][1] and str(shared) in said[-1][2]


def test_the_history_tooltip_says_a_named_directions_name(qtbot, session):
    from PySide6.QtWidgets import QListWidget

    from studio.project import HistoryEntry
    from studio.request import RenderRequest
    from studio.ui.panels.history import HistoryStrip

    strip = HistoryStrip(session)
    qtbot.addWidget(strip)
    session.directions.names.rename(0, "Bold")
    request = RenderRequest("tiny", seed=3, params={"d0": 1.5, "d2": -1.0})
    session.document.add_history(HistoryEntry(request, 0.5, "2026-01-02T03:04:05+00:00", b""))
    session.history_changed.emit()
    listing = strip.findChild(QListWidget, "historyList")
    tip = listing.item(listing.count() - 1).toolTip()
    assert "Bold (d0) +1.50" in tip and "d2 -1.00" in tip, tip


def test_a_suggested_amount_and_layer_range_are_kept_with_a_name_and_applied_in_one_step(qtbot, engine, tmp_path):
    from conftest import make_tiny_gan_package
    from studio.ui.session import Session

    root = tmp_path / "gans"
    make_tiny_gan_package(root / "tiny-gan", "tiny-gan")
    session = Session(engine, roots=[root])
    session.refresh_models()
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny-gan")
    panel = _panel(qtbot, session)
    labels = panel.direction_labels
    assert labels.set_name(1, "Bold")
    session.change("Edit", params={**session.request.params, "d1": 1.25, "layer_start": 1, "layer_end": 3})
    assert labels.suggest(1)
    entry = session.directions.names.names()[1]
    assert entry.amount == 1.25 and entry.layers == (1, 3)
    assert session.undo.stack.undo_text == "Suggest +1.25, layers 1 to 3 for Bold"
    path = session.directions.names.save("GAN")
    assert read_set(path).find("Bold").layers == (1, 3)  # written with the set

    session.change("Back", params={k: v for k, v in session.request.params.items()
                                   if k not in ("d1", "layer_start", "layer_end")})
    before = session.undo.stack.index
    labels.apply_suggestion(1)
    params = session.request.params
    assert (params["d1"], params["layer_start"], params["layer_end"]) == (1.25, 1, 3)
    assert session.undo.stack.index == before + 1 and session.undo.stack.undo_text == "Bold suggestion"
    assert "Suggested: amount +1.25, layers 1 to 3" in panel.controls["d1"].editor.toolTip()
    session.undo.clear()


def test_a_long_name_is_cut_on_the_label_and_whole_in_the_tooltip(qtbot, session):
    panel = _panel(qtbot, session)
    name = "Heavier strokes with rounder counters"
    assert panel.direction_labels.set_name(3, name)
    caption = panel.controls["d3"].caption
    assert caption.text() == "Heavier strokes w…" and caption.toolTip().startswith(name)
