"""The gallery's index, with no Qt and no torch: every finished render (queue, export, variation, grid) as a row of an
SQLite database in the user data folder, with its file, request, model, weights hash, time, rating and tags.

    gallery = Gallery.open()                      # user data folder / gallery / index.sqlite
    gallery.add(path, request, source="queue", model_hash=sha)
    page = gallery.items(GalleryFilter(model="glyphs", text="serif", min_rating=1), offset=0, limit=200)

The files stay where they were written; the index points at them. Queries read one page at a time (an index on the
time order, a LIKE over the prompt and tags), so a view of 10,000 items asks only for the rows it shows. A damaged
index is set aside (renamed, named in the error) and a new one started: the files are never touched.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from studio.errors import StudioError
from studio.paths import user_data_dir
from studio.request import RenderRequest

SCHEMA_VERSION = 1
REJECTED = -1  # the rating of a rejected item; 0 unrated, 1–5 stars
SOURCES = ("queue", "export", "variation", "grid", "sheet", "video")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_hash TEXT NOT NULL DEFAULT '',
    seed TEXT NOT NULL DEFAULT '',
    prompt TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    rating INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS items_created ON items (created, id);
CREATE INDEX IF NOT EXISTS items_model ON items (model_id, created);
"""


def gallery_folder() -> Path:
    return user_data_dir() / "gallery"


@dataclass(frozen=True)
class GalleryItem:
    id: int
    path: Path
    kind: str  # image | audio | video
    source: str
    model_id: str
    model_hash: str
    seed: str
    prompt: str
    request_json: str
    created: float
    rating: int
    tags: tuple[str, ...]

    @property
    def rejected(self) -> bool:
        return self.rating == REJECTED

    def request(self) -> RenderRequest | None:
        """The exact request the file was rendered from (None for items without one, a contact sheet say)."""
        return RenderRequest.from_json(self.request_json) if self.request_json else None


@dataclass(frozen=True)
class GalleryFilter:
    """What a view shows: one model, a text found in the prompt or tags, a least rating, rejected items or not."""

    model: str = ""
    text: str = ""
    min_rating: int = 0
    rejected: bool = False  # True: show the rejected items only

    def where(self) -> tuple[str, list]:
        clauses: list[str] = []
        args: list[object] = []
        if self.model:
            clauses.append("model_id = ?")
            args.append(self.model)
        if self.text.strip():
            pattern = "%" + self.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(prompt LIKE ? ESCAPE '\\' OR tags LIKE ? ESCAPE '\\')")
            args += [pattern, pattern]
        if self.rejected:
            clauses.append(f"rating = {REJECTED}")
        else:
            clauses.append("rating >= ?")
            args.append(max(0, int(self.min_rating)))
        return " AND ".join(clauses), args


_COLUMNS = "id, path, kind, source, model_id, model_hash, seed, prompt, request, created, rating, tags"


def _item(row: tuple) -> GalleryItem:
    return GalleryItem(row[0], Path(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                       tuple(t for t in row[11].split(",") if t))


class Gallery:
    """The index in `folder` (index.sqlite). One connection, used from the thread that opened it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "index.sqlite"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioError(f"cannot make the gallery folder: {exc.strerror or exc}", self.folder) from None
        self.set_aside: Path | None = None  # a damaged index moved out of the way at opening
        self._db = self._connect()

    @classmethod
    def open(cls) -> "Gallery":
        return cls(gallery_folder())

    def _connect(self) -> sqlite3.Connection:
        try:
            db = self._open_db()
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one: keep it aside, start again
            self.set_aside = self.path.with_name(f"index.damaged-{time.strftime('%Y%m%d-%H%M%S')}.sqlite")
            try:
                self.path.replace(self.set_aside)
            except OSError:
                raise StudioError(f"the gallery index is damaged ({exc}) and cannot be moved aside",
                                  self.path) from None
            db = self._open_db()
        return db

    def _open_db(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise StudioError(f"cannot open the gallery index: {exc}", self.path) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit (the window adds a batch at a time)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StudioError(f"the gallery index was written by a newer Latent Studio (schema {version}; this "
                                  f"one reads {SCHEMA_VERSION})", self.path)
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM items").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    # --- writing --------------------------------------------------------------------------------------------------
    def add(self, path: str | Path, request: RenderRequest | None, source: str, kind: str = "image",
            model_hash: str = "", created: float | None = None, model_id: str = "") -> int:
        """Index the file at `path` (made from `request`); a path indexed before is updated. The item's id."""
        return self.add_many([(Path(path), request)], source, kind, model_hash, created, model_id)[0]

    def add_many(self, files: Iterable[tuple[Path, RenderRequest | None]], source: str, kind: str = "image",
                 model_hash: str = "", created: float | None = None, model_id: str = "") -> list[int]:
        """Index several files in one transaction (a batch of the queue); their ids."""
        if source not in SOURCES:
            raise StudioError(f"unknown gallery source {source!r} (use {', '.join(SOURCES)})")
        when = time.time() if created is None else created
        ids = []
        with self._transaction():
            for path, request in files:
                prompt = str(request.param("prompt") or "") if request is not None else ""
                row = (str(Path(path).resolve()), kind, source, request.model_id if request is not None else model_id,
                       model_hash or (request.model_hash if request is not None else ""),
                       str(request.seed) if request is not None else "", prompt,
                       request.to_json() if request is not None else "", when)
                cursor = self._db.execute(
                    "INSERT INTO items (path, kind, source, model_id, model_hash, seed, prompt, request, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET kind = excluded.kind, "
                    "source = excluded.source, model_id = excluded.model_id, model_hash = excluded.model_hash, "
                    "seed = excluded.seed, prompt = excluded.prompt, request = excluded.request, "
                    "created = excluded.created RETURNING id", row)
                ids.append(int(cursor.fetchone()[0]))
        return ids

    def set_rating(self, item_id: int, rating: int) -> None:
        """0 unrated, 1–5 stars, REJECTED (-1)."""
        self.set_ratings([item_id], rating)

    def set_ratings(self, item_ids: Iterable[int], rating: int) -> None:
        """`set_rating` for many items in one transaction (a whole gallery picked and starred)."""
        if not REJECTED <= rating <= 5:
            raise StudioError(f"a rating is -1 (rejected) or 0 to 5 stars, got {rating}")
        with self._transaction():
            self._db.executemany("UPDATE items SET rating = ? WHERE id = ?", [(int(rating), int(i)) for i in item_ids])

    def set_tags(self, item_id: int, tags: Iterable[str]) -> None:
        self.set_tags_of({item_id: tags})

    def set_tags_of(self, tags_by_id: dict[int, Iterable[str]]) -> None:
        """Each item's tags (replacing its old ones), in one transaction."""
        rows = [(",".join(sorted({t.strip().replace(",", " ") for t in tags if t.strip()})), int(item_id))
                for item_id, tags in tags_by_id.items()]
        with self._transaction():
            self._db.executemany("UPDATE items SET tags = ? WHERE id = ?", rows)

    def forget(self, item_ids: Iterable[int]) -> None:
        """Drop items from the index (their files were moved to the trash, or are gone)."""
        with self._transaction():
            self._db.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in item_ids])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction (the connection runs in autocommit otherwise): committed, or rolled back on an error."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- reading --------------------------------------------------------------------------------------------------
    def count(self, where: GalleryFilter = GalleryFilter()) -> int:
        clause, args = where.where()
        return int(self._db.execute(f"SELECT count(*) FROM items WHERE {clause}", args).fetchone()[0])

    def items(self, where: GalleryFilter = GalleryFilter(), offset: int = 0, limit: int = 200) -> list[GalleryItem]:
        """One page of the items `where` asks for, newest first."""
        clause, args = where.where()
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE {clause} ORDER BY created DESC, id DESC "
                                "LIMIT ? OFFSET ?", [*args, int(limit), int(offset)]).fetchall()
        return [_item(row) for row in rows]

    def item(self, item_id: int) -> GalleryItem | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return _item(row) if row is not None else None

    def items_by_id(self, item_ids: Iterable[int]) -> dict[int, GalleryItem]:
        """The items of `item_ids` that are in the index, by id, read a few hundred to a query."""
        ids = [int(i) for i in item_ids]
        found: dict[int, GalleryItem] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE id IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall()
            for row in rows:
                item = _item(row)
                found[item.id] = item
        return found

    def models(self) -> list[str]:
        """The models with items, for the filter's list."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT model_id FROM items ORDER BY model_id")]

    def missing(self) -> list[int]:
        """Items whose file is gone (moved or deleted outside the app)."""
        return [r[0] for r in self._db.execute("SELECT id, path FROM items") if not Path(r[1]).exists()]



Written = Callable[[str, list[int]], None]  # (source, the new items' ids)
WriteFailed = Callable[[StudioError], None]


class GalleryWriter:
    """The index's writes of finished renders, on a thread of its own so that the window never waits on the disk:
    `add_many` returns at once and the batch is written in order on the writer's own connection (an SQLite connection
    belongs to one thread); the window's connection reads each batch once its transaction commits (WAL).
    `written(source, ids)` and `failed(error)` are called on the writer's thread: a Qt caller passes them on to its
    own thread. `close()` writes what is waiting, then ends the thread (nothing asked for is lost)."""

    def __init__(self, folder: Path, written: Written, failed: WriteFailed):
        self.folder = Path(folder)
        self._written, self._failed = written, failed
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gallery-writer", daemon=True)
        self._thread.start()

    def add_many(self, files: Iterable[tuple[Path, RenderRequest | None]], source: str, kind: str = "image",
                 model_hash: str = "", model_id: str = "") -> None:
        """Index `files` on the writer's thread (Gallery.add_many); `written` says when they are in."""
        self._jobs.put((list(files), source, kind, model_hash, model_id, time.time()))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every batch asked for so far is written; False if `timeout` seconds passed first."""
        done = threading.Event()
        self._jobs.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        gallery: Gallery | None = None
        while True:
            job = self._jobs.get()
            if job is None:
                break
            if isinstance(job, threading.Event):
                job.set()
                continue
            files, source, kind, model_hash, model_id, created = job
            try:
                if gallery is None:
                    gallery = Gallery(self.folder)
                ids = gallery.add_many(files, source, kind, model_hash, created, model_id)
            except StudioError as exc:
                self._failed(exc)
            except sqlite3.Error as exc:  # a full disk, a locked or vanished index: said, and the window goes on
                self._failed(StudioError(f"cannot add {len(files)} render{'s' if len(files) != 1 else ''} to the "
                                         f"gallery index: {exc}", self.folder / "index.sqlite"))
            else:
                self._written(source, ids)
        if gallery is not None:
            gallery.close()
