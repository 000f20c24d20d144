"""Keys in, terminal replies out: a reply that arrives after hero stopped waiting for it is dropped, never typed.

hero asks the terminal what it can draw before the app starts (``terminal_probe``) and waits for the answers;
over a slow or stalled link an answer can come later, when Textual reads the input. Textual turns a sequence it
does not know into key presses, one per character: the ``?`` of a device-attributes reply opens the help
screen, its digits and ``c`` may label images. Here every character passes through a filter before Textual's
parser sees it. The filter holds back what may be the start of a reply and drops it once it is one:

- CSI replies: device attributes (``CSI ? ... c``, ``CSI > ... c``), any other ``CSI ?``/``CSI >``/``CSI =``
  report, window and cell sizes (``CSI 4;h;w t``, ``CSI 6;h;w t``, ...), status (``CSI 0 n``), ANSI mode
  reports (``CSI ... $ y``). Textual's own replies pass: the private mode reports it asks for (``CSI ? ... $ y``),
  the in-band resize (``CSI 48;... t``) and the cursor position (``CSI r;c R``).
- string replies, whole or cut short: XTVERSION and DECRQSS (DCS ``ESC P ... ESC \\``), kitty graphics
  (APC ``ESC _ G ... ESC \\``), colours (OSC ``ESC ] ... BEL``), and PM/SOS.

Keys are never held longer than Textual holds them: a lone Escape, ``ESC [`` (alt+[) and ``ESC P`` (alt+P) wait
the same escape delay as Textual's parser, and a key's own sequence (arrows, pgup, F-keys, mouse, kitty keyboard
protocol) is complete when it arrives, so it is handed on at once. A reply whose rest does not come within
``REPLY_GAP`` is dropped as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from types import FunctionType

from textual import constants
from textual._parser import ParseEOF, ParseTimeout, Read1
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers import linux_driver
from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

log = logging.getLogger(__name__)

ESC = "\x1b"
BEL = "\x07"
REPLY_GAP = 0.5  # seconds the rest of a reply may take once it has begun: a terminal writes a reply in one piece
MAX_CSI = 64  # characters; longer is no key and no reply
MAX_STRING = 4096
_STRING_INTRODUCERS = "P_]^X"  # DCS, APC, OSC, PM, SOS


def is_reply(sequence: str) -> bool:
    """Whether a complete CSI sequence (``ESC [ ... final``) is a terminal's reply that Textual does not read."""
    body, final = sequence[2:-1], sequence[-1]
    if body[:1] in ("?", ">", "="):
        return not (body[:1] == "?" and final == "y" and body.endswith("$"))  # Textual reads private mode reports
    if final == "t":
        return not body.startswith("48;")  # in-band window resize, which Textual asked for
    return final == "n" or (final == "y" and body.endswith("$"))


def _csi_final(character: str) -> bool:
    return "\x40" <= character <= "\x7e"


def _csi_inner(character: str) -> bool:  # parameter and intermediate bytes
    return "\x20" <= character <= "\x3f"


class ReplyFilter:
    """Decides, a character at a time, what goes on to Textual's parser and what is a reply (dropped).

    ``push`` returns (text to pass on, whether that text is complete: nothing that follows belongs to it); what
    may still be a reply is held until the next character or ``expire``.
    """

    def __init__(self) -> None:
        self.held = ""
        self.due: float | None = None  # when the held text has waited long enough

    def push(self, character: str, now: float) -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        self._push(character, now, out)
        return out

    def _hold(self, text: str, now: float, wait: float) -> None:
        self.held, self.due = text, now + wait

    def _drop(self, why: str) -> None:
        log.info("dropped a terminal reply (%s): %r", why, self.held)
        self.held, self.due = "", None

    def _release(self, out: list[tuple[str, bool]], complete: bool) -> None:
        out.append((self.held, complete))
        self.held, self.due = "", None

    def _push(self, character: str, now: float, out: list[tuple[str, bool]]) -> None:
        held = self.held
        if not held:
            if character == ESC:
                self._hold(ESC, now, constants.ESCAPE_DELAY)
            else:
                out.append((character, False))
            return
        sequence = held + character
        if len(held) == 1:  # ESC, then:
            if character == ESC:  # the first was the Escape key
                self._release(out, True)
                self._hold(ESC, now, constants.ESCAPE_DELAY)
            elif character == "[" or character in _STRING_INTRODUCERS:  # a reply, or alt+[ / alt+P ...
                self._hold(sequence, now, constants.ESCAPE_DELAY)
            else:  # alt+key, SS3 (ESC O ...): Textual's
                self.held = sequence
                self._release(out, False)
            return
        if held[1] == "[":
            self._push_csi(character, sequence, now, out)
        else:
            self._push_string(character, sequence, now, out)

    def _push_csi(self, character: str, sequence: str, now: float, out: list[tuple[str, bool]]) -> None:
        if _csi_final(character):
            if is_reply(sequence):
                self.held = sequence
                self._drop("late")
            else:  # a key, the mouse, or a reply Textual reads
                self.held = sequence
                self._release(out, False)
        elif _csi_inner(character) and len(sequence) <= MAX_CSI:
            self._hold(sequence, now, REPLY_GAP)  # a key's sequence comes whole, so this is a reply coming in
        else:  # cut short: by a new sequence, a control character, or too long
            if len(self.held) > 2:
                self._drop("cut short")
            else:  # alt+[
                self._release(out, True)
            self._push(character, now, out)

    def _push_string(self, character: str, sequence: str, now: float, out: list[tuple[str, bool]]) -> None:
        held = self.held
        if held.endswith(ESC) and len(held) > 2:  # ESC inside a string: its terminator, or a cut-off string
            if character == "\\":
                self.held = sequence
                self._drop("late")
                return
            self.held = held[:-1]
            if len(self.held) > 2:
                self._drop("cut short")
            else:  # alt+P, then a sequence
                self._release(out, True)
            self._push(ESC, now, out)
            self._push(character, now, out)
            return
        if character == BEL and held[1] == "]":  # OSC may end with BEL
            self.held = sequence
            self._drop("late")
        elif len(sequence) > MAX_STRING:
            self._drop("too long")
        else:
            self._hold(sequence, now, REPLY_GAP)

    def expire(self, now: float) -> list[tuple[str, bool]]:
        """What the held text becomes when nothing more has come: the key it was, or nothing."""
        if self.due is None or now < self.due:
            return []
        if len(self.held) <= 2:  # Escape, alt+[, alt+P, ...
            out: list[tuple[str, bool]] = []
            self._release(out, True)
            return out
        self._drop("incomplete")
        return []


class ReplyFilteringParser(XTermParser):
    """Textual's parser behind a ``ReplyFilter``."""

    def parse(self, token_callback) -> Generator[Read1, str, None]:
        return _filtered(super().parse(token_callback), ReplyFilter())

    def tick(self) -> Iterable[Message]:
        yield from super().tick()
        # After a timeout Textual's parser arms no new one; the filter may still hold text that needs one.
        if self._timeout_time is None and self._awaiting.timeout is not None:
            self._timeout_time = get_time() + self._awaiting.timeout


def _filtered(inner: Generator, reply_filter: ReplyFilter) -> Generator[Read1, str, None]:
    """Drive Textual's parser generator ``inner`` with what ``reply_filter`` passes on, keeping both timeouts."""
    wait = next(inner)
    inner_due = None if wait.timeout is None else get_time() + wait.timeout

    def give(parts: list[tuple[str, bool]]) -> None:
        nonlocal wait, inner_due
        for text, complete in parts:
            for character in text:
                wait = inner.send(character)
            if complete and wait.timeout is not None:  # nothing more belongs to it: Textual need not wait
                wait = inner.throw(ParseTimeout())
            inner_due = None if wait.timeout is None else get_time() + wait.timeout

    while True:
        dues = [due for due in (inner_due, reply_filter.due) if due is not None]
        timeout = None if not dues else max(0.0, min(dues) - get_time())
        try:
            character = yield Read1(timeout)
        except ParseTimeout:
            now = get_time()
            if inner_due is not None and inner_due <= now:
                wait = inner.throw(ParseTimeout())
                inner_due = None if wait.timeout is None else get_time() + wait.timeout
            give(reply_filter.expire(now))
            continue
        except ParseEOF:
            give(reply_filter.expire(float("inf")))
            try:
                inner.throw(ParseEOF())
            except StopIteration:
                pass
            return
        give(reply_filter.push(character, get_time()))


def _input_loop() -> Callable[[LinuxDriver], None] | None:
    """Textual's input loop (``LinuxDriver.run_input_thread``) as it is, with the parser it makes swapped for
    ``ReplyFilteringParser``; None where a Textual release reads input another way."""
    loop = LinuxDriver.run_input_thread
    if "XTermParser" not in loop.__code__.co_names:
        return None
    names = {**vars(linux_driver), "XTermParser": ReplyFilteringParser}
    return FunctionType(loop.__code__, names, loop.__name__, loop.__defaults__, loop.__closure__)


class ReplyFilteringDriver(LinuxDriver):
    """Textual's Linux driver, reading input through ``ReplyFilteringParser``."""

    def run_input_thread(self) -> None:
        loop = _input_loop()
        if loop is None:
            log.warning("this Textual reads input without XTermParser: late terminal replies are not filtered")
            super().run_input_thread()
        else:
            loop(self)
