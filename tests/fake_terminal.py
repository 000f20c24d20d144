"""The terminal's side of a pseudo-terminal: runs a command on it, keeps all it writes, and answers hero's queries
(XTVERSION, the kitty graphics query, the cell size, device attributes) as a given terminal would, after a
delay such as an SSH round trip adds.

    terminal = FakeTerminal([python, "-c", code], version="kitty(0.26.5)", kitty=True, delay=0.4)
    terminal.wait_for(b"labeling")
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time

from pty_terminal import CELL, Terminal

_QUERIES = re.compile(rb"\x1b\[>q|\x1b_G[^\x1b]*a=q[^\x1b]*\x1b\\|\x1b\[16t|\x1b\[c")


class FakeTerminal(Terminal):
    def __init__(self, argv: list[str], *, version: str = "", kitty: bool = False, sixel: bool = False, delay: float = 0.0,
                 columns: int = 120, rows: int = 40, env: dict[str, str] | None = None):
        self.version, self.kitty, self.sixel, self.delay = version, kitty, sixel, delay
        self._replies: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._scanned = 0  # output already searched for queries
        self.answered = 0  # replies written so far
        super().__init__(argv, env, columns, rows)
        self._answerer = threading.Thread(target=self._answer, daemon=True)
        self._answerer.start()

    def reply_to(self, query: bytes) -> bytes:
        if query == b"\x1b[>q":
            return f"\x1bP>|{self.version}\x1b\\".encode() if self.version else b""
        if query.startswith(b"\x1b_G"):
            return b"\x1b_Gi=31;OK\x1b\\" if self.kitty else b""
        if query == b"\x1b[16t":
            return f"\x1b[6;{CELL[1]};{CELL[0]}t".encode()
        return b"\x1b[?62;4;22c" if self.sixel else b"\x1b[?62;22c"

    def _received(self) -> None:
        # a query split between two reads is found whole in the next one
        for query in _QUERIES.finditer(self._output, max(0, self._scanned - 64)):
            if query.end() > self._scanned:
                self._replies.put((time.monotonic() + self.delay, self.reply_to(query.group())))
        self._scanned = len(self._output)

    def _answer(self) -> None:
        while True:
            due, reply = self._replies.get()
            time.sleep(max(0.0, due - time.monotonic()))
            if self._closing.is_set():
                return
            try:
                os.write(self.master, reply)
            except OSError:
                return
            self.answered += 1

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._closing.set()
        self._replies.put((0.0, b""))  # wakes the answering thread, which then sees the closing
        self._answerer.join(timeout=self.delay + 5)
        self._close_pty()
