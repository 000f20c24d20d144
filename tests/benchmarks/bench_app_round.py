"""What a person waits for in the app itself: from confirming a submit to the next round's first images on screen.

    python tests/benchmarks/bench_app_round.py                    # the demo model at its defaults, 4 labeled rounds
    python tests/benchmarks/bench_app_round.py --rounds 2 --threads 1
    python tests/benchmarks/bench_app_round.py --model tiny --rounds 1 --batch 4 --steps 2 --train-timesteps 2

Options it does not know go to `hero-tui start` as they are (`--batch 4 --steps 2`).

Runs `hero-tui start --prompt hand --graphics halfblock` in a pseudo-terminal, as a
person would in a terminal, with the real engine as the app's child process, and labels
by key presses: in each round two images good and the second the best, then `s` and
`enter` (which confirms the submit, or in the best-picker chooses and submits). Times are
from the `enter` that submits: until the app has written the next round's status line,
which it draws with the round's first images; and until hero.db holds the whole next
round. Each round also shows the engine's own seconds for the representation and the
policy update, and the thread count the engine chose for its learning
(engine.log): the app redraws its screen at the submit, just as that count is taken.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness
from pty_terminal import Terminal

THREADS_LINE = re.compile(r"CPU threads: (\d+) \((.*)\)")


def stored(folder: Path, round_: int) -> tuple[int, int | None]:
    """How many of a round's images hero.db holds, and how many the round will hold (None before it starts)."""
    if not (folder / "hero.db").exists():
        return 0, None
    with sqlite3.connect(f"file:{folder / 'hero.db'}?mode=ro", uri=True) as db:
        count = db.execute("SELECT COUNT(*) FROM images WHERE round = ?", (round_,)).fetchone()[0]
        size = db.execute("SELECT size FROM rounds WHERE round = ?", (round_,)).fetchone()
    return count, (size[0] or count) if size else None


def press(terminal: Terminal, key: bytes) -> float:
    """Type ``key``; the monotonic time it was typed."""
    typed = time.monotonic()
    terminal.type(key)
    return typed


def wait_whole(folder: Path, round_: int, terminal: Terminal, timeout: float = 180.0) -> tuple[float, int]:
    """When hero.db held the whole round, and its size."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and terminal.process.poll() is None:
        try:
            count, size = stored(folder, round_)
        except sqlite3.OperationalError:  # the engine is creating the database
            count, size = 0, None
        if size is not None and count >= size:
            return time.monotonic(), size
        time.sleep(0.02)
    ended = "the app ended" if terminal.process.poll() is not None else "timed out"
    raise SystemExit(f"round {round_} was never stored whole ({ended}); the app's last output: {terminal.output[-600:]!r}")


def stage_seconds(folder: Path) -> dict[int, str]:
    """Each learned round's representation and policy seconds, as the engine measured them (hero.db's metrics)."""
    with sqlite3.connect(f"file:{folder / 'hero.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT round, name, value FROM metrics WHERE name IN ('seconds_representation', 'seconds_policy')")
        seconds: dict[int, dict[str, float]] = {}
        for round_, name, value in rows:
            seconds.setdefault(round_, {})[name.removeprefix("seconds_")] = value
    return {round_ + 1: f"{s['representation']:.1f} + {s['policy']:.1f}" for round_, s in seconds.items()}


def learning_threads(folder: Path) -> list[str]:
    """The engine's thread choice at each round's learning, in order, from engine.log."""
    lines = (folder / "engine.log").read_text().splitlines()
    choices = []
    for index, line in enumerate(lines):
        if "'cmd': 'update'" in line:
            match = next((THREADS_LINE.search(later) for later in lines[index + 1:] if THREADS_LINE.search(later)), None)
            choices.append(f"{match.group(1)} ({match.group(2)})" if match else "?")
    return choices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="labeled rounds to time")
    parser.add_argument("--threads", help="HERO_THREADS for the engine (default: the engine chooses)")
    parser.add_argument("--model", help="`hero-tui start --model` (default: its own, the demo model without CUDA)")
    args, start_options = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="hero-bench-app-") as tmp:
        folder, home = Path(tmp) / "session", Path(tmp) / "home"
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "HOME": str(home),
               "XDG_CONFIG_HOME": str(home / ".config"), "XDG_STATE_HOME": str(home / ".state"),
               "XDG_DATA_HOME": str(home / ".local")}
        env.pop("HERO_THREADS", None)
        if args.threads:
            env["HERO_THREADS"] = args.threads
        env["PYTHONPATH"] = os.pathsep.join([str(harness.REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        model = ["--model", args.model] if args.model else []
        terminal = Terminal([sys.executable, "-m", "hero_tui", "start", "--prompt", "hand", "--graphics", "halfblock",
                             "--session", str(folder), *model, *start_options], env)
        rows = []
        try:
            for round_ in range(args.rounds + 1):
                # The round is whole before it is labeled, so `s` submits it instead of counting images still coming.
                _, size = wait_whole(folder, round_, terminal)
                if round_ == args.rounds:
                    break
                time.sleep(0.5)  # the app has drawn the last chunk
                for key in (b" ", b"\x1b[C", b" ", b"b"):
                    press(terminal, key)
                    time.sleep(0.3)
                since = len(terminal.output)
                press(terminal, b"s")
                terminal.wait_for(b"submit round" if round_ == 0 else b"choose the best", timeout=10, since=since)
                time.sleep(0.3)
                since = len(terminal.output)
                submitted = press(terminal, b"\r")
                terminal.wait_for(f"round {round_ + 1} ".encode(), timeout=120, since=since)  # looks every 50 ms
                on_screen = time.monotonic()
                whole, _ = wait_whole(folder, round_ + 1, terminal)
                rows.append((round_ + 1, on_screen - submitted, whole - submitted))
        finally:
            terminal.close()
        threads, stages = learning_threads(folder), stage_seconds(folder)
    settings = " ".join(start_options) or "its defaults"
    print(f"{args.model or 'the default model'} at {settings} ({size} images a round) in `hero-tui start`, half-blocks, "
          f"{os.cpu_count()} cores; seconds from the enter that submits")
    print(f"{'round':>5}  {'first images on screen':>22}  {'whole round stored':>18}  {'representation + policy':>23}  "
          "engine threads while learning")
    for (round_, first, whole), chosen in zip(rows, threads, strict=False):
        print(f"{round_:>5}  {first:>22.2f}  {whole:>18.2f}  {stages.get(round_, '?'):>23}  {chosen}")
    print(f"{'mean':>5}  {statistics.mean(r[1] for r in rows):>22.2f}  {statistics.mean(r[2] for r in rows):>18.2f}")


if __name__ == "__main__":
    main()
