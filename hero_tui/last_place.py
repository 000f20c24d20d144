"""Where the person left a round: the image under the cursor when the app quit, so a resume opens there.

One small JSON file in the session folder, written atomically as the app quits. It is
a convenience, not a label: a file that cannot be read or written is logged and left.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hero_engine.storage.integrity import atomic_write_text

log = logging.getLogger(__name__)

PLACE_FILE = "tui_place.json"


def save(folder: Path, round_: int, image_id: int) -> None:
    try:
        atomic_write_text(Path(folder) / PLACE_FILE, json.dumps({"round": round_, "image_id": image_id}))
    except OSError as exc:
        log.warning("could not keep where the cursor was (%s): a resume opens at the first unlabeled image", exc)


def load(folder: Path, round_: int) -> int | None:
    """The image the cursor was on in ``round_`` when the app last quit; None when it quit in another round."""
    try:
        place = json.loads((Path(folder) / PLACE_FILE).read_text())
        return int(place["image_id"]) if int(place["round"]) == round_ else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("where the cursor was cannot be read (%s): opening at the first unlabeled image", exc)
        return None
