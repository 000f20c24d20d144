"""Files written whole or not at all, and checked when read: atomic writes, checksums, folders published by rename.

Every file the engine relies on (checkpoint files, a round's tensors and PNGs) is
listed with its size and sha256 when it is published, and checked when it is read,
so damage of any kind (not only truncation) is found before the file is used. Torch-free.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hero_engine.errors import HeroError

CHECKSUMS_FILE = "checksums.json"  # in a round folder: size and sha256 of each of its files


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes of ``text`` in UTF-8, as it is (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes, shared: bool = False) -> None:
    """Replace ``path`` with ``data`` whole or not at all: written to a uniquely named temporary beside it, synced, renamed.

    The unique name lets processes that share a file (the user's config, the list of
    recent sessions) write it at once without one removing the other's temporary. The
    temporary is private to the user (0600), as a session's files are; ``shared`` gives the
    file the permissions the user's umask gives any file instead (a report or a dataset, for others to read).
    """
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if shared:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it: put back at once
    os.umask(mask)
    return mask


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


# Ends the message for an output that cannot be written; the app, which has no --out, says its own way instead.
CHOOSE_ANOTHER_OUT = "choose another --out"


def check_output_folder(folder: Path, what: str, shown: Path) -> None:
    """Refuse, before any work, an output (``what``, to be written at ``shown``) whose ``folder`` cannot be made or written."""
    existing = next(path for path in (Path(folder), *Path(folder).parents) if path.exists())
    if not existing.is_dir():
        raise HeroError(f"cannot write {what} to {shown} ({existing} is a file): {CHOOSE_ANOTHER_OUT}")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass  # a file can be made there: os.access says yes to root everywhere, /proc included
    except OSError as exc:
        raise HeroError(f"cannot write {what} to {shown} ({write_failure(exc)}): {CHOOSE_ANOTHER_OUT}") from None


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
