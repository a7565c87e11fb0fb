"""The gallery's index (studio.app.gallery): items with their requests, newest first, a page at a time; filters by
model, text, rating and rejection; tags; forgetting; 10,000 items; a damaged or newer index."""

from __future__ import annotations

import sqlite3

import pytest

import threading

from studio.app.gallery import REJECTED, Gallery, GalleryFilter, GalleryWriter
from studio.errors import StudioError
from studio.request import RenderRequest


def req(model: str = "glyphs", seed: int = 0, prompt: str = "Latent") -> RenderRequest:
    return RenderRequest(model, seed=seed, params={"prompt": prompt})


@pytest.fixture
def gallery(tmp_path):
    g = Gallery(tmp_path / "gallery")
    yield g
    g.close()


def test_items_come_back_newest_first_with_their_exact_request(gallery, tmp_path):
    a = gallery.add(tmp_path / "a.png", req(seed=1), "queue", model_hash="f" * 64, created=100.0)
    b = gallery.add(tmp_path / "b.png", req(seed=2, prompt="Other"), "export", created=200.0)
    items = gallery.items()
    assert [i.id for i in items] == [b, a]
    assert items[1].request() == req(seed=1) and items[1].model_hash == "f" * 64 and items[1].seed == "1"
    assert items[0].source == "export" and items[0].path == (tmp_path / "b.png").resolve()
    again = gallery.add(tmp_path / "a.png", req(seed=9), "queue", created=300.0)  # the same file written again
    assert again == a and gallery.count() == 2 and gallery.items()[0].request().seed == 9


def test_filters_by_model_text_rating_and_rejection(gallery, tmp_path):
    ids = gallery.add_many([(tmp_path / f"{k}.png", req("glyphs" if k % 2 else "glyph-gan", k, f"p{k}%_x"))
                            for k in range(10)], "queue", created=1.0)
    gallery.set_rating(ids[3], 4)
    gallery.set_rating(ids[5], 2)
    gallery.set_rating(ids[7], REJECTED)
    gallery.set_tags(ids[4], ["serif", " bold ", "serif"])
    assert gallery.count(GalleryFilter(model="glyphs")) == 4  # 1, 3, 5, 9 (7 is rejected)
    assert gallery.count(GalleryFilter(min_rating=3)) == 1
    assert gallery.count(GalleryFilter(min_rating=1)) == 2
    assert [i.id for i in gallery.items(GalleryFilter(rejected=True))] == [ids[7]]
    assert gallery.count() == 9
    assert [i.seed for i in gallery.items(GalleryFilter(text="p3%"))] == ["3"]  # % is literal, not a wildcard
    assert gallery.count(GalleryFilter(text="_x")) == 9
    assert gallery.count(GalleryFilter(text="p1_")) == 0
    assert gallery.item(ids[4]).tags == ("bold", "serif") and gallery.count(GalleryFilter(text="SERIF")) == 1
    assert gallery.models() == ["glyph-gan", "glyphs"]
    with pytest.raises(StudioError, match="rating"):
        gallery.set_rating(ids[0], 6)
    with pytest.raises(StudioError, match="source"):
        gallery.add(tmp_path / "x.png", req(), "somewhere")


def test_ten_thousand_items_page_by_page(gallery, tmp_path):
    gallery.add_many([(tmp_path / f"{k:05d}.png", req(seed=k)) for k in range(10_000)], "queue", created=5.0)
    assert gallery.count() == 10_000
    seen = []
    for offset in range(0, 10_000, 500):
        page = gallery.items(offset=offset, limit=500)
        assert len(page) == 500
        seen += [int(i.seed) for i in page]
    assert sorted(seen) == list(range(10_000)) and seen[0] == 9_999  # newest (last added) first
    gallery.forget(range(1, 5_001))
    assert gallery.count() == 5_000


def test_many_items_read_rated_and_tagged_at_once(gallery, tmp_path):
    ids = gallery.add_many([(tmp_path / f"{k:05d}.png", req(seed=k)) for k in range(2_000)], "queue")
    found = gallery.items_by_id([*ids[::2], 10**9])  # more than a query's worth; an id not in the index
    assert sorted(found) == sorted(ids[::2]) and found[ids[4]].seed == "4"
    gallery.set_ratings(ids[:1500], 4)
    assert gallery.count(GalleryFilter(min_rating=4)) == 1500
    gallery.set_ratings(ids[1500:], REJECTED)
    assert gallery.count(GalleryFilter(rejected=True)) == 500
    with pytest.raises(StudioError, match="a rating is -1"):
        gallery.set_ratings(ids, 6)
    assert gallery.count(GalleryFilter(min_rating=4)) == 1500  # nothing written
    gallery.set_tags_of({ids[0]: ["bold", " wide ", ""], ids[1]: ["bold"]})
    assert gallery.item(ids[0]).tags == ("bold", "wide") and gallery.item(ids[1]).tags == ("bold",)
    assert gallery.count(GalleryFilter(text="wide")) == 1


def test_missing_files_are_found(gallery, tmp_path):
    there = tmp_path / "there.png"
    there.write_bytes(b"x")
    gallery.add(there, req(), "export")
    gone = gallery.add(tmp_path / "gone.png", req(), "export")
    assert gallery.missing() == [gone]


def test_a_damaged_index_is_set_aside_and_a_new_one_started(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    (folder / "index.sqlite").write_bytes(b"this is not a database" * 100)
    g = Gallery(folder)
    assert g.set_aside is not None and g.set_aside.read_bytes().startswith(b"this is not")
    assert g.count() == 0
    g.add(tmp_path / "a.png", req(), "queue")
    g.close()
    assert Gallery(folder).count() == 1


def test_an_index_from_a_newer_version_is_refused_by_name(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    db = sqlite3.connect(folder / "index.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StudioError) as caught:
        Gallery(folder)
    assert "newer" in str(caught.value) and "index.sqlite" in str(caught.value)


def test_an_unwritable_place_says_where(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StudioError) as caught:
        Gallery(blocker / "gallery")
    assert "gallery" in str(caught.value)


def test_the_writer_indexes_in_order_on_its_own_thread_and_the_reader_sees_it(gallery, tmp_path):
    heard, threads, failures = [], [], []

    def written(source, ids):
        heard.append((source, ids))
        threads.append(threading.current_thread().name)

    writer = GalleryWriter(gallery.folder, written, failures.append)
    writer.add_many([(tmp_path / f"{k}.png", req(seed=k)) for k in range(3)], "queue")
    writer.add_many([(tmp_path / "v.png", req(seed=9))], "variation")
    assert writer.flush(10)
    assert [source for source, _ in heard] == ["queue", "variation"] and [len(ids) for _, ids in heard] == [3, 1]
    assert threads == ["gallery-writer"] * 2 and not failures
    assert [i.seed for i in gallery.items()] == ["9", "2", "1", "0"]  # the window's own connection reads them
    writer.add_many([(tmp_path / "last.png", req(seed=5))], "export")
    writer.close()  # what was asked for before the end is written
    assert gallery.count() == 5 and heard[-1][0] == "export"


def test_a_write_that_fails_is_reported_and_the_writer_goes_on(gallery, tmp_path):
    failures: list = []
    writer = GalleryWriter(gallery.folder, lambda *_: None, failures.append)
    writer.add_many([(tmp_path / "a.png", req())], "nonsense")  # refused: not a source
    writer.add_many([(tmp_path / "b.png", req())], "queue")
    assert writer.flush(10)
    writer.close()
    assert len(failures) == 1 and "nonsense" in str(failures[0]) and gallery.count() == 1
