"""The labeling app in a pseudo-terminal, as in a real terminal, with every byte it writes kept for counting.

    terminal = AppTerminal(folder, "sixel", fake_engine(folder), tmp)
    terminal.wait_for(b"labeling")
    written = terminal.after(b"\\x1b[C")   # the bytes the right arrow made the app write

``Terminal(argv, env)`` runs any command line the same way (`hero-tui start`, as a person types it);
``fake_terminal.FakeTerminal`` builds on it to answer hero's queries as a given terminal would.

The child runs ``hero_tui.launch.run_app`` with the graphics method forced, so it
writes exactly what it would write to a person's terminal (Sixel or Kitty escape
sequences included). The pty reports a pixel size, so textual-image's cell size
is the terminal's, not a guess.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CELL = (10, 20)  # pixels per cell, as xterm's default font gives

_SIXEL = re.compile(rb"\x1bP[0-9;]*q.*?\x1b\\", re.DOTALL)
_KITTY = re.compile(rb"\x1b_G.*?\x1b\\", re.DOTALL)
_KITTY_PLACEHOLDER = chr(0x10EEEE).encode()

_CHILD = """
import os
import sys
from pathlib import Path
from hero_tui.launch import run_app
if os.environ.get("HERO_TEST_SLOWED"):
    sys.path.insert(0, os.environ["HERO_TEST_SLOWED"])
    import slow_event_loop
    slow_event_loop.install()
folder, method, *engine = sys.argv[1:]
run_app(Path(folder), method, engine_command=engine)
"""


def image_bytes(data: bytes) -> int:
    """Bytes of image data in terminal output: Sixel (DCS) and Kitty graphics (APC) sequences."""
    return sum(len(m) for m in _SIXEL.findall(data)) + sum(len(m) for m in _KITTY.findall(data))


def image_sequences(data: bytes) -> list[bytes]:
    """The images in ``data``: each Sixel image, and each Kitty transmission with its chunks joined."""
    images = _SIXEL.findall(data)
    continued = False
    for sequence in _KITTY.findall(data):
        if any(action in sequence for action in (b"a=p", b"a=d", b"a=q")):  # placements, deletions, the probe's query
            continue
        if continued:
            images[-1] += sequence
        else:
            images.append(sequence)
        continued = b"m=1" in sequence
    return images


def placeholder_cells(data: bytes) -> int:
    """Kitty unicode placeholder cells in ``data`` (text that shows an image already sent)."""
    return data.count(_KITTY_PLACEHOLDER)


class Terminal:
    """A command on a pty of ``columns`` x ``rows`` cells; a thread keeps everything it writes."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, columns: int = 160, rows: int = 48):
        self.master, slave = os.openpty()
        pixels = struct.pack("HHHH", rows, columns, columns * CELL[0], rows * CELL[1])
        fcntl.ioctl(slave, termios.TIOCSWINSZ, pixels)
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._last_write = time.monotonic()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if ready:
                    chunk = os.read(self.master, 1 << 16)
                    if not chunk:
                        return
                    with self._lock:
                        self._output += chunk
                        self._last_write = time.monotonic()
                        self._received()
            except OSError:  # the child closed the terminal, or close() did
                return

    def _received(self) -> None:
        """Called with the lock held after each chunk joins the output: a terminal that answers queries reads it."""

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for(self, marker: bytes, timeout: float = 60.0, since: int = 0) -> bytes:
        """Wait until ``marker`` is in the output after ``since``; the whole output."""
        deadline = time.monotonic() + timeout
        while marker not in self.output[since:]:
            exited = self.process.poll() is not None
            if exited:  # its last writes may still be in the pty: the reader ends once it has read them
                self._reader.join(timeout=5)
                if marker in self.output[since:]:
                    break
            if exited or time.monotonic() > deadline:
                raise AssertionError(f"never saw {marker!r}; the last output: {self.output[-3000:]!r}")
            time.sleep(0.05)
        return self.output

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for_images(self, count: int, since: int = 0, timeout: float = 30.0) -> None:
        """Wait until the app has sent at least ``count`` images since ``since``: a slowed or loaded app can pause
        longer than a quiet wait between a frame and its images. Returns at the deadline too (the test's count then
        says what came)."""
        deadline = time.monotonic() + timeout
        while len(image_sequences(self.output[since:])) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def settle(self, quiet: float = 0.6, timeout: float = 30.0) -> None:
        """Wait until the app has written nothing for ``quiet`` seconds from now on (its frame is done)."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = time.monotonic() - max(self._last_write, start)
            if idle >= quiet:
                return
            time.sleep(0.05)

    def after(self, keys: bytes, quiet: float = 0.6, marker: bytes | None = None, images: int = 0) -> bytes:
        """Press ``keys`` and return what the app wrote until it went quiet (and ``marker`` and at least ``images``
        images were written)."""
        start = len(self.output)
        self.type(keys)
        if marker is not None:
            self.wait_for(marker, since=start)
        self.wait_for_images(images, since=start)
        self.settle(quiet)
        return self.output[start:]

    def resize(self, columns: int, rows: int, quiet: float = 0.6) -> bytes:
        """Resize the terminal as a person does (the size changes, SIGWINCH follows); what the app then wrote."""
        start = len(self.output)
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, columns * CELL[0], rows * CELL[1]))
        os.kill(self.process.pid, signal.SIGWINCH)
        self.settle(quiet)
        return self.output[start:]

    def close(self) -> None:
        if self.process.poll() is None:
            os.write(self.master, b"q")
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pty()

    def _close_pty(self) -> None:
        """Close the pty once the threads that use it have stopped: the next pty opened takes the same descriptor
        number, and a reader still running would take that terminal's output for this one's."""
        self._closing.set()
        self._reader.join(timeout=5)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1  # closing twice could close another file that took the number


class AppTerminal(Terminal):
    """hero's app on the session in ``folder`` with the graphics ``method`` forced and ``engine`` as its engine."""

    def __init__(self, folder: Path, method: str, engine: list[str], home: Path,
                 columns: int = 160, rows: int = 48, env: dict[str, str] | None = None, slowed: bool = False):
        """``slowed``: the app's event loop stalls now and then, as on a loaded machine (slow_event_loop)."""
        environment = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor",
                       "XDG_STATE_HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_DATA_HOME": str(home),
                       **(env or {})}
        environment.pop("HERO_TEST_SLOWED", None)
        if slowed:
            environment["HERO_TEST_SLOWED"] = str(TESTS)
        super().__init__([sys.executable, "-c", _CHILD, str(folder), method, *engine], environment, columns, rows)
