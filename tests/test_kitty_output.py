"""Kitty graphics as the app writes them, decoded: no kitty with unicode placeholders (0.28+) is packaged for the
test machines (Debian 12 has 0.26.5), so the escape sequences themselves are read back and checked.

The app runs on a pseudo-terminal that answers hero's query as kitty 0.35 does; every APC
sequence it writes is parsed: each image sent once per id, as a PNG whose pixels match its file,
placed (virtually) at the size of the cells the app gave it, and drawn with placeholder cells in
that id's colour.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from fake_terminal import CELL, FakeTerminal
from PIL import Image
from tui_support import fake_engine, make_session

_APC = re.compile(rb"\x1b_G([^;\x1b]*)(?:;([^\x1b]*))?\x1b\\")
_PLACEHOLDER = chr(0x10EEEE).encode()
_CHILD = ("import sys; from pathlib import Path; from hero_tui.launch import run_app; "
          "run_app(Path(sys.argv[1]), None, engine_command=sys.argv[2:])")


def kitty_commands(output: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Every kitty graphics command in ``output``: its keys and its payload."""
    commands = []
    for match in _APC.finditer(output):
        keys = dict(part.split("=", 1) for part in match.group(1).decode().split(",") if "=" in part)
        commands.append((keys, match.group(2) or b""))
    return commands


def transmitted_images(commands) -> dict[int, list[Image.Image]]:
    """id -> the images sent under it (chunks joined: m=1 means more follow)."""
    images: dict[int, list[Image.Image]] = {}
    pending: dict[int, bytes] = {}
    for keys, payload in commands:
        if keys.get("a", "t") not in ("t", "T") or "i" not in keys:
            continue
        assert keys.get("f") == "100", "PNG payloads"
        image_id = int(keys["i"])
        pending[image_id] = pending.get(image_id, b"") + payload
        if keys.get("m", "0") == "0":
            data = base64.b64decode(pending.pop(image_id))
            images.setdefault(image_id, []).append(Image.open(io.BytesIO(data)).convert("RGB"))
    return images


def correlation(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.resize((24, 24), Image.Resampling.BOX), dtype=float).ravel()
    y = np.asarray(b.convert("RGB").resize((24, 24), Image.Resampling.BOX), dtype=float).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / (np.sqrt((x @ x) * (y @ y)) + 1e-9))


def test_kitty_images_as_written_decode_to_the_thumbnails(tmp_path: Path):
    folder = make_session(tmp_path / "session", batch_size=8)
    layout_file = tmp_path / "layout.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "COLORTERM")}
    env.update(TERM="xterm-kitty", XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_DATA_HOME=str(tmp_path / "data"), HERO_LAYOUT_FILE=str(layout_file))
    terminal = FakeTerminal([sys.executable, "-c", _CHILD, str(folder), *fake_engine(folder)],
                            version="kitty(0.35.2)", kitty=True, env=env)
    try:
        terminal.wait_for(b"labeling", timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until every visible thumbnail's image has been sent
            layout = json.loads(layout_file.read_text()) if layout_file.exists() else {"images": []}
            visible = [image for image in layout["images"] if "number" in image and image["visible"]]
            if visible and len(transmitted_images(kitty_commands(terminal.output))) >= len(visible):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        output = terminal.output
        terminal.type(b"q")
        terminal.wait_exit()
    finally:
        terminal.close()

    assert {image["widget"] for image in visible} == {"textual_image.widget.TGPImage"}, "auto picks kitty graphics"
    commands = kitty_commands(output)
    images = transmitted_images(commands)
    placements = {int(keys["i"]): keys for keys, _ in commands if keys.get("a") == "p"}
    assert all(len(sent) == 1 for sent in images.values()), "an image sent twice under one id"
    assert set(placements) == set(images), "every image sent is placed, and only those"
    for keys in placements.values():
        assert keys.get("U") == "1", "virtual placements, drawn by unicode placeholders"

    unmatched = dict(images)
    for thumbnail in visible:
        x, y, width, height = thumbnail["region"]
        png = Image.open(thumbnail["path"])
        scores = {image_id: correlation(sent[0], png) for image_id, sent in unmatched.items()}
        image_id = max(scores, key=scores.get)
        assert scores[image_id] > 0.9, f"thumbnail {thumbnail['number']}: best correlation {scores[image_id]:.3f}"
        sent, placement = unmatched.pop(image_id)[0], placements[image_id]
        assert (int(placement["c"]), int(placement["r"])) == (width, height), "placed over the widget's cells"
        assert sent.size == (width * CELL[0], height * CELL[1]), "sent at the pixel size of those cells"
        colour = f"38;2;{(image_id >> 16) & 255};{(image_id >> 8) & 255};{image_id & 255}".encode()
        assert colour in output, "placeholder cells in the image id's colour"
    assert output.count(_PLACEHOLDER) >= sum(t["region"][2] * t["region"][3] for t in visible)
