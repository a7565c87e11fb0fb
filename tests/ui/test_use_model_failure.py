""""Use Model" on a model whose weights cannot be used, in the model browser over the real engine (offscreen): one
line says why (no traceback in the details), the previous model stays current (its "(current)" mark too), and the
package is shown as invalid. A truncated package is found when its folder is added, before any Use Model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.engine import Engine
from studio.manifest import WEIGHTS_NAME
from studio.ui.panels.models import ModelBrowser, details_html
from studio.ui.session import Session

from conftest import make_tiny_package


@pytest.fixture
def real(qtbot, models_dir):
    engine = Engine(device="cpu", roots=[models_dir], threads=1)
    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    messages: list[tuple[str, str, str]] = []
    session.message.connect(lambda *args: messages.append(args))
    with qtbot.waitSignal(session.rendered, timeout=20000):
        session.start("tiny")
    browser = ModelBrowser(session)
    qtbot.addWidget(browser)
    yield session, browser, messages
    session.undo.clear()
    engine.shutdown()


def _nan_weights(folder):
    weights = folder / WEIGHTS_NAME
    tensors = load_file(str(weights))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()},
              str(weights))


def test_a_model_that_fails_to_load_leaves_the_previous_one_current(qtbot, real, tmp_path):
    session, browser, messages = real
    bad = make_tiny_package(tmp_path / "more" / "broken", "broken", seed=5)
    _nan_weights(bad)  # a whole file (the header fits): only loading finds the NaN values
    [added] = session.add_model_folder(bad)
    assert added.ok
    assert browser.select("broken")
    browser._use.click()
    qtbot.waitUntil(lambda: any(m[1].startswith("Cannot use model") for m in messages), timeout=20000)
    qtbot.waitUntil(lambda: not session.bridge.busy, timeout=20000)
    level, text, detail = next(m for m in messages if m[1].startswith("Cannot use model"))
    assert level == "error" and "\n" not in text and str(bad / WEIGHTS_NAME) in text and "NaN" in text
    assert "Traceback" not in detail and not any("Traceback" in m[2] for m in messages)
    assert not any(m[1].startswith("Render failed") for m in messages)  # said once
    # the previous model is current again, and marked so
    assert session.request.model_id == "tiny" and session.entry.id == "tiny"
    assert browser.select("tiny")
    assert "(current)" in browser._details.toHtml()
    assert browser.select("broken")
    shown = browser._details.toHtml()
    assert "(current)" not in shown and "invalid" in shown and "NaN" in shown and "Traceback" not in shown
    assert not session.entry_for("broken").ok and not browser._use.isEnabled()
    # the app still renders the previous model
    with qtbot.waitSignal(session.rendered, timeout=20000):
        session.set_param("d0", 1.0, "d0")


def test_a_truncated_model_is_invalid_at_add_and_use_model_keeps_the_current_one(qtbot, real, tmp_path):
    session, browser, messages = real
    bad = make_tiny_package(tmp_path / "more" / "cut", "cut", seed=6)
    weights = bad / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-64])
    browser.open_folder_dialog = lambda: str(bad.parent)
    browser._open.click()
    entry = session.entry_for("cut")
    assert entry is not None and not entry.ok and "truncated" in str(entry.error)
    errors = [m for m in messages if m[0] == "error"]
    assert len(errors) == 1 and "cut" in errors[0][1] and str(weights) in errors[0][1]
    assert "Traceback" not in errors[0][2]
    assert browser.select("cut") and not browser._use.isEnabled()
    assert "truncated" in details_html(entry)
    assert session.use_model("cut") is False  # (a double-click or Enter goes the same way)
    assert session.request.model_id == "tiny"
    messages.clear()
    browser._activate(entry)  # a double-click on it: one line says why, nothing changes
    assert session.request.model_id == "tiny" and session.entry.id == "tiny"
    assert len(messages) == 1 and messages[0][0] == "error" and messages[0][1].startswith("Cannot use model cut: ")
    assert "truncated" in messages[0][1] and "\n" not in messages[0][1] and "Traceback" not in messages[0][2]


def test_a_good_model_still_becomes_current(qtbot, real, tmp_path):
    session, browser, messages = real
    with qtbot.waitSignal(session.rendered, timeout=20000):
        assert session.use_model("tiny-plain")
    assert session.entry.id == "tiny-plain" and session._trying is None
    assert not any(m[0] == "error" for m in messages)
