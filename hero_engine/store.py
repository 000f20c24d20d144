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
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
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
CHECKSUMS_FILE = "checksums.json"  # in a round folder: size and sha256 of each of its files
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


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole or not at all: written to a uniquely named temporary beside it, synced, renamed.

    The unique name lets processes that share a file (the user's config, the list of
    recent sessions) write it at once without one removing the other's temporary.
    """
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# checksums ---------------------------------------------------------------------
# Every file the engine relies on (checkpoint files, a round's tensors and PNGs) is
# listed with its size and sha256 when it is published, and checked when it is read,
# so damage of any kind (not only truncation) is found before the file is used.


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``folder`` (relative names), as a checksums list holds them."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and str(p.relative_to(folder)) not in exclude
    }


def check_file(folder: Path, name: str, entry: Any) -> None:
    """Raise HeroError unless ``folder/name`` matches its checksums entry (an older entry may hold the size alone)."""
    path = Path(folder) / name
    size, digest = (entry, None) if isinstance(entry, int) else (entry.get("size"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
    if not isinstance(size, int):
        raise HeroError(f"the checksum list has no valid entry for {name}")
    try:
        if not path.is_file():
            raise HeroError(f"{name} is missing")
        if path.stat().st_size != size:
            raise HeroError(f"{name} is truncated or has the wrong size ({path.stat().st_size} bytes, {size} expected)")
        if digest is not None and file_sha256(path) != digest:
            raise HeroError(f"{name} is damaged (its sha256 differs from the one written with it)")
    except OSError as exc:
        raise HeroError(f"{name} cannot be read ({exc.strerror or exc})") from None


def read_checksums(folder: Path) -> dict[str, Any] | None:
    """The folder's checksums.json entries; None for a folder written before checksums existed."""
    path = Path(folder) / CHECKSUMS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HeroError(f"{CHECKSUMS_FILE} is damaged ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise HeroError(f"{CHECKSUMS_FILE} is damaged (no file list)")
    return data["files"]


def update_checksum(folder: Path, name: str) -> None:
    """Record a file that was written again (a rebuilt tensor file, a PNG decoded again) in the folder's checksums.json."""
    update_checksums(folder, [name])


def update_checksums(folder: Path, names: Collection[str], removed: Collection[str] = ()) -> None:
    """Record files written (again) in the folder's checksums.json, and drop the entries of ``removed``, in one write."""
    folder = Path(folder)
    try:
        entries = read_checksums(folder) or {}
    except HeroError:
        entries = {}  # a damaged list is rebuilt from what is there
    for name in names:
        entries[name] = {"size": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
    for name in removed:
        entries.pop(name, None)
    atomic_write_text(folder / CHECKSUMS_FILE, json.dumps({"files": dict(sorted(entries.items()))}, indent=1))


def write_failure(exc: BaseException) -> str:
    """A short reason for a failed write: 'no space left on device', 'permission denied', ..."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in str(exc) or "file write failed" in str(exc):
        return "no space left on device"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def publish_folder(tmp: Path, final: Path) -> None:
    """Move a fully written temporary folder to its real name (replacing an old one).

    When it fails (a full disk, an I/O error) the old folder is back under its name,
    the temporary one is removed, and HeroError says why.
    """
    try:
        _fsync_tree(tmp)
        if final.exists():
            trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
            os.replace(final, trash)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(trash, final)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HeroError(f"could not publish {final} ({write_failure(exc)}); the previous state is kept") from None


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

        try:
            fh = open(self.path, "a+")
        except OSError as exc:
            raise HeroError(
                f"cannot open session {self.path.parent} for writing ({self.path.name}: {write_failure(exc)}): "
                "make the folder writable and try again"
            ) from None
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


def given_settings(info: dict[str, Any]) -> list[str]:
    """The settings the person named when the session was created (``given`` in session.toml's [session]), or none."""
    given = info.get("given", [])
    return [name for name in given if isinstance(name, str)] if isinstance(given, list) else []


class SessionStore:
    """One session folder: its TOML header, its database and its file layout."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.db = None
        try:
            self.db = sqlite3.connect(self.folder / DB_FILE, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            _add_missing_columns(self.db)
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
    def create(folder: Path, config: HeroConfig, given: Collection[str] = ()) -> SessionStore:
        """Write a new session's header; ``given`` names the settings the person set (kept when `auto` picks a model later)."""
        folder = Path(folder)
        SessionStore.check_new(folder)
        info: dict[str, Any] = {"format_version": FORMAT_VERSION, "created_at": time.time()}
        if given:
            info["given"] = sorted(given)
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
        return [RoundRow(*row) for row in self.db.execute(f"SELECT {ROUND_COLUMNS} FROM rounds ORDER BY round")]

    def round(self, round_: int) -> RoundRow | None:
        row = self.db.execute(f"SELECT {ROUND_COLUMNS} FROM rounds WHERE round = ?", (round_,)).fetchone()
        return RoundRow(*row) if row else None

    def add_round(self, round_: int, image_paths: list[str]) -> None:
        """A round and all of its images at once."""
        with self.transaction():
            self.db.execute("INSERT INTO rounds (round, started_at, size) VALUES (?, ?, ?)",
                            (round_, time.time(), len(image_paths)))
            self._insert_images(round_, list(enumerate(image_paths)))

    def open_round(self, round_: int, size: int) -> None:
        """A round whose ``size`` images arrive later, a chunk at a time (add_images); labels may be given as they land."""
        with self.transaction():
            self.db.execute("INSERT INTO rounds (round, started_at, size) VALUES (?, ?, ?)", (round_, time.time(), size))

    def add_images(self, round_: int, images: Sequence[tuple[int, str]]) -> None:
        """One chunk of a round's images, (batch position, path) each, in one transaction."""
        with self.transaction():
            self._insert_images(round_, images)

    def _insert_images(self, round_: int, images: Sequence[tuple[int, str]]) -> None:
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

    # feedback recorded by a front end --------------------------------------

    def record_feedback(self, round_: int, changes: Sequence[FeedbackChange]) -> None:
        """Commit one key press's changes to the open round's feedback: all of them, or none.

        The app records labels itself, so a label is on disk before it is drawn whatever the
        engine child is doing; the engine reads them from here when the round is submitted.
        It checks what HeroSession.label and choose_best check: the round is the open one
        (the last sampled, not submitted); every image is one of its images, or, for the best,
        the previous round's best (kept); a best of this round is labeled good. Raises
        FeedbackRefused, or sqlite3.Error when the write fails (disk full, database locked);
        either way nothing of the press is written and nothing earlier changes.
        """
        now = time.time()  # one time for the whole press: label_events rows of one press share it
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._record_feedback(round_, list(changes), now)
            self.db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) may leave the transaction open or may have rolled it back.
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise

    def _record_feedback(self, round_: int, changes: list[FeedbackChange], now: float) -> None:
        row = self.db.execute("SELECT submitted_at, best_image_id FROM rounds WHERE round = ?", (round_,)).fetchone()
        last = self.db.execute("SELECT MAX(round) FROM rounds").fetchone()[0]
        if row is None or row[0] is not None or round_ != last:
            raise FeedbackRefused(f"round {round_} is no longer open for labels")
        best = row[1]
        previous = self.db.execute("SELECT best_image_id FROM rounds WHERE round = ?", (round_ - 1,)).fetchone()
        previous_best = previous[0] if previous else None
        best_moved: set[int] = set()
        for change in changes:
            if change.kind == "label":
                if change.label not in ("good", "bad", None):
                    raise FeedbackRefused(f"{change.label!r} is not a label: good, bad or none")
                self._round_image(change.image_id, round_)
                self._write_label(change.image_id, change.label, now)
            elif change.kind == "best":
                if change.image_id is None:
                    if best is not None:
                        self.db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, 'best-cleared')", (now, best))
                elif change.image_id != previous_best:  # keeping the previous best changes no label
                    if self._round_image(change.image_id, round_) != "good":
                        self._write_label(change.image_id, "good", now)  # the best always counts as good
                best_moved.update(i for i in (best, change.image_id) if i is not None)
                best = change.image_id
                self.db.execute("UPDATE rounds SET best_image_id = ? WHERE round = ?", (best, round_))
                if best is not None:
                    self.db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, 'best')", (now, best))
            else:
                raise FeedbackRefused(f"unknown feedback change {change.kind!r}")
        if best_moved:
            marks = ",".join("?" * len(best_moved))
            self.db.execute(
                f"UPDATE images SET is_best = (id IN (SELECT best_image_id FROM rounds WHERE best_image_id IS NOT NULL)) "
                f"WHERE id IN ({marks})", sorted(best_moved))
        if best is not None and best != previous_best and self._round_image(best, round_) != "good":
            raise FeedbackRefused("the best must stay good: choose another best first")

    def _round_image(self, image_id: int | None, round_: int) -> str | None:
        """The label of an image of ``round_``; FeedbackRefused for any other id."""
        row = self.db.execute("SELECT round, label FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None or row[0] != round_:
            raise FeedbackRefused(f"image {image_id} is not one of round {round_}'s images")
        return row[1]

    def _write_label(self, image_id: int, label: str | None, now: float) -> None:
        self.db.execute("UPDATE images SET label = ?, labeled_at = ? WHERE id = ?", (label, now, image_id))
        self.db.execute("INSERT INTO label_events (at, image_id, label) VALUES (?, ?, ?)", (now, image_id, label))

    def feedback_summary(self) -> FeedbackSummary | None:
        """What hero.db holds for the last round (read now, in one transaction); None before any round."""
        with self.read_transaction():
            row = self.db.execute(
                "SELECT round, submitted_at, best_image_id FROM rounds ORDER BY round DESC LIMIT 1").fetchone()
            if row is None:
                return None
            round_, submitted_at, best_id = row
            labels = dict(self.db.execute("SELECT id, label FROM images WHERE round = ?", (round_,)).fetchall())
            best = self.db.execute("SELECT round, idx FROM images WHERE id = ?", (best_id,)).fetchone() if best_id else None
            total = self.db.execute(LABEL_COUNT_SQL).fetchone()[0]
        return FeedbackSummary(round_, submitted_at is not None, labels, best_id,
                               None if best is None else (best[0], best[1]), total)

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


LABEL_BUSY_TIMEOUT = 5.0  # seconds a front end's label write waits for the engine's short transactions


class FeedbackRefused(HeroError):
    """A feedback change the store does not record (the round is closed, the image is not in it, ...)."""


@dataclass(frozen=True)
class FeedbackChange:
    """One change of the open round's feedback: ``label`` of ``image_id`` ('good', 'bad' or None to clear it),
    or with kind 'best' ``image_id`` becomes the round's best (None clears the round's best)."""

    kind: str  # "label" or "best"
    image_id: int | None
    label: str | None = None


@dataclass(frozen=True)
class FeedbackSummary:
    """The last round's feedback as hero.db holds it."""

    round: int
    submitted: bool
    labels: dict[int, str | None]  # image id -> label
    best_id: int | None
    best: tuple[int, int] | None  # (round, idx) of the best: an earlier round's when the previous best is kept
    labels_total: int  # units of feedback in the whole session

    @property
    def labeled(self) -> int:
        return sum(label is not None for label in self.labels.values())

    @property
    def good(self) -> int:
        return sum(label == "good" for label in self.labels.values())


def open_for_labels(folder: Path) -> SessionStore:
    """The store as a front end opens it to record labels itself (SessionStore.record_feedback).

    Each commit is synchronous (FULL: the label survives a power cut, not only a killed
    process; one fsync per key press), and a write waits at most LABEL_BUSY_TIMEOUT for the
    engine's short transactions, so a stuck writer shows up as a failed label, not a frozen screen.
    """
    store = SessionStore(folder)
    store.db.execute("PRAGMA synchronous=FULL")
    store.db.execute(f"PRAGMA busy_timeout={int(LABEL_BUSY_TIMEOUT * 1000)}")
    return store


@dataclass(frozen=True)
class SessionSummary:
    folder: Path
    prompt: str
    model: str
    rounds: int
    labels: int
    last_activity: float
    problem: str | None = None  # why the session cannot be read (then prompt, model and counts are unknown)


def list_sessions(root: Path, include_unreadable: bool = False) -> list[SessionSummary]:
    """Every session directly under ``root`` (or ``root`` itself), most recent first; read-only.

    A session that cannot be read is left out, or with ``include_unreadable`` listed with its ``problem``.
    """
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
        except (HeroError, sqlite3.Error, OSError) as exc:
            if include_unreadable:
                found.append(SessionSummary(folder, "", "", 0, 0, _mtime(folder), problem=_reason(exc)))
            continue
        found.append(SessionSummary(folder, config.prompt, config.model, rounds, labels, last or (folder / SESSION_FILE).stat().st_mtime))
    return sorted(found, key=lambda s: s.last_activity, reverse=True)


def _mtime(folder: Path) -> float:
    with contextlib.suppress(OSError):
        return (folder / SESSION_FILE).stat().st_mtime
    return 0.0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return f"{DB_FILE} cannot be read ({exc})"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    return str(exc)
