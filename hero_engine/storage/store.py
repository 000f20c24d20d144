"""The session store: SQLite (WAL) for rounds, images, labels and metrics; files beside it.

Layout of a session folder::

    session.toml        prompt, model, config, format version, the names of the settings given
    hero.db             rounds, images (labels, best), metrics, label_events
    rounds/NNNN/        the round's PNGs and tensors.safetensors (initial noises, final latents)
    checkpoints/NNNN/   state after round NNNN's update: LoRA, encoder, optimizers
    exports/            LoRAs written by `hero-tui export`
    engine.log          the engine's log
    .lock               held (flock) by the one process that owns the session

Every label is committed the moment it is given. Files and folders are written
under a temporary name and renamed into place, so a crash never leaves half a file
or half a checkpoint under a real name; a round's images are stored a chunk at a
time, and its rows in hero.db say which are there. This module needs no torch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hero_engine.config import HeroConfig, dump_toml
from hero_engine.errors import HeroError
from hero_engine.storage.integrity import atomic_write_text

FORMAT_VERSION = 1
# Units of feedback: every image of a submitted round, plus the labels given so far in an open one.
LABEL_COUNT_SQL = (
    "SELECT COUNT(*) FROM images i JOIN rounds r ON r.round = i.round "
    "WHERE r.submitted_at IS NOT NULL OR i.label IS NOT NULL"
)
SESSION_FILE = "session.toml"
DB_FILE = "hero.db"

ROUND_COLUMNS = "round, started_at, submitted_at, updated_at, best_image_id, size"
SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    round         INTEGER PRIMARY KEY,          -- 0, 1, 2, ...
    started_at    REAL NOT NULL,                -- unix time the batch was ready
    submitted_at  REAL,                         -- feedback closed (NULL while labeling)
    updated_at    REAL,                         -- learning done, checkpoint written
    best_image_id INTEGER REFERENCES images(id), -- best after this round (may be an earlier round's image)
    size          INTEGER                       -- images the round will hold; they arrive a chunk at a time (NULL: all there)
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
    size: int | None = None  # images the round will hold (None in rounds stored whole, before images streamed)


def _refuse_a_lost_database(folder: Path) -> None:
    """A session whose hero.db is missing or empty while rounds are on disk lost its labels' database: starting
    over would draw over those rounds and checkpoints, the only copy of what the person taught. Refuse instead."""
    stored = [f"{kind}/ holds {count}" for kind in ("rounds", "checkpoints")
              if (count := sum(1 for _ in (folder / kind).glob("[0-9]*"))) > 0]
    if stored:
        raise HeroError(f"{folder / DB_FILE} is missing or empty but {' and '.join(stored)}: the labels' database was lost; "
                        f"put it back (from a backup or a copy of the folder) or start a new session")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a hero.db written by an earlier hero up to SCHEMA (columns added since have NULL for old rows)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(rounds)")}
    if "size" not in columns:
        try:
            db.execute("ALTER TABLE rounds ADD COLUMN size INTEGER")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it first
                raise


def is_session(folder: Path) -> bool:
    return (Path(folder) / SESSION_FILE).is_file()


def given_settings(info: dict[str, Any]) -> list[str]:
    """The settings the person named when the session was created (``given`` in session.toml's [session]), or none."""
    given = info.get("given", [])
    return [name for name in given if isinstance(name, str)] if isinstance(given, list) else []


class SessionStore:
    """One session folder: its TOML header, its database and its file layout."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.db = None
        if not (self.folder / DB_FILE).exists():
            _refuse_a_lost_database(self.folder)
        try:
            self.db = sqlite3.connect(self.folder / DB_FILE, isolation_level=None, timeout=30)
            if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rounds'").fetchone():
                _refuse_a_lost_database(self.folder)  # an emptied file (its WAL, if any, is read by now)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            _add_missing_columns(self.db)
        except HeroError:
            self.db.close()
            raise
        except sqlite3.Error as exc:
            if self.db is not None:
                self.db.close()
            raise HeroError(f"{self.folder / DB_FILE} cannot be opened ({exc}): is the session folder writable and the disk not full?") from None

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
    def create(folder: Path, config: HeroConfig, given: Collection[str] = (), weights_variant: str | None = None) -> SessionStore:
        """Write a new session's header; ``given`` names the settings the person set (kept when `auto` picks a model later);
        ``weights_variant``, the model's weight files, where they were chosen before the session (else at its first load)."""
        folder = Path(folder)
        SessionStore.check_new(folder)
        info: dict[str, Any] = {"format_version": FORMAT_VERSION, "created_at": time.time()}
        if given:
            info["given"] = sorted(given)
        if weights_variant is not None:
            info["weights_variant"] = weights_variant
        header = {"session": info, "config": config.to_dict()}
        text = dump_toml(header)  # refuses text TOML cannot hold before anything is written
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / SESSION_FILE, text)
        return SessionStore(folder)

    @staticmethod
    def read_header(folder: Path) -> tuple[dict[str, Any], HeroConfig]:
        folder = Path(folder)
        if not folder.exists():
            raise HeroError(f"{folder} does not exist")
        if not is_session(folder):
            raise HeroError(f"{folder} is not a hero session (no {SESSION_FILE}); start one with `hero-tui start` or `hero-tui run`")
        try:
            data = tomllib.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HeroError(f"{folder / SESSION_FILE} is damaged ({exc})") from None
        except OSError as exc:
            raise HeroError(f"{folder / SESSION_FILE} cannot be read ({exc.strerror or exc})") from None
        info = data.get("session", {})
        if not isinstance(info, dict) or not isinstance(data.get("config", {}), dict):
            raise HeroError(f"{folder / SESSION_FILE} is damaged (its [session] and [config] must be tables)")
        version = info.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise HeroError(f"{folder / SESSION_FILE} has no format version: it is not a hero session")
        if version < 1:
            raise HeroError(f"{folder / SESSION_FILE} is damaged: format_version {version} is not a positive integer")
        if version > FORMAT_VERSION:
            raise HeroError(
                f"session {folder} was written by a newer hero (format {version}; this one reads up to {FORMAT_VERSION}): upgrade hero"
            )
        return info, HeroConfig.from_dict(data.get("config", {}))

    def record_model_family(self, family: str) -> None:
        """Keep what the session's model is (SD1.x, SD2.x, SDXL) in its header, for `hero-tui status` and the TUI."""
        info, config = SessionStore.read_header(self.folder)
        if info.get("model_family") != family:
            info["model_family"] = family
            atomic_write_text(self.folder / SESSION_FILE, dump_toml({"session": info, "config": config.to_dict()}))

    def model_family(self) -> str:
        """What the session's model is, as recorded when it was first loaded ('' before that)."""
        family = SessionStore.read_header(self.folder)[0].get("model_family", "")
        return family if isinstance(family, str) else ""

    def record_weights_variant(self, variant: str) -> None:
        """Keep which of the model's weight files the session's base weights came from (weights_variant), for every later load."""
        info, config = SessionStore.read_header(self.folder)
        info["weights_variant"] = variant
        atomic_write_text(self.folder / SESSION_FILE, dump_toml({"session": info, "config": config.to_dict()}))

    def weights_variant(self) -> str | None:
        """The recorded variant of the model's weight files; None where none is recorded yet."""
        variant = SessionStore.read_header(self.folder)[0].get("weights_variant")
        return variant if isinstance(variant, str) else None

    def write_config(self, config: HeroConfig) -> None:
        """Rewrite the session's config (atomically), keeping its header."""
        info, _ = SessionStore.read_header(self.folder)
        atomic_write_text(self.folder / SESSION_FILE, dump_toml({"session": info, "config": config.to_dict()}))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    # paths ------------------------------------------------------------------

    def round_dir(self, round_: int) -> Path:
        return self.folder / "rounds" / f"{round_:04d}"

    def checkpoint_dir(self, round_: int) -> Path:
        return self.folder / "checkpoints" / f"{round_:04d}"

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
        return [RoundRow(*row) for row in self.db.execute(f"SELECT {ROUND_COLUMNS} FROM rounds ORDER BY round")]

    def round(self, round_: int) -> RoundRow | None:
        row = self.db.execute(f"SELECT {ROUND_COLUMNS} FROM rounds WHERE round = ?", (round_,)).fetchone()
        return RoundRow(*row) if row else None

    def open_round(self, round_: int, size: int) -> None:
        """A round whose ``size`` images arrive later, a chunk at a time (add_images); labels may be given as they land."""
        with self.transaction():
            self.db.execute("INSERT INTO rounds (round, started_at, size) VALUES (?, ?, ?)", (round_, time.time(), size))

    def add_images(self, round_: int, images: Sequence[tuple[int, str]]) -> None:
        """One chunk of a round's images, (batch position, path) each, in one transaction."""
        with self.transaction():
            self.db.executemany("INSERT INTO images (round, idx, path) VALUES (?, ?, ?)",
                                [(round_, idx, path) for idx, path in images])

    def images_coming(self, round_: int) -> int:
        """How many of the round's images are not stored yet (0 once all are)."""
        row = self.db.execute(
            "SELECT r.size - COUNT(i.id) FROM rounds r LEFT JOIN images i ON i.round = r.round WHERE r.round = ? "
            "GROUP BY r.round", (round_,)).fetchone()
        return max(0, row[0] or 0) if row else 0

    def images(self, round_: int) -> list[ImageRow]:
        return [self._image(row) for row in self.db.execute(
            "SELECT id, round, idx, label, is_best, path FROM images WHERE round = ? ORDER BY idx", (round_,))]

    def image(self, image_id: int) -> ImageRow | None:
        row = self.db.execute("SELECT id, round, idx, label, is_best, path FROM images WHERE id = ?", (image_id,)).fetchone()
        return self._image(row) if row else None

    @staticmethod
    def _image(row) -> ImageRow:
        return ImageRow(row[0], row[1], row[2], row[3], bool(row[4]), row[5])

    def submit_round(self, round_: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE images SET label = 'bad', labeled_at = ? WHERE round = ? AND label IS NULL", (time.time(), round_))
            self.db.execute("UPDATE rounds SET submitted_at = ? WHERE round = ?", (time.time(), round_))

    def mark_updated(self, round_: int) -> None:
        self.db.execute("UPDATE rounds SET updated_at = ? WHERE round = ?", (time.time(), round_))

    def label_count(self) -> int:
        """Units of feedback given: every image of a submitted round, plus labels given so far in an open one."""
        return self.db.execute(LABEL_COUNT_SQL).fetchone()[0]

    @contextlib.contextmanager
    def read_transaction(self):
        """Several reads that see one committed state (a WAL snapshot), even while another process writes."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

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


