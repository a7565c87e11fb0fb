"""The window never loads a model folder because a file named it: a picture, a sound or a project whose model is a
folder that is not installed asks first (a Qt-free FolderQuestion; the dialog only shows it, No by default). No keeps
the document as it was and reads nothing of the folder; Yes adds the folder (as File → Open Model Folder does) and
renders. A project the app saved for a folder the user added reopens without asking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_audio_package, make_tiny_package
from studio.app.document import OpenDocument
from studio.app.models import FolderQuestion, ModelLibrary, never
from studio.export import save_audio, save_image
from studio.io.weights import sha256_file
from studio.limits import quote
from studio.project import Document, ModelRef, load_document, save_document
from studio.request import RenderRequest
from studio.settings import load_settings


@pytest.fixture(autouse=True)
def _no_shipped_models(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_SHIPPED_MODELS", str(tmp_path_factory.mktemp("shipped")))


@pytest.fixture
def evil(tmp_path) -> Path:
    return make_tiny_package(tmp_path / "Downloads" / "evil", "evil", seed=5)


@pytest.fixture
def looked_into(monkeypatch) -> list[Path]:
    """Every package folder discovery checked (a folder never checked was never read)."""
    import studio.library as library

    seen: list[Path] = []
    check = library._check
    monkeypatch.setattr(library, "_check", lambda entry: (seen.append(entry.folder.resolve()), check(entry))[1])
    return seen


class Asker:
    """A stub user: records each question and gives `answer`."""

    def __init__(self, answer: bool):
        self.answer, self.questions = answer, []

    def __call__(self, question: FolderQuestion) -> bool:
        self.questions.append(question)
        return self.answer


def started(models_dir: Path, tmp_path: Path, answer: bool | None) -> tuple[OpenDocument, list, list]:
    library = ModelLibrary([models_dir], settings_file=tmp_path / "settings.toml")
    doc = OpenDocument(library)
    messages: list = []
    wanted: list = []
    library.message.connect(lambda *m: messages.append(m))
    doc.render_wanted.connect(wanted.append)
    doc.start("tiny")
    if answer is not None:
        doc.ask_folder = Asker(answer)
    return doc, messages, wanted


def picture_for(path: Path, folder: Path | str, sha256: str = "") -> Path:
    request = RenderRequest(model_id=str(folder), model_hash=sha256, seed=11, params={"prompt": "Ab"})
    return save_image(path, np.zeros((16, 32), np.uint8), request)


# --- the question ---------------------------------------------------------------------------------------------------


def test_the_question_shows_the_folder_the_hash_and_what_a_model_can_do():
    question = FolderQuestion("/x/photo.png", "/home/u/Downloads/evil", "ab" * 32)
    assert question.title == "Load the model in this folder?"
    assert "photo.png" in question.text and quote("/home/u/Downloads/evil") in question.text
    assert "sha256 abababababababab" in question.text and "Add it to your model folders?" in question.text
    assert "runs when it renders" in question.detail and "trust" in question.detail
    assert never(question) is False  # nobody to ask: No


# --- a picture or a sound -------------------------------------------------------------------------------------------


def test_no_keeps_the_document_and_reads_nothing_of_the_folder(models_dir, tmp_path, evil, looked_into):
    doc, messages, wanted = started(models_dir, tmp_path, answer=False)
    sha = sha256_file(evil / "weights.safetensors")
    picture = picture_for(tmp_path / "photo.png", evil, sha)
    before, steps, rendered = doc.request, doc.undo.count, len(wanted)
    looked_into.clear()
    assert not doc.restore_from_file(picture)
    assert doc.ask_folder.questions == [FolderQuestion(str(picture), str(evil), sha)]
    assert doc.request == before and doc.undo.count == steps and len(wanted) == rendered
    assert doc.models.entry_for("evil") is None and evil not in doc.models.extra_folders
    assert looked_into == [] and load_settings(tmp_path / "settings.toml").model_folders == []
    level, text, detail = messages[-1]
    assert level == "warning" and quote(str(evil)) in text and "unchanged" in detail


def test_yes_adds_the_folder_and_renders_the_request(models_dir, tmp_path, evil):
    doc, messages, wanted = started(models_dir, tmp_path, answer=True)
    sha = sha256_file(evil / "weights.safetensors")
    assert doc.restore_from_file(picture_for(tmp_path / "photo.png", evil, sha))
    assert doc.request.model_id == "evil" and doc.request.seed == 11 and doc.entry.id == "evil"
    assert wanted[-1] == doc.request  # handed to the engine by the installed id
    assert [str(f) for f in load_settings(tmp_path / "settings.toml").model_folders] == [str(evil)]
    assert doc.undo.undo_text == "Restore photo.png"


def test_a_sound_asks_the_same_way(models_dir, tmp_path):
    folder = make_tiny_audio_package(tmp_path / "Downloads" / "drums", "drums", seed=2)
    doc, _, _ = started(models_dir, tmp_path, answer=False)
    sound = save_audio(tmp_path / "hit.wav", np.zeros(800, np.float32), 8000,
                       RenderRequest(model_id=str(folder), params={"label": "kick"}))
    assert not doc.restore_from_file(sound) and doc.ask_folder.questions[0].folder == str(folder)
    doc.ask_folder = Asker(True)
    assert doc.restore_from_file(sound) and doc.request.model_id == "drums"


def test_without_an_asker_the_answer_is_no(models_dir, tmp_path, evil):
    doc, _, _ = started(models_dir, tmp_path, answer=None)
    assert not doc.restore_from_file(picture_for(tmp_path / "photo.png", evil))
    assert doc.models.entry_for("evil") is None


def test_an_installed_package_is_used_without_asking(models_dir, tmp_path):
    doc, _, _ = started(models_dir, tmp_path, answer=False)
    sha = sha256_file(models_dir / "tiny-plain" / "weights.safetensors")
    # the folder's own path, and a path elsewhere with the installed package's name and weights
    for folder in (models_dir / "tiny-plain", tmp_path / "Downloads" / "tiny-plain"):
        request = RenderRequest(model_id=str(folder), model_hash=sha, seed=2)
        assert doc.restore_from_file(save_image(tmp_path / "p.png", np.zeros((16, 16), np.uint8), request))
        assert doc.request.model_id == "tiny-plain"
    assert doc.ask_folder.questions == []


# --- a project ------------------------------------------------------------------------------------------------------


def project_for(tmp_path: Path, folder: Path, model_id: str = "evil") -> Path:
    request = RenderRequest(model_id, seed=4, params={"prompt": "Ab"})
    return save_document(Document(request, models=[ModelRef("evil", "", "Evil", str(folder))]),
                         tmp_path / "shared.lstudio")


@pytest.mark.parametrize("model_id", ["evil", "path"])
def test_a_project_naming_a_folder_asks_and_no_keeps_the_open_document(models_dir, tmp_path, evil, looked_into,
                                                                        model_id):
    doc, messages, wanted = started(models_dir, tmp_path, answer=False)
    path = project_for(tmp_path, evil, str(evil) if model_id == "path" else "evil")
    before, rendered = doc.request, len(wanted)
    looked_into.clear()
    assert not doc.open(path)
    assert [q.folder for q in doc.ask_folder.questions] == [str(evil)]
    assert doc.path is None and doc.request == before and len(wanted) == rendered and looked_into == []
    assert messages[-1][0] == "warning" and "shared.lstudio" in messages[-1][1]


@pytest.mark.parametrize("model_id", ["evil", "path"])
def test_a_project_naming_a_folder_opens_when_the_user_says_yes(models_dir, tmp_path, evil, model_id):
    doc, _, wanted = started(models_dir, tmp_path, answer=True)
    assert doc.open(project_for(tmp_path, evil, str(evil) if model_id == "path" else "evil"))
    assert doc.entry.id == "evil" and doc.request.model_id == "evil" and wanted[-1] == doc.request
    assert len(doc.ask_folder.questions) == 1


def test_a_project_saved_for_a_folder_the_user_added_reopens_without_asking(tmp_path, models_dir, evil):
    settings = tmp_path / "settings.toml"
    library = ModelLibrary(None, settings_file=settings)
    doc = OpenDocument(library)
    doc.start()
    assert library.add_model_folder(evil)  # File → Open Model Folder: the user's choice, remembered
    assert doc.use_model("evil")
    doc.note_render(doc.request, {"model_sha256": sha256_file(evil / "weights.safetensors")})
    assert doc.document.models[-1].folder == str(evil)
    assert doc.save(tmp_path / "mine.lstudio")

    again = OpenDocument(ModelLibrary(None, settings_file=settings))  # the next start: settings.toml's folders
    again.ask_folder = lambda question: pytest.fail(f"asked about {question.folder}")
    assert again.open(tmp_path / "mine.lstudio")
    assert again.entry.id == "evil" and load_document(tmp_path / "mine.lstudio").models[-1].folder == str(evil)


# --- the window -----------------------------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot, engine, models_dir, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    from studio.ui import dialogs
    from studio.ui.main_window import MainWindow
    from studio.ui.session import Session

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda *args: dialogs.DISCARD)  # closing never waits

    session = Session(engine, roots=[models_dir])
    session.refresh_models()
    w = MainWindow(session, QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat), None)
    qtbot.addWidget(w)
    with qtbot.waitSignal(session.rendered, timeout=5000):
        session.start("tiny")
    session.undo.setClean()
    yield w
    session.undo.setClean()
    w.close()


@pytest.mark.parametrize("answer", [False, True])
def test_dropping_a_picture_asks_through_the_dialog(qtbot, window, monkeypatch, tmp_path, evil, answer):
    from studio.ui import dialogs

    asked: list[FolderQuestion] = []
    monkeypatch.setattr(dialogs, "ask_add_model_folder", lambda parent, q: asked.append(q) or answer)
    session = window.session
    before = session.request
    picture = picture_for(tmp_path / "photo.png", evil, sha256_file(evil / "weights.safetensors"))
    if answer:
        with qtbot.waitSignal(session.rendered, timeout=5000,
                              check_params_cb=lambda request, *_: request.model_id == "evil"):
            window.open_path(picture)
        assert session.request.model_id == "evil" and session.entry_for("evil") is not None
    else:
        window.open_path(picture)
        assert session.request == before and session.entry_for("evil") is None
    assert [q.folder for q in asked] == [str(evil)]


def test_the_dialog_shows_the_question_and_says_no_by_default(qtbot, tmp_path):
    from PySide6.QtWidgets import QMessageBox, QWidget

    from studio.ui import dialogs

    parent = QWidget()
    qtbot.addWidget(parent)
    question = FolderQuestion(str(tmp_path / "photo.png"), "/home/u/Downloads/evil", "cd" * 32)
    box = dialogs.folder_question_box(parent, question)
    assert box.windowTitle() == question.title and box.text() == question.text
    assert box.informativeText() == question.detail and "cdcdcdcd" in box.text()
    no = box.button(QMessageBox.StandardButton.No)
    assert box.defaultButton() is no and box.escapeButton() is no
    box.deleteLater()
