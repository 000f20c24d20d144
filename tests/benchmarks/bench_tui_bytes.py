"""Bytes the labeling app writes to the terminal per action, with Sixel and with Kitty graphics.

    python tests/benchmarks/bench_tui_bytes.py [--batch 16] [--image-size 64] [--size 160x48]

The app runs in a pseudo-terminal exactly as in a terminal (10x20 pixel cells), with the
graphics method forced, on the fake engine's round of generated images (the demo model's
size, 64 px, by default). For each action it counts everything written until the app goes
quiet, the part of it that is image data (Sixel DCS or Kitty APC sequences), and how many
images that is. "own size" is what sending each distinct image once would cost: the first
draw should be within 10% of it; a cursor or label key should cost under 2 KB. Two rows resize the
terminal (10 columns and 4 rows smaller, then back): each shown thumbnail should be sent once, at its new size.
The last rows submit a round (the fake engine takes 2 s per learning stage): the submit question, the learning's
start (its panel takes the grid's room), its report (two more lines of the panel) and the next round's images;
as the bars move all along, each of these counts what was written in a fixed time after it. In that next round,
with 3 good images, the best-picker opens (the previous best and the 3, each should be sent once) and an arrow
key moves its selection (no image bytes).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import harness  # noqa: F401  (puts tests/ on sys.path, for the app's test support)
from pty_terminal import AppTerminal, image_bytes, image_sequences
from tui_support import fake_engine, make_session

ACTIONS = [("arrow key", b"\x1b[C"), ("space (label)", b" "), ("b (best)", b"b"), ("zoom open (enter)", b"\r"),
           ("zoom: arrow key (next image)", b"\x1b[C"), ("zoom: space (label)", b" "), ("zoom: u (undo)", b"u"),
           ("zoom: arrow key back (to the best)", b"\x1b[D"), ("zoom: space on the best (refused)", b" "),
           ("zoom close (escape)", b"\x1b"),
           ("help open (?)", b"?"), ("help close (escape)", b"\x1b")]
_KITTY_ID = re.compile(rb"i=\d+,?")
STAGE_SECONDS = 2.0  # the fake engine's, per learning stage, for the submit rows


def distinct_image_bytes(data: bytes) -> int:
    """Bytes of the distinct images in ``data`` (a Kitty image sent again carries a new id: ids are ignored)."""
    return sum(len(image) for image in {_KITTY_ID.sub(b"", image) for image in image_sequences(data)})


def measure(method: str, batch: int, image_size: int, columns: int, rows: int) -> list[tuple[str, int, int, int, int]]:
    """(action, bytes written, image bytes, images, distinct image bytes) per action."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_session(Path(tmp) / "session", batch_size=batch)
        engine = fake_engine(folder, "--image-size", str(image_size))
        terminal = AppTerminal(folder, method, engine, Path(tmp), columns, rows)
        try:
            terminal.wait_for(b"labeling", timeout=120)
            terminal.settle(1.5)
            rows_out = [_row("start-up (first grid)", terminal.output)]
            for name, key in ACTIONS:
                rows_out.append(_row(name, terminal.after(key, quiet=1.5)))
            smaller = (columns - 10, rows - 4)
            rows_out.append(_row(f"resize to {smaller[0]}x{smaller[1]}", terminal.resize(*smaller, quiet=1.5)))
            rows_out.append(_row(f"resize to {columns}x{rows}", terminal.resize(columns, rows, quiet=1.5)))
        finally:
            terminal.close()
        folder = make_session(Path(tmp) / "submitted", batch_size=batch)
        engine = fake_engine(folder, "--image-size", str(image_size), "--stage-seconds", str(STAGE_SECONDS))
        terminal = AppTerminal(folder, method, engine, Path(tmp), columns, rows)
        try:
            terminal.wait_for(b"labeling", timeout=120)
            terminal.settle(1.5)
            terminal.after(b" \x1b[Cb", quiet=1.0)  # a good image and the best
            rows_out.append(_row("submit question (s)", terminal.after(b"s", quiet=1.5)))
            start = len(terminal.output)
            terminal.type(b"\r")
            time.sleep(STAGE_SECONDS * 0.75)
            rows_out.append(_row("submit: learning starts", terminal.output[start:]))
            rows_out.append(_row("learning: round report", _watch(terminal, b"labels in total")))
            rows_out.append(_row("next round's images", _watch(terminal, b"labeling")))
            terminal.settle(1.5)
            terminal.after(b" \x1b[C" * 3, quiet=1.0)  # 3 good images
            rows_out.append(_row("best-picker (s)", terminal.after(b"s", quiet=1.5)))
            rows_out.append(_row("best-picker: arrow key", terminal.after(b"\x1b[C", quiet=1.5)))
            return rows_out
        finally:
            terminal.close()


def _watch(terminal: AppTerminal, marker: bytes, timeout: float = 60.0) -> bytes:
    """What the app wrote from just before ``marker`` for the next 0.75 stage."""
    since, deadline = len(terminal.output), time.monotonic() + timeout
    while marker not in (written := terminal.output)[since:]:
        if time.monotonic() > deadline:
            raise AssertionError(f"the app never wrote {marker!r}")
        since = len(written)
        time.sleep(0.02)
    time.sleep(STAGE_SECONDS * 0.75)
    return terminal.output[since:]


def _row(name: str, data: bytes) -> tuple[str, int, int, int, int]:
    return name, len(data), image_bytes(data), len(image_sequences(data)), distinct_image_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="images in the round")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--size", default="160x48", help="terminal columns x rows")
    args = parser.parse_args()
    columns, rows = (int(part) for part in args.size.split("x"))
    print(f"{args.batch} images of {args.image_size} px, terminal {columns}x{rows} cells of 10x20 px")
    print(f"{'method':7} {'action':22} {'written':>10} {'image data':>11} {'images':>7} {'own size':>9}")
    for method in ("sixel", "kitty"):
        for name, written, image, count, own in measure(method, args.batch, args.image_size, columns, rows):
            print(f"{method:7} {name:22} {written:>10,} {image:>11,} {count:>7} {own:>9,}")


if __name__ == "__main__":
    main()
