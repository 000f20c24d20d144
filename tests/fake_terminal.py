"""The terminal's side of a pseudo-terminal: runs a command on it, keeps all it writes, and answers hero's queries
(XTVERSION, the kitty graphics query, the cell size, device attributes) as a given terminal would, after a
delay such as an SSH round trip adds.

    terminal = FakeTerminal([python, "-c", code], version="kitty(0.26.5)", kitty=True, delay=0.4)
    terminal.wait_for(b"labeling")
"""

from __future__ import annotations

import fcntl
import os
import queue
import re
import select
import struct
import subprocess
import termios
import threading
import time

CELL = (10, 20)  # pixels per cell that the pty reports
_QUERIES = re.compile(rb"\x1b\[>q|\x1b_G[^\x1b]*a=q[^\x1b]*\x1b\\|\x1b\[16t|\x1b\[c")


class FakeTerminal:
    def __init__(self, argv: list[str], *, version: str = "", kitty: bool = False, sixel: bool = False, delay: float = 0.0,
                 columns: int = 120, rows: int = 40, env: dict[str, str] | None = None):
        self.version, self.kitty, self.sixel, self.delay = version, kitty, sixel, delay
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, columns * CELL[0], rows * CELL[1]))
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._replies: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self.answered = 0  # replies written so far
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._answer, daemon=True).start()

    def reply_to(self, query: bytes) -> bytes:
        if query == b"\x1b[>q":
            return f"\x1bP>|{self.version}\x1b\\".encode() if self.version else b""
        if query.startswith(b"\x1b_G"):
            return b"\x1b_Gi=31;OK\x1b\\" if self.kitty else b""
        if query == b"\x1b[16t":
            return f"\x1b[6;{CELL[1]};{CELL[0]}t".encode()
        return b"\x1b[?62;4;22c" if self.sixel else b"\x1b[?62;22c"

    def _read(self) -> None:
        scanned = 0
        while True:
            try:
                if not select.select([self.master], [], [], 0.2)[0]:
                    continue
                chunk = os.read(self.master, 1 << 16)
            except OSError:  # the child closed the terminal, or close() did
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk
                for query in _QUERIES.finditer(self._output, max(0, scanned - 64)):
                    if query.end() > scanned:
                        self._replies.put((time.monotonic() + self.delay, self.reply_to(query.group())))
                scanned = len(self._output)

    def _answer(self) -> None:
        while True:
            due, reply = self._replies.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                os.write(self.master, reply)
            except OSError:
                return
            self.answered += 1

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for(self, marker: bytes, timeout: float = 60.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"never saw {marker!r}; the last output: {self.output[-3000:]!r}")
            time.sleep(0.05)
        return self.output

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        try:
            os.close(self.master)
        except OSError:
            pass
