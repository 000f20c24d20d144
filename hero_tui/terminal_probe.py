"""Ask the terminal what it can draw, in one batch of queries, before Textual owns it.

The queries are XTVERSION (``CSI > q``: the terminal's name and version), the kitty
graphics query, the cell size in pixels where the kernel does not know it, and
primary device attributes (``CSI c``), which every terminal answers and which is
sent last: terminals answer in order, so once its reply is in, every other reply
is in too and none is left to reach the app later, where Textual would read a
DCS or APC reply as key presses. The wait is long enough for a slow SSH link
(textual-image 0.12 waits 0.1 s, and a reply that comes later is typed into the app).

Inside tmux the kitty query and XTVERSION go to the outer terminal through tmux's
passthrough (when it is on); tmux answers device attributes itself, so the outer
terminal's replies get a short grace after it.
"""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 3.0  # seconds for the device-attributes reply: a 300 ms round trip many times over
TMUX_GRACE = 1.5  # seconds for the outer terminal's replies through tmux's passthrough

KITTY_QUERY = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
XTVERSION_QUERY = "\x1b[>q"
CELL_SIZE_QUERY = "\x1b[16t"
DEVICE_ATTRIBUTES_QUERY = "\x1b[c"

_DEVICE_ATTRIBUTES = re.compile(r"\x1b\[\?([0-9;]*)c")
_XTVERSION = re.compile(r"\x1bP>\|(.*?)\x1b\\", re.DOTALL)
_KITTY_REPLY = re.compile(r"\x1b_G(.*?)\x1b\\", re.DOTALL)
_CELL_SIZE = re.compile(r"\x1b\[6;(\d+);(\d+)t")
# A reply begun and not yet ended (CSI without its final byte; DCS, APC, OSC without its terminator): its rest is
# read here, not left for the app (which drops a reply it sees whole or from its start: hero_tui.terminal_input).
_UNFINISHED = re.compile(r"\x1b(\[[\x20-\x3f]*|[P_\]^X]([^\x07\x1b]|\x1b(?!\\))*)?\Z")
REPLY_REST = 0.5  # seconds for the rest of a reply that has begun


@dataclass(frozen=True)
class TerminalReport:
    """What the terminal said about itself (inside tmux: tmux's own answers and the outer terminal's)."""

    answered: bool = False  # device attributes came back: the terminal reads and answers queries
    sixel: bool = False  # its device attributes list Sixel (4); inside tmux, tmux's own
    kitty_graphics: bool = False  # it answered the kitty graphics query with OK
    version: str = ""  # XTVERSION's text of the outer terminal, e.g. "kitty(0.26.5)" or "XTerm(379)"
    tmux_version: str = ""  # inside tmux, tmux's own XTVERSION text, e.g. "tmux 3.3a"
    cell_size: tuple[int, int] | None = None  # pixels, from the kernel or the terminal
    in_tmux: bool = False
    passthrough: bool = False  # tmux's allow-passthrough is on (the queries went through)


def tmux_escape(sequence: str) -> str:
    """Wrap a sequence in tmux's passthrough envelope (its ESCs doubled)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def tmux_option(name: str) -> str | None:
    """A global tmux option's value, or None when tmux cannot be asked."""
    if shutil.which("tmux") is None:
        return None
    try:
        done = subprocess.run(["tmux", "show-options", "-gv", name], capture_output=True, text=True, timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return done.stdout.strip() or None


def parse_replies(text: str, *, in_tmux: bool = False, passthrough: bool = False,
                  cell_size: tuple[int, int] | None = None) -> TerminalReport:
    """The report that the terminal's replies in ``text`` make."""
    attributes = _DEVICE_ATTRIBUTES.search(text)
    versions = [match.group(1).strip() for match in _XTVERSION.finditer(text)]
    tmux_versions = [v for v in versions if v.lower().startswith("tmux")]
    outer = [v for v in versions if not v.lower().startswith("tmux")]
    kitty = any(body.rsplit(";", 1)[-1].startswith("OK") for body in _KITTY_REPLY.findall(text) if ";" in body)
    size = _CELL_SIZE.search(text)
    if cell_size is None and size:
        cell_size = (int(size.group(2)), int(size.group(1)))
    return TerminalReport(
        answered=attributes is not None,
        sixel=attributes is not None and "4" in attributes.group(1).split(";"),
        kitty_graphics=kitty, version=outer[0] if outer else "", tmux_version=tmux_versions[0] if tmux_versions else "",
        cell_size=cell_size, in_tmux=in_tmux, passthrough=passthrough,
    )


def kernel_cell_size(fd: int) -> tuple[int, int] | None:
    """Cell size from the terminal's window size in pixels, where the kernel has it (not over every SSH)."""
    import fcntl
    import struct
    import termios

    try:
        rows, columns, width, height = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    if not (rows and columns and width and height):
        return None
    return width // columns, height // rows


def probe(stdin_fd: int | None = None, stdout_fd: int | None = None, timeout: float = REPLY_TIMEOUT,
          tmux_grace: float = TMUX_GRACE) -> TerminalReport:
    """Send the queries and read every reply (see the module docstring); an empty report off a terminal."""
    stdin_fd = sys.__stdin__.fileno() if stdin_fd is None and sys.__stdin__ else stdin_fd
    stdout_fd = sys.__stdout__.fileno() if stdout_fd is None and sys.__stdout__ else stdout_fd
    if stdin_fd is None or stdout_fd is None or not (os.isatty(stdin_fd) and os.isatty(stdout_fd)):
        return TerminalReport()
    in_tmux = bool(os.environ.get("TMUX"))
    passthrough = in_tmux and tmux_option("allow-passthrough") in ("on", "all")
    cell_size = kernel_cell_size(stdout_fd)
    queries = XTVERSION_QUERY
    if passthrough:  # kitty graphics and the outer terminal's name; tmux itself knows neither. XTVERSION goes last:
        queries += tmux_escape(KITTY_QUERY) + tmux_escape(XTVERSION_QUERY)  # its reply ends the wait for the outer ones
    elif not in_tmux:  # tmux without passthrough would show the query's text in its status line
        queries += KITTY_QUERY
    if cell_size is None:
        queries += CELL_SIZE_QUERY
    queries += DEVICE_ATTRIBUTES_QUERY
    with _raw(stdin_fd):
        _drain(stdin_fd)
        os.write(stdout_fd, queries.encode())
        replies = _read_until(stdin_fd, lambda text: _DEVICE_ATTRIBUTES.search(text) is not None, timeout)
        if passthrough and _DEVICE_ATTRIBUTES.search(replies):
            replies += _read_until(stdin_fd, _has_outer_reply, tmux_grace, replies)
        if _UNFINISHED.search(replies):
            replies += _read_until(stdin_fd, lambda text: not _UNFINISHED.search(text), REPLY_REST, replies)
    report = parse_replies(replies, in_tmux=in_tmux, passthrough=passthrough, cell_size=cell_size)
    log.info("terminal replies %r: %s", replies, report)
    return report


def _has_outer_reply(text: str) -> bool:
    return any(not version.lower().startswith("tmux") for version in _XTVERSION.findall(text))


def _read_until(fd: int, done, timeout: float, before: str = "") -> str:
    """Read replies until ``done(text)`` or ``timeout`` seconds pass; then whatever else is already there."""
    data = b""
    deadline = time.monotonic() + timeout
    while not done(before + data.decode(errors="replace")):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            log.warning("the terminal did not answer within %.1f s", timeout)
            break
        data += os.read(fd, 4096)
    data += _drain(fd)
    return data.decode(errors="replace")


def _drain(fd: int) -> bytes:
    data = b""
    while select.select([fd], [], [], 0.02)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def _raw(fd: int) -> Iterator[None]:
    """No echo and no line buffering while the replies come, so none is shown or held back."""
    import termios  # POSIX only, like the terminals hero queries
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        new = termios.tcgetattr(fd)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, new)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
