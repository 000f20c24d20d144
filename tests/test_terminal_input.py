"""A terminal's reply that comes after hero stopped waiting for it is dropped, never read as keys; keys are not.

Unit tests feed the app's input parser (Textual's, behind hero's filter) as the input thread does; the app
test runs hero in a pseudo-terminal that answers its queries 4 s late, past the probe's 3 s wait.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from fake_terminal import FakeTerminal
from textual import events
from textual._xterm_parser import XTermParser
from tui_support import fake_engine, labels, make_session

from hero_tui.terminal_input import ReplyFilteringParser
from hero_tui.terminal_probe import REPLY_TIMEOUT

XTVERSION = "\x1bP>|XTerm(379)\x1b\\"
KITTY_OK = "\x1b_Gi=31;OK\x1b\\"
DEVICE_ATTRIBUTES = "\x1b[?63;1;2;4;6;9;15;16;22;28c"
REPLIES = [XTVERSION, KITTY_OK, DEVICE_ATTRIBUTES, "\x1b[?62;22c", "\x1b[>1;4000;29c", "\x1b[6;20;10t",
           "\x1b[4;960;1600t", "\x1b[8;48;160t", "\x1b[0n", "\x1bP1$r0m\x1b\\", "\x1bP1+r544e=787465726d\x1b\\",
           "\x1b]11;rgb:0000/0000/0000\x07", "\x1b]10;rgb:ffff/ffff/ffff\x1b\\", "\x1b[?1u", "\x1b[2;1$y"]
KEYS = ["q", "?", " ", "\x1b", "\x1b[A", "\x1b[B", "\x1bOA", "\x1b[5~", "\x1b[6~", "\x1b[6;5~", "\x1b[1;5R", "\x1ba",
        "\x1bP", "\x1b_", "\x1b[", "\x1b]", "\x1b\x1b[A", "\x1b[27u", "\x1b[97;5u", "\x1b[15~", "\x1b[[A", "\r", "\x7f"]


def parse(parser_class, chunks: list[str]) -> list[str]:
    """What the parser makes of ``chunks`` (fed as separate reads), once it waits for nothing more."""
    parser = parser_class()
    tokens = []
    for chunk in chunks:
        tokens += parser.feed(chunk)
    deadline = time.monotonic() + 5
    while parser._awaiting.timeout is not None:  # the input thread ticks the parser between reads
        assert time.monotonic() < deadline, "the parser waits for ever"
        tokens += parser.tick()
        time.sleep(0.01)
    return [token.key if isinstance(token, events.Key) else type(token).__name__ for token in tokens]


@pytest.mark.parametrize("reply", REPLIES)
def test_a_late_reply_is_no_key(reply: str):
    assert parse(XTermParser, [reply]), "Textual's parser alone reads it as keys (else this test tests nothing)"
    assert parse(ReplyFilteringParser, [reply]) == []
    assert parse(ReplyFilteringParser, ["a" + reply + "b"]) == ["a", "b"]


@pytest.mark.parametrize("split", [1, 3, 6])
def test_a_reply_in_pieces_or_cut_short_is_no_key(split: int):
    burst = XTVERSION + KITTY_OK + DEVICE_ATTRIBUTES
    assert parse(ReplyFilteringParser, [burst[:split], burst[split:]]) == []
    assert parse(ReplyFilteringParser, [DEVICE_ATTRIBUTES[:split + 2]]) == []  # the rest never came
    assert parse(ReplyFilteringParser, [XTVERSION[:split + 2], "\x1b[A"]) == ["up"]  # cut off by a key


@pytest.mark.parametrize("keys", KEYS)
def test_keys_read_as_textual_reads_them(keys: str):
    assert parse(ReplyFilteringParser, [keys]) == parse(XTermParser, [keys])
    assert parse(ReplyFilteringParser, [keys + DEVICE_ATTRIBUTES]) == parse(XTermParser, [keys])


def test_textuals_own_replies_reach_it():
    for reply, token in [("\x1b[?2026;2$y", "TerminalSupportsSynchronizedOutput"), ("\x1b[12;40R", "CursorPosition"),
                         ("\x1b[48;48;160;960;1600t", "Resize"), ("\x1b[<0;3;4M", "MouseDown"), ("\x1b[I", "AppFocus")]:
        assert parse(ReplyFilteringParser, [reply]) == [token]


def test_escape_is_not_held_longer():
    def latency(parser_class) -> float:
        parser = parser_class()
        list(parser.feed("\x1b"))
        start = time.monotonic()
        while not list(parser.tick()):
            time.sleep(0.002)
        return time.monotonic() - start
    assert latency(ReplyFilteringParser) < latency(XTermParser) + 0.05


_APP_CHILD = ("import sys; from pathlib import Path; from hero_tui.launch import run_app; "
              "run_app(Path(sys.argv[1]), None, engine_command=sys.argv[2:])")
LATE = REPLY_TIMEOUT + 1.0  # seconds: past the probe's wait, when the app reads the input


def test_replies_later_than_the_probe_waits_reach_the_app_as_no_key(tmp_path: Path):
    """An xterm that answers 4 s late (a stalled SSH link): the probe gives up after 3 s and the app starts in
    half-blocks; the replies (XTVERSION's text holds e, r, m; device attributes a ?) then open no screen and
    label nothing, and the keys typed after them work."""
    folder = make_session(tmp_path / "session")
    layout = tmp_path / "layout.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "KITTY_WINDOW_ID", "TERM_PROGRAM")}
    env.update(TERM="xterm-256color", XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_DATA_HOME=str(tmp_path / "data"), HERO_LAYOUT_FILE=str(layout))
    terminal = FakeTerminal([sys.executable, "-c", _APP_CHILD, str(folder), *fake_engine(folder)],
                            version="XTerm(379)", kitty=True, sixel=True, delay=LATE, env=env)

    def screens() -> list[str]:
        """The app's screen stack now: from the layout record written next."""
        layout.unlink(missing_ok=True)
        deadline = time.monotonic() + 30
        while not layout.exists():
            assert time.monotonic() < deadline and terminal.process.poll() is None, terminal.output[-2000:]
            time.sleep(0.05)
        return json.loads(layout.read_text())["stack"]

    def wait_for_stack(condition, what: str) -> None:
        """Until the screen stack meets ``condition`` (a key's screen opens or closes on the app's own time)."""
        deadline = time.monotonic() + 30
        while not condition(stack := screens()):
            assert time.monotonic() < deadline, f"{what}: the stack stayed {stack}"

    try:
        terminal.wait_for(b"labeling", timeout=60)
        deadline = time.monotonic() + 30
        while terminal.answered < 3:  # XTVERSION, the kitty query, device attributes
            assert time.monotonic() < deadline, f"{terminal.answered} replies sent"
            time.sleep(0.05)
        time.sleep(1.0)  # the parser's escape delay and the filter's reply gap, several times over
        assert screens() == ["Screen", "SessionScreen"], "a reply typed as keys opened a screen"
        assert set(labels(folder).values()) == {None}, "a reply typed as keys labeled an image"
        log = (folder / "tui.log").read_text()
        assert "graphics: halfblock" in log  # the probe did give up: the replies did come late
        assert "dropped a terminal reply" in log
        terminal.type(b" ")  # and the app still reads keys
        deadline = time.monotonic() + 30
        while set(labels(folder).values()) == {None}:
            assert time.monotonic() < deadline, "space labeled nothing"
            time.sleep(0.1)
        terminal.type(b"?")
        wait_for_stack(lambda stack: stack[-1] == "HelpScreen", "? opened no help")
        terminal.type(b"\x1b")
        wait_for_stack(lambda stack: stack == ["Screen", "SessionScreen"], "escape did not close the help")
        terminal.type(b"q")
        terminal.wait_exit()
    finally:
        terminal.close()
