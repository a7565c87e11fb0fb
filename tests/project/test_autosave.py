"""Autosave and crash recovery: OS-held locks, leftovers after crashes, discard/adopt (studio.project.autosave)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from studio.errors import ProjectError
from studio.project import (Autosave, Document, HistoryEntry, ModelRef, Recoverable, SavedLatent, adopt,
                            autosave_dir, discard, find_recoverable, load_document)
from studio.request import RenderRequest

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, sys
from pathlib import Path
from studio.project import Autosave, Document
folder, session, source, mode = sys.argv[1:5]
doc = Document.from_dict(json.loads(sys.stdin.readline()))
slot = Autosave(Path(folder), session)
slot.start()
slot.write(doc, source=source or None)
print(json.dumps({"qt": "PySide6" in sys.modules, "path": str(slot.path)}), flush=True)
if mode == "wait":
    sys.stdin.read()  # hold the slot until the parent closes our stdin
os._exit(1)  # die without finish(): a crash
"""


def sample_document() -> Document:
    request = RenderRequest("tiny", seed=11, latent=(0.1, -2.5, 3.0000001192092896), params={"prompt": "Ab"})
    doc = Document(request=request, models=[ModelRef("tiny", "cd" * 32, "Tiny")])
    doc.latents.append(SavedLatent("keep", "tiny", "", (1.0, 2.0), b"\x89PNG\r\n"))
    doc.add_history(HistoryEntry(request, 0.5, "2026-11-28T19:02:00+00:00"))
    return doc


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def crash_in_child(folder: Path, session: str, doc: Document, source: str = "") -> dict:
    """Run an instance in another process that autosaves `doc` and crashes."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), session, source, "crash"],
                          input=json.dumps(doc.to_dict()) + "\n", capture_output=True, text=True, timeout=60,
                          env=child_env(), cwd=REPO)
    assert done.returncode == 1, done.stderr
    return json.loads(done.stdout)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_autosave_dir_is_under_user_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_DATA", str(tmp_path / "data"))
    assert autosave_dir() == tmp_path / "data" / "autosave"
    slot = Autosave()
    assert slot.folder == tmp_path / "data" / "autosave" and len(slot.session_id) == 32
    assert find_recoverable() == []  # the folder does not exist yet
    slot.start()
    try:
        assert slot.path == autosave_dir() / f"{slot.session_id}.lstudio" and slot.lock_path.exists()
    finally:
        slot.finish()


def test_own_slot_is_never_offered_and_finish_cleans_up(tmp_path):
    slot = Autosave(tmp_path, "mine")
    assert not slot.active
    slot.start()
    assert slot.active
    doc = sample_document()
    assert slot.write(doc, source=tmp_path / "poster.lstudio") == tmp_path / "mine.lstudio"
    assert load_document(slot.path) == doc
    info = json.loads(slot.lock_path.read_text(encoding="utf-8"))
    assert info["pid"] == os.getpid() and info["source"] == str(tmp_path / "poster.lstudio")
    assert datetime.fromisoformat(info["started"]).utcoffset().total_seconds() == 0
    assert find_recoverable(tmp_path) == []  # held by this very process
    slot.write(Document())  # untitled now
    assert json.loads(slot.lock_path.read_text(encoding="utf-8"))["source"] == ""
    assert names(tmp_path) == ["mine.lock", "mine.lstudio"]
    slot.finish()
    assert not slot.active and names(tmp_path) == []
    slot.finish()  # idempotent
    assert find_recoverable(tmp_path) == []


def test_clear_drops_the_autosave_and_release_keeps_it_for_the_next_start(tmp_path):
    slot = Autosave(tmp_path, "mine")
    slot.start()
    slot.write(sample_document(), source=tmp_path / "poster.lstudio")
    slot.clear()  # back to unedited: nothing to recover, the slot still held
    assert slot.active and names(tmp_path) == ["mine.lock"] and find_recoverable(tmp_path) == []
    slot.write(sample_document(), source=tmp_path / "poster.lstudio")
    slot.release()  # a quit by signal with edits
    assert not slot.active and names(tmp_path) == ["mine.lock", "mine.lstudio"]
    found = find_recoverable(tmp_path)
    assert [item.path for item in found] == [slot.path] and found[0].source == str(tmp_path / "poster.lstudio")
    slot.release()  # idempotent
    slot.clear()  # a released slot is not ours any more: clear leaves it
    assert names(tmp_path) == ["mine.lock", "mine.lstudio"]


def test_a_second_instance_cannot_take_a_held_slot(tmp_path):
    first = Autosave(tmp_path, "same")
    first.start()
    try:
        with pytest.raises(ProjectError, match="in use") as info:
            Autosave(tmp_path, "same").start()
        assert info.value.path == str(tmp_path / "same.lock")
    finally:
        first.finish()
    again = Autosave(tmp_path, "same")
    again.start()  # free after a clean finish
    again.finish()


def test_write_needs_a_started_slot(tmp_path):
    slot = Autosave(tmp_path, "idle")
    with pytest.raises(ProjectError, match="not started"):
        slot.write(Document())
    slot.start()
    slot.finish()
    with pytest.raises(ProjectError, match="not started"):
        slot.write(Document())
    assert names(tmp_path) == []


def test_start_names_the_folder_it_cannot_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    slot = Autosave(blocker / "autosave", "s")
    with pytest.raises(ProjectError) as info:
        slot.start()
    assert info.value.path == str(blocker / "autosave") and "autosave folder" in str(info.value)
    assert not slot.active


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a.b", "-x", "x" * 65])
def test_session_id_must_be_a_safe_file_name(tmp_path, bad):
    with pytest.raises(ValueError):
        Autosave(tmp_path, bad)


def test_crashed_instance_leaves_a_recoverable_autosave(tmp_path):
    doc = sample_document()
    source = str(tmp_path / "work" / "poster.lstudio")
    report = crash_in_child(tmp_path, "crashed", doc, source)
    assert report["qt"] is False  # autosave never pulls in Qt
    assert names(tmp_path) == ["crashed.lock", "crashed.lstudio"]
    found = find_recoverable(tmp_path)
    assert len(found) == 1
    item = found[0]
    assert item.path == tmp_path / "crashed.lstudio" == Path(report["path"])
    assert item.source == source and item.saved_at == item.path.stat().st_mtime
    stamp = datetime.fromtimestamp(item.saved_at).strftime("%Y-%m-%d %H:%M")
    assert item.describe() == f"poster.lstudio, autosaved {stamp}"
    back = adopt(item)
    assert back == doc and back.request.latent == doc.request.latent
    # the slot stays offered until discarded
    assert find_recoverable(tmp_path) == [item]
    discard(item)
    assert names(tmp_path) == [] and find_recoverable(tmp_path) == []
    discard(item)  # already gone: fine


def test_a_live_instance_in_another_process_is_not_offered_until_it_dies(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "alive", "", "wait"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(), cwd=REPO)
    try:
        child.stdin.write(json.dumps(Document().to_dict()) + "\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line, child.stderr.read()
        assert names(tmp_path) == ["alive.lock", "alive.lstudio"]
        assert find_recoverable(tmp_path) == []  # its lock is held by a running process
        with pytest.raises(ProjectError, match="in use"):
            Autosave(tmp_path, "alive").start()
        assert find_recoverable(tmp_path) == []  # probing did not steal or break the lock
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    assert child.returncode == 1
    found = find_recoverable(tmp_path)
    assert [item.path.name for item in found] == ["alive.lstudio"]
    assert found[0].source == "" and found[0].describe().startswith("Untitled, autosaved ")
    assert adopt(found[0]) == Document()
    taken = Autosave(tmp_path, "alive")  # the dead instance's lock can be taken again
    taken.start()
    try:
        assert find_recoverable(tmp_path) == []
    finally:
        taken.finish()


def test_corrupt_autosave_raises_on_adopt_and_can_be_discarded(tmp_path):
    path = tmp_path / "broken.lstudio"
    path.write_text("{not json", encoding="utf-8")  # and no lock file: its owner is long gone
    found = find_recoverable(tmp_path)
    assert [item.path for item in found] == [path]
    with pytest.raises(ProjectError) as info:
        adopt(found[0])
    assert info.value.path == str(path) and "invalid JSON" in str(info.value)
    discard(found[0])
    assert names(tmp_path) == []


@pytest.mark.parametrize("lock_text", ["{oops", "[1, 2]", '{"source": 5}', "", "\udcff"])
def test_corrupt_lock_file_counts_as_not_held(tmp_path, lock_text):
    slot = Autosave(tmp_path, "old")
    slot.start()
    slot.write(sample_document(), source="/x/poster.lstudio")
    fd, slot._fd = slot._fd, None  # forget the slot without finish(): as if the process had died...
    os.close(fd)  # ...closing the only descriptor releases the OS lock
    (tmp_path / "old.lock").write_bytes(lock_text.encode("utf-8", "surrogateescape"))
    found = find_recoverable(tmp_path)
    assert [item.path.name for item in found] == ["old.lstudio"]
    assert found[0].source == "" and found[0].describe().startswith("Untitled, ")
    assert adopt(found[0]) == sample_document()


def test_a_held_lock_is_respected_even_with_corrupt_content(tmp_path):
    slot = Autosave(tmp_path, "busy")
    slot.start()
    try:
        slot.write(Document())
        slot.lock_path.write_text("garbage", encoding="utf-8")  # the content is informative only
        assert find_recoverable(tmp_path) == []
    finally:
        slot.finish()


def test_unrelated_files_are_ignored_and_newest_comes_first(tmp_path):
    for name in ("older", "newer", "middle"):
        (tmp_path / f"{name}.lstudio").write_text(Document().to_json(), encoding="utf-8")
    now = time.time()
    os.utime(tmp_path / "older.lstudio", (now - 300, now - 300))
    os.utime(tmp_path / "middle.lstudio", (now - 200, now - 200))
    os.utime(tmp_path / "newer.lstudio", (now - 100, now - 100))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "orphan.lock").write_text("{}")
    (tmp_path / ".newer.lstudio.abc123.part.lstudio").write_text("half")  # an interrupted atomic write
    (tmp_path / "dir.lstudio").mkdir()
    (tmp_path / "weird name.lstudio").write_text("{}")
    found = find_recoverable(tmp_path)
    assert [item.path.name for item in found] == ["newer.lstudio", "middle.lstudio", "older.lstudio"]
    assert [item.saved_at for item in found] == sorted((item.saved_at for item in found), reverse=True)
    discard(found[0])  # also removes the slot's leftover temporary file
    assert not (tmp_path / ".newer.lstudio.abc123.part.lstudio").exists()
    assert "notes.txt" in names(tmp_path) and "orphan.lock" in names(tmp_path)


def test_recoverable_describe():
    saved = datetime(2026, 11, 28, 19, 2).timestamp()
    assert Recoverable(Path("a.lstudio"), "", saved).describe() == "Untitled, autosaved 2026-11-28 19:02"
    assert (Recoverable(Path("a.lstudio"), "/w/poster.lstudio", saved).describe()
            == "poster.lstudio, autosaved 2026-11-28 19:02")
