"""Key-to-screen latency of the labeling app while the engine child process keeps the CPU busy.

    python tests/benchmarks/bench_tui_latency.py [--presses 200] [--burn N] [--batch 64]

The app runs in a pseudo-terminal exactly as in a terminal (half-block images).
Each press of space toggles the label of the image under the cursor; the time
is measured from writing the key to the terminal until the bytes of the new
border badge (✓ good / ✗ bad) have been written back by the app. The engine is
the fake engine of the tests with --burn N processes spinning, standing in for
an engine that trains on every core (default: all cores).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import harness  # noqa: F401  (puts tests/ on sys.path, for the app's test support)
from tui_support import fake_engine, make_session

COLUMNS, ROWS = 120, 40
MARKERS = ("✓".encode(), "✗".encode())  # good, bad: the badge a press of space toggles to


class PseudoTerminal:
    """The app as a child process on a pty of a fixed size."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)

    def read_until(self, marker: bytes, timeout: float) -> float:
        """Read output until ``marker`` appears; returns the monotonic time it did."""
        seen = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                seen = seen[-64:] + os.read(self.master, 1 << 16)
                if marker in seen:
                    return time.monotonic()
        raise TimeoutError(f"the app never wrote {marker!r}")

    def drain(self, quiet: float = 0.05) -> None:
        while select.select([self.master], [], [], quiet)[0]:
            os.read(self.master, 1 << 16)

    def press(self, key: bytes) -> float:
        os.write(self.master, key)
        return time.monotonic()

    def close(self) -> None:
        os.write(self.master, b"q")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self.master)


def run_child(folder: Path, engine: list[str]) -> None:
    from hero_tui.launch import run_app

    run_app(folder, "halfblock", engine_command=engine)


def measure(presses: int, burn: int, batch: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_session(Path(tmp) / "session", batch_size=batch)
        engine = fake_engine(folder, "--burn", str(burn))
        env = {**os.environ, "TERM": "xterm-256color", "XDG_STATE_HOME": tmp, "XDG_CONFIG_HOME": tmp}
        argv = [sys.executable, __file__, "--child", str(folder), "--", *engine]
        terminal = PseudoTerminal(argv, env)
        try:
            terminal.read_until(b"labeling", timeout=120)
            terminal.drain(0.5)
            latencies = []
            for i in range(presses):
                pressed = terminal.press(b" ")
                shown = terminal.read_until(MARKERS[i % 2], timeout=10)
                latencies.append(shown - pressed)
                terminal.drain(0.03)  # let the frame finish, as between a person's key presses
            return latencies
        finally:
            terminal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--burn", type=int, default=os.cpu_count() or 1, help="busy engine processes (default: one per core)")
    parser.add_argument("--batch", type=int, default=64, help="images in the round")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args, engine = parser.parse_known_args()
    if args.child:
        run_child(args.child, [a for a in engine if a != "--"])
        return
    latencies = sorted(t * 1000 for t in measure(args.presses, args.burn, args.batch))
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(f"key-to-screen latency over {len(latencies)} presses, {args.batch} images, engine busy on {args.burn} core(s):")
    print(f"  median {statistics.median(latencies):.1f} ms   p95 {p95:.1f} ms   max {latencies[-1]:.1f} ms")


if __name__ == "__main__":
    main()
