"""Files the report and the dataset write for people to share: replaced whole, with the user's usual permissions."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary beside ``path``, sync it, and rename it over ``path``: the old file or the new, never half.

    Unlike the session's own files (storage.integrity, private to the user), the temporary is made with
    ``open``, so the file gets the permissions the user's umask gives any file they write.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
