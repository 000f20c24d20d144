"""The session store: SQLite (WAL) for rounds, images, labels and metrics; files beside it.

Layout of a session folder::

    session.toml        prompt, model, config, format version
    hero.db             rounds, images (labels, best), metrics, label_events
    rounds/NNNN/        the round's PNGs and tensors.safetensors (initial noises, final latents)
    checkpoints/NNNN/   state after round NNNN's update: LoRA, encoder, optimizers
    exports/            LoRAs written by `hero-tui export`
    engine.log          the engine's log
    .lock               held (flock) by the one process that owns the session

Every label is committed the moment it is given. Folders are written under a
temporary name and renamed into place, so a crash never leaves half a round or
half a checkpoint under a real name. This module needs no torch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from hero_engine.config import HeroConfig, dump_toml
from hero_engine.errors import HeroError, SessionLocked

FORMAT_VERSION = 1
# Units of feedback: every image of a submitted round, plus the labels given so far in an open one.
LABEL_COUNT_SQL = (
    "SELECT COUNT(*) FROM images i JOIN rounds r ON r.round = i.round "
    "WHERE r.submitted_at IS NOT NULL OR i.label IS NOT NULL"
)
SESSION_FILE = "session.toml"
DB_FILE = "hero.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    round         INTEGER PRIMARY KEY,          -- 0, 1, 2, ...
    started_at    REAL NOT NULL,                -- unix time the batch was ready
    submitted_at  REAL,                         -- feedback closed (NULL while labeling)
    updated_at    REAL,                         -- learning done, checkpoint written
    best_image_id INTEGER REFERENCES images(id) -- best after this round (may be an earlier round's image)
);
CREATE TABLE IF NOT EXISTS images (
    id         INTEGER PRIMARY KEY,
    round      INTEGER NOT NULL REFERENCES rounds(round),
    idx        INTEGER NOT NULL,                -- position in the round's batch
    label      TEXT CHECK (label IN ('good', 'bad')),  -- NULL while unlabeled
    is_best    INTEGER NOT NULL DEFAULT 0,      -- 1 if some round chose it as the best
    path       TEXT NOT NULL,                   -- PNG, relative to the session folder
    labeled_at REAL,
    UNIQUE (round, idx)
);
CREATE TABLE IF NOT EXISTS metrics (
    round INTEGER NOT NULL,
    name  TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (round, name)
);
CREATE TABLE IF NOT EXISTS label_events (       -- every label as given, in order (audit trail)
    id       INTEGER PRIMARY KEY,
    at       REAL NOT NULL,
    image_id INTEGER NOT NULL,
    label    TEXT                               -- 'good', 'bad', 'best', 'best-cleared' or NULL (cleared)
);
"""


@dataclass(frozen=True)
class ImageRow:
    id: int
    round: int
    idx: int
    label: str | None
    is_best: bool
    path: str


@dataclass(frozen=True)
class RoundRow:
    round: int
    started_at: float
    submitted_at: float | None
    updated_at: float | None
    best_image_id: int | None


def is_session(folder: Path) -> bool:
    return (Path(folder) / SESSION_FILE).is_file()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def publish_folder(tmp: Path, final: Path) -> None:
    """Move a fully written temporary folder to its real name (replacing an old one)."""
    _fsync_tree(tmp)
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


class SessionLock:
    """An exclusive flock on <session>/.lock, released when the process exits."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._fh = None

    def acquire(self) -> None:
        import fcntl

        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            fh.close()
            raise SessionLocked(f"session {self.path.parent} is in use by {owner}; close it there first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SessionStore:
    """One session folder: its TOML header, its database and its file layout."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.db = sqlite3.connect(self.folder / DB_FILE, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    # creation and header ---------------------------------------------------

    @staticmethod
    def check_new(folder: Path) -> None:
        """Refuse to create a session where one exists or where other files would be mixed in."""
        folder = Path(folder)
        if is_session(folder):
            raise HeroError(f"{folder} already holds a session: resume it with `hero-tui resume {folder}`")
        if folder.exists() and not folder.is_dir():
            raise HeroError(f"{folder} is a file, not a folder: choose a new --session folder")
        if folder.exists() and any(p.name != ".lock" for p in folder.iterdir()):
            raise HeroError(f"{folder} is a folder that is not empty and not a session: choose a new --session folder")

    @staticmethod
    def create(folder: Path, config: HeroConfig) -> SessionStore:
        folder = Path(folder)
        SessionStore.check_new(folder)
        folder.mkdir(parents=True, exist_ok=True)
        header = {
            "session": {"format_version": FORMAT_VERSION, "created_at": time.time()},
            "config": config.to_dict(),
        }
        atomic_write_text(folder / SESSION_FILE, dump_toml(header))
        return SessionStore(folder)

    @staticmethod
    def read_header(folder: Path) -> tuple[dict[str, Any], HeroConfig]:
        folder = Path(folder)
        if not folder.exists():
            raise HeroError(f"{folder} does not exist")
        if not is_session(folder):
            raise HeroError(f"{folder} is not a hero session (no {SESSION_FILE}); start one with `hero-tui start` or `hero-tui run`")
        try:
            data = tomllib.loads((folder / SESSION_FILE).read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HeroError(f"{folder / SESSION_FILE} is damaged ({exc})") from None
        info = data.get("session", {})
        version = info.get("format_version")
        if not isinstance(version, int):
            raise HeroError(f"{folder / SESSION_FILE} has no format version: it is not a hero session")
        if version > FORMAT_VERSION:
            raise HeroError(
                f"session {folder} was written by a newer hero (format {version}; this one reads up to {FORMAT_VERSION}): upgrade hero"
            )
        return info, HeroConfig.from_dict(data.get("config", {}))

    def write_config(self, config: HeroConfig) -> None:
        """Rewrite the session's config (atomically), keeping its header."""
        info, _ = SessionStore.read_header(self.folder)
        atomic_write_text(self.folder / SESSION_FILE, dump_toml({"session": info, "config": config.to_dict()}))

    def close(self) -> None:
        self.db.close()

    # paths ------------------------------------------------------------------

    def round_dir(self, round_: int) -> Path:
        return self.folder / "rounds" / f"{round_:04d}"

    def checkpoint_dir(self, round_: int) -> Path:
        return self.folder / "checkpoints" / f"{round_:04d}"

    def checkpoint_rounds(self) -> list[int]:
        root = self.folder / "checkpoints"
        if not root.exists():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())

    def temp_dir(self, kind: str) -> Path:
        path = self.folder / kind / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
        path.mkdir(parents=True)
        return path

    def remove_stale_temp(self) -> None:
        for kind in ("rounds", "checkpoints"):
            root = self.folder / kind
            if root.exists():
                for path in root.glob(".t*"):
                    shutil.rmtree(path, ignore_errors=True)

    # rounds and images ------------------------------------------------------

    def rounds(self) -> list[RoundRow]:
        return [RoundRow(*row) for row in self.db.execute(
            "SELECT round, started_at, submitted_at, updated_at, best_image_id FROM rounds ORDER BY round")]

    def round(self, round_: int) -> RoundRow | None:
        row = self.db.execute(
            "SELECT round, started_at, submitted_at, updated_at, best_image_id FROM rounds WHERE round = ?", (round_,)).fetchone()
        return RoundRow(*row) if row else None

    def add_round(self, round_: int, image_paths: list[str]) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO rounds (round, started_at) VALUES (?, ?)", (round_, time.time()))
            self.db.executemany(
                "INSERT INTO images (round, idx, path) VALUES (?, ?, ?)",
                [(round_, idx, path) for idx, path in enumerate(image_paths)],
            )

    def images(self, round_: int) -> list[ImageRow]:
        return [self._image(row) for row in self.db.execute(
            "SELECT id, round, idx, label, is_best, path FROM images WHERE round = ? ORDER BY idx", (round_,))]

    def image(self, image_id: int) -> ImageRow | None:
        row = self.db.execute("SELECT id, round, idx, label, is_best, path FROM images WHERE id = ?", (image_id,)).fetchone()
        return self._image(row) if row else None

    @staticmethod
    def _image(row) -> ImageRow:
        return ImageRow(row[0], row[1], row[2], row[3], bool(row[4]), row[5])

    def set_label(self, image_id: int, label: str | None) -> None:
        now = time.time()
        with self.transaction():
            self.db.execute("UPDATE images SET label = ?, labeled_at = ? WHERE id = ?", (label, now, image_id))
            self.db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, ?)", (now, image_id, label))

    def set_best(self, round_: int, image_id: int | None) -> None:
        """Make ``image_id`` the round's best, or clear the round's best with None."""
        with self.transaction():
            previous = self.db.execute("SELECT best_image_id FROM rounds WHERE round = ?", (round_,)).fetchone()[0]
            self.db.execute("UPDATE rounds SET best_image_id = ? WHERE round = ?", (image_id, round_))
            self.db.execute("UPDATE images SET is_best = (id IN (SELECT best_image_id FROM rounds WHERE best_image_id IS NOT NULL))")
            event = (image_id, "best") if image_id is not None else (previous, "best-cleared")
            if event[0] is not None:
                self.db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, ?)", (time.time(), *event))

    def submit_round(self, round_: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE images SET label = 'bad', labeled_at = ? WHERE round = ? AND label IS NULL", (time.time(), round_))
            self.db.execute("UPDATE rounds SET submitted_at = ? WHERE round = ?", (time.time(), round_))

    def mark_updated(self, round_: int) -> None:
        self.db.execute("UPDATE rounds SET updated_at = ? WHERE round = ?", (time.time(), round_))

    def label_count(self) -> int:
        """Units of feedback given: every image of a submitted round, plus labels given so far in an open one."""
        return self.db.execute(LABEL_COUNT_SQL).fetchone()[0]

    # metrics ----------------------------------------------------------------

    def put_metrics(self, round_: int, values: dict[str, float]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO metrics (round, name, value) VALUES (?, ?, ?)",
                [(round_, name, float(value)) for name, value in values.items()],
            )

    def metrics(self) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for round_, name, value in self.db.execute("SELECT round, name, value FROM metrics ORDER BY round"):
            out.setdefault(round_, {})[name] = value
        return out

    @contextlib.contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


@dataclass(frozen=True)
class SessionSummary:
    folder: Path
    prompt: str
    model: str
    rounds: int
    labels: int
    last_activity: float


def list_sessions(root: Path) -> list[SessionSummary]:
    """Every session directly under ``root`` (or ``root`` itself), most recent first; read-only."""
    root = Path(root)
    candidates = [root] if is_session(root) else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    found = []
    for folder in candidates:
        if not is_session(folder):
            continue
        try:
            _, config = SessionStore.read_header(folder)
            db = sqlite3.connect(f"file:{folder / DB_FILE}?mode=ro", uri=True)
            try:
                rounds = db.execute("SELECT COUNT(*) FROM rounds WHERE submitted_at IS NOT NULL").fetchone()[0]
                labels = db.execute(LABEL_COUNT_SQL).fetchone()[0]
                last = db.execute(
                    "SELECT MAX(x) FROM (SELECT MAX(at) AS x FROM label_events UNION ALL SELECT MAX(started_at) FROM rounds)").fetchone()[0]
            finally:
                db.close()
        except (HeroError, sqlite3.Error):
            continue
        found.append(SessionSummary(folder, config.prompt, config.model, rounds, labels, last or (folder / SESSION_FILE).stat().st_mtime))
    return sorted(found, key=lambda s: s.last_activity, reverse=True)
