"""A real terminal on a virtual X display, with keys typed through X and screenshots: xterm showing Sixel
(``-ti vt340``), mlterm and Konsole (both show Sixel as they are), or kitty.

    with XtermScreen(tmp_path) as screen:
        screen.start(command, env, terminal="konsole")
        screen.keys("space", "Right")
        picture = screen.shot()          # a PIL image of the terminal's cells, the first cell at (0, 0)
        layout = screen.layout()         # the app's HERO_LAYOUT_FILE: where each image is drawn, by cell

Needs Debian's xvfb, xdotool, the DejaVu fonts and the terminal itself (`.ci/run` installs them), and a
Pillow built with XCB (PyPI's wheels are). Konsole is started with a profile and window layout of its own
(no menu bar, toolbars, tab bar, scroll bar or margin), written into the XDG folders it is given.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageGrab, features

COLUMNS, ROWS = 120, 42
FONT = ("DejaVu Sans Mono", "11")
SIXEL_TERMINALS = ("xterm", "mlterm", "konsole")
# Where the first cell's top left pixel is in the window: Konsole keeps 3 pixels left of it even with no margin.
_ORIGIN = {"konsole": (3, 0)}


def missing(terminal: str | None = "xterm") -> str | None:
    """Why the tests in ``terminal`` (None: any, on the virtual display) cannot run here, or None."""
    tools = ("Xvfb", "xdotool") if terminal is None else ("Xvfb", terminal, "xdotool")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (Debian: apt-get install {' '.join(tool.lower() for tool in absent)})"
    if not Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf").exists():
        return "the DejaVu Sans Mono font is not installed (Debian: fonts-dejavu-core)"
    if not features.check("xcb"):
        return "this Pillow has no XCB support, so it cannot take X screenshots"
    return None


class XtermScreen:
    def __init__(self, home: Path):
        self.home = home
        self.layout_file = home / "layout.json"
        self.display = ""
        self._xvfb: subprocess.Popen | None = None
        self._xterm: subprocess.Popen | None = None
        self._terminal = "xterm"

    def __enter__(self) -> XtermScreen:
        read, write = os.pipe()
        self._xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                      pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as displays:
            self.display = f":{displays.readline().strip()}"
        return self

    def __exit__(self, *exc) -> None:
        for process in (self._xterm, self._xvfb):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()

    def start(self, command: list[str], env: dict[str, str], terminal: str = "xterm") -> None:
        """Run ``command`` in ``terminal`` (xterm, mlterm, konsole or kitty), its window at the display's top left:
        no borders, scroll bar or window manager."""
        environment = {**os.environ, **env, "DISPLAY": self.display, "HERO_LAYOUT_FILE": str(self.layout_file)}
        for variable in ("TMUX", "COLORTERM", "TERM_PROGRAM", "KITTY_WINDOW_ID", "KONSOLE_VERSION"):
            environment.pop(variable, None)
        if terminal == "mlterm":  # box-drawing lines drawn by mlterm itself: the font's spill a pixel into the row above
            argv = ["mlterm", f"--geometry={COLUMNS}x{ROWS}+0+0", "--sb=false", "--border=0", "--fontsize=14",
                    f"--deffont={FONT[0]}", "--bg=black", "--fg=white", "--logmsg=false", "--boxdraw=decsp", "-e", *command]
        elif terminal == "konsole":
            argv = ["konsole", "--nofork", "-e", str(self._konsole_setup(command, environment))]
        elif terminal == "kitty":  # software OpenGL: the virtual display has no GPU
            environment["LIBGL_ALWAYS_SOFTWARE"] = "1"
            argv = ["kitty", "--config", "NONE", "-o", f"font_family={FONT[0]}", "-o", f"font_size={FONT[1]}",
                    "-o", "window_padding_width=0", "-o", "remember_window_size=no", "-o", f"initial_window_width={COLUMNS}c",
                    "-o", f"initial_window_height={ROWS}c", *command]
        else:
            argv = ["xterm", "-ti", "vt340", "-geometry", f"{COLUMNS}x{ROWS}+0+0", "-bw", "0", "-b", "0", "+sb", "-fa", FONT[0],
                    "-fs", FONT[1], "-bg", "black", "-fg", "white", "-xrm", "XTerm*numColorRegisters: 1024",
                    "-xrm", "XTerm*sixelScrolling: true", "-e", *command]
        self._terminal = terminal
        self._xterm = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _konsole_setup(self, command: list[str], environment: dict[str, str]) -> Path:
        """Konsole's settings in the XDG folders of ``environment`` (set there when absent), and a script that runs
        ``command`` (Konsole's -e takes one program; its arguments would be read as Konsole's own)."""
        config = Path(environment.setdefault("XDG_CONFIG_HOME", str(self.home / "config")))
        data = Path(environment.setdefault("XDG_DATA_HOME", str(self.home / "data")))
        (data / "konsole").mkdir(parents=True, exist_ok=True)
        (data / "konsole" / "hero.profile").write_text(
            f"[General]\nName=hero\nParent=FALLBACK/\nTerminalColumns={COLUMNS}\nTerminalRows={ROWS}\nTerminalMargin=0\n"
            f"TerminalCenter=false\nShowTerminalSizeHint=false\n\n[Appearance]\nFont={FONT[0]},{FONT[1]},-1,5,50,0,0,0,0,0\n\n"
            "[Scrolling]\nScrollBarPosition=2\n")
        config.mkdir(parents=True, exist_ok=True)
        (config / "konsolerc").write_text(
            "[Desktop Entry]\nDefaultProfile=hero.profile\n\n[KonsoleWindow]\nShowMenuBarByDefault=false\n"
            "RememberWindowSize=false\nUseSingleInstance=false\n\n[MainWindow]\nMenuBar=Disabled\n\n"
            "[TabBar]\nTabBarVisibility=AlwaysHideTabBar\n")
        # Its toolbars are only hidden by a saved window state; window layouts of a newer version without them replace
        # the built-in ones.
        (data / "kxmlgui5" / "konsole").mkdir(parents=True, exist_ok=True)
        for name, gui in (("konsoleui.rc", "konsole"), ("sessionui.rc", "session")):
            (data / "kxmlgui5" / "konsole" / name).write_text(
                f'<!DOCTYPE gui SYSTEM "kpartgui.dtd">\n<gui name="{gui}" version="999"><MenuBar/></gui>\n')
        script = self.home / "konsole-command.sh"
        script.write_text(f"#!/bin/sh\nexec {shlex.join(command)}\n")
        script.chmod(0o755)
        return script

    def keys(self, *names: str, pause: float = 0.15) -> None:
        # With no window manager the keyboard follows the pointer: put it on the terminal first.
        subprocess.run(["xdotool", "mousemove", "20", "20"], env={**os.environ, "DISPLAY": self.display}, check=True)
        for name in names:
            subprocess.run(["xdotool", "key", "--clearmodifiers", name], env={**os.environ, "DISPLAY": self.display}, check=True)
            time.sleep(pause)

    def layout(self) -> dict:
        try:
            return json.loads(self.layout_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait_layout(self, condition, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._xterm is not None and self._xterm.poll() is not None:
                raise AssertionError(f"{self._terminal} exited")
            layout = self.layout()
            if layout and condition(layout):
                return layout
            time.sleep(0.1)
        raise AssertionError(f"the app never showed that; its layout: {self.layout()}")

    def shot(self) -> Image.Image:
        """The display from the terminal's first cell on (its top left pixel at (0, 0))."""
        picture = ImageGrab.grab(xdisplay=self.display).convert("RGB")
        left, top = _ORIGIN.get(self._terminal, (0, 0))
        return picture.crop((left, top, picture.width, picture.height)) if left or top else picture

    def settled_shot(self, quiet: float = 0.8, timeout: float = 20.0) -> np.ndarray:
        """A screenshot once the screen has stopped changing for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last = np.asarray(self.shot())
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = np.asarray(self.shot())
            if not np.array_equal(now, last):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
        raise AssertionError("the screen never settled")

    def cell_size(self) -> tuple[int, int]:
        """Pixels per cell: the terminal's window (no border, scroll bar or padding to speak of) divided by its cells."""
        done = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", self._terminal, "getwindowgeometry", "--shell"],
                              env={**os.environ, "DISPLAY": self.display}, capture_output=True, text=True, check=True)
        values = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
        return int(values["WIDTH"]) // COLUMNS, int(values["HEIGHT"]) // ROWS
