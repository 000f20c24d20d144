"""Graphics detection: which method each terminal gets and why, over a slow link too, with no reply left for the app."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_terminal import FakeTerminal
from tui_support import TmuxServer, fake_engine, labels, make_session

from hero_tui.graphics import assume_truecolor, choose
from hero_tui.terminal_probe import TerminalReport, parse_replies, probe

XTERM = "\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;16;22;28c"
KITTY_OK = "\x1b_Gi=31;OK\x1b\\"


def report(replies: str, **kw) -> TerminalReport:
    return parse_replies(replies, **kw)


@pytest.mark.parametrize("replies, context, textual_image, method, reason", [
    (XTERM, {}, "0.12.0", "sixel", "Python 3.12 draws it clean"),  # textual-image 0.12 damages Sixel: said, with the fix
    (XTERM, {}, "0.13.1", "sixel", ""),
    ("\x1bP>|kitty(0.26.5)\x1b\\" + KITTY_OK + "\x1b[?62;c", {}, "0.12.0", "halfblock", "kitty 0.26.5 lacks unicode placeholders"),
    ("\x1bP>|kitty(0.35.2)\x1b\\" + KITTY_OK + "\x1b[?62;c", {}, "0.12.0", "kitty", ""),
    ("\x1bP>|WezTerm 20240203\x1b\\" + KITTY_OK + "\x1b[?65;4;6;18;22c", {}, "0.14.2", "sixel", ""),
    ("\x1b[?1;2c", {}, "0.12.0", "halfblock", "neither Sixel nor kitty graphics"),
    # inside tmux: tmux answers device attributes and XTVERSION itself
    ("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c", {"in_tmux": True}, "0.14.2", "halfblock", "without allow-passthrough"),
    ("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c\x1bP>|kitty(0.35.2)\x1b\\" + KITTY_OK, {"in_tmux": True, "passthrough": True},
     "0.14.2", "kitty", ""),
    ("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c\x1bP>|kitty(0.35.2)\x1b\\" + KITTY_OK, {"in_tmux": True, "passthrough": True},
     "0.12.0", "halfblock", "textual-image 0.13+"),
    ("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c\x1bP>|XTerm(379)\x1b\\", {"in_tmux": True, "passthrough": True}, "0.14.2",
     "halfblock", "tmux 3.3a passes neither"),
    ("\x1bP>|tmux 3.5a\x1b\\\x1b[?1;2;4c", {"in_tmux": True}, "0.14.2", "sixel", ""),
])
def test_each_terminal_gets_the_best_method_that_shows_there(replies, context, textual_image, method, reason):
    choice = choose(report(replies, **context), "auto", textual_image)
    assert choice.method == method
    assert reason in choice.reason and bool(reason) == bool(choice.reason)


def test_a_kitty_known_only_by_its_environment_is_taken_as_one_without_placeholders():
    silent_kitty = report(KITTY_OK + "\x1b[?62;c")  # kitty graphics, but no XTVERSION reply
    assert choose(silent_kitty, "auto", "0.12.0", {"TERM": "xterm-kitty"}).method == "halfblock"
    assert "this kitty (too old to report its version) lacks unicode placeholders" in choose(silent_kitty, "auto", "0.12.0", {"KITTY_WINDOW_ID": "1"}).reason
    assert choose(silent_kitty, "auto", "0.12.0", {"TERM": "xterm-ghostty"}).method == "kitty"


def test_a_chosen_method_wins_and_truecolor_follows_an_answer():
    assert choose(report(XTERM), "halfblock", "0.12.0").method == "halfblock"
    assert assume_truecolor(report(XTERM), {"TERM": "xterm"})
    assert not assume_truecolor(report(XTERM), {"COLORTERM": "256"})
    assert not assume_truecolor(report(""), {})


_PROBE_CHILD = """
import json, os, select, sys, time, tty
from hero_tui.terminal_probe import probe
report = probe()
tty.setcbreak(0)
time.sleep(float(sys.argv[1]) * 3)  # any late reply is in by now
left = b""
while select.select([0], [], [], 0.3)[0]:
    left += os.read(0, 4096)
print("REPORT" + json.dumps({"version": report.version, "kitty": report.kitty_graphics, "sixel": report.sixel,
                             "cell": report.cell_size, "left": left.decode(errors="replace")}))
"""


@pytest.mark.parametrize("delay", [0.0, 0.4])
def test_detection_over_a_slow_link_reads_every_reply_and_leaves_none(delay: float):
    """An SSH round trip of 400 ms: kitty 0.26.5 is still recognised, and no reply is left to be read as keys."""
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "COLORTERM")}
    terminal = FakeTerminal([sys.executable, "-c", _PROBE_CHILD, str(delay)], version="kitty(0.26.5)", kitty=True,
                            delay=delay, env=env)
    try:
        output = terminal.wait_for(b"}\r\n", timeout=30)
    finally:
        terminal.close()
    found = json.loads(re.search(rb"REPORT(\{.*\})", output).group(1))
    assert found["version"] == "kitty(0.26.5)" and found["kitty"] and not found["sixel"]
    assert found["cell"] == [10, 20]
    assert found["left"] == "", f"replies left for the app to read as keys: {found['left']!r}"


_APP_CHILD = ("import sys; from pathlib import Path; from hero_tui.launch import run_app; "
              "run_app(Path(sys.argv[1]), None, engine_command=sys.argv[2:])")


def test_kitty_before_0_28_over_ssh_gets_half_blocks_truecolor_and_says_why(tmp_path: Path):
    """kitty 0.26.5 over a 400 ms link, TERM=xterm and no COLORTERM (as SSH passes it): half-blocks in 24-bit
    colour, the reason in the status line, and no terminal reply typed into the app."""
    folder = make_session(tmp_path / "session")
    layout = tmp_path / "layout.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "COLORTERM", "KITTY_WINDOW_ID", "TERM_PROGRAM")}
    env.update(TERM="xterm", XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_DATA_HOME=str(tmp_path / "data"), HERO_LAYOUT_FILE=str(layout))
    terminal = FakeTerminal([sys.executable, "-c", _APP_CHILD, str(folder), *fake_engine(folder)],
                            version="kitty(0.26.5)", kitty=True, delay=0.4, env=env)
    try:
        output = terminal.wait_for(b"lacks unicode placeholders", timeout=60)
        terminal.wait_for(b"labeling", timeout=60)
        time.sleep(1.5)
        state = json.loads(layout.read_text())
        output = terminal.output
        terminal.type(b"q")
        terminal.wait_exit()
    finally:
        terminal.close()
    assert b"kitty 0.26.5 lacks unicode placeholders" in output
    assert b"\x1b[38;2;" in output or b";38;2;" in output, "24-bit colour"
    assert output.count(b"\x1b_G") == 1, "only the query: no kitty image was sent"
    thumbnails = [image for image in state["images"] if "number" in image]
    assert {image["widget"] for image in thumbnails} == {"textual_image.widget.HalfcellImage"}
    assert state["stack"][-1] == "SessionScreen", "a reply typed as keys opened another screen"
    assert set(labels(folder).values()) == {None}, "a reply typed as keys labeled an image"



@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_inside_tmux_without_passthrough_no_query_text_reaches_the_title(tmp_path: Path):
    """tmux shows an APC sequence's text as the pane title (its status line): the kitty query is not sent there."""
    tmux = TmuxServer(f"hero-probe-{os.getpid()}")
    code = "from hero_tui.graphics import select_graphics; c = select_graphics(); print('CHOSE', c.method, '-', c.reason)"
    try:
        subprocess.run([*tmux.base, "-f", "/dev/null", "new-session", "-d", "-s", "hero", "-x", "150", "-y", "20",
                        f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}; sleep 30"], check=True)
        screen = tmux.wait_for("CHOSE", timeout=30)
        title = subprocess.run([*tmux.base, "display", "-p", "-t", "hero", "#{pane_title}"], capture_output=True, text=True).stdout
    finally:
        tmux.kill()
    assert "Gi=" not in title, f"the kitty query's text became the pane title: {title!r}"
    assert "CHOSE halfblock - inside tmux without allow-passthrough" in screen


def test_a_reply_cut_by_the_wait_is_read_whole_by_the_probe():
    """The wait ends in the middle of XTVERSION's reply: the probe reads the rest, so no tail without its start
    (which the app could not tell from typing) is left."""
    master, slave = os.openpty()

    def answer() -> None:
        os.read(master, 4096)  # the queries
        os.write(master, b"\x1bP>|XTe")
        time.sleep(0.6)  # past the wait
        os.write(master, b"rm(379)\x1b\\")

    answering = threading.Thread(target=answer, daemon=True)
    answering.start()
    try:
        found = probe(slave, slave, timeout=0.3)
        answering.join(5)
        left = os.read(slave, 4096) if select.select([slave], [], [], 0.3)[0] else b""
    finally:
        os.close(master)
        os.close(slave)
    assert found.version == "XTerm(379)" and not found.answered
    assert left == b""
