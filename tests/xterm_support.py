"""A real xterm showing Sixel (``-ti vt340``), or kitty, on a virtual X display, with keys typed through X and screenshots.

    with XtermScreen(tmp_path) as screen:
        screen.start(command, env)
        screen.keys("space", "Right")
        picture = screen.shot()          # a PIL image of the xterm window
        layout = screen.layout()         # the app's HERO_LAYOUT_FILE: where each image is drawn, by cell

Needs Debian's xvfb, xterm, xdotool and the DejaVu fonts (`.ci/run` installs them) and a Pillow
built with XCB (PyPI's wheels are).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageGrab, features

COLUMNS, ROWS = 120, 42
FONT = ("DejaVu Sans Mono", "11")


def missing() -> str | None:
    """Why the xterm tests cannot run here, or None."""
    absent = [tool for tool in ("Xvfb", "xterm", "xdotool") if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (Debian: apt-get install xvfb xterm xdotool)"
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
        """Run ``command`` in xterm (or kitty) whose first cell is the display's top left pixel: no borders, scroll
        bar or window manager."""
        environment = {**os.environ, **env, "DISPLAY": self.display, "HERO_LAYOUT_FILE": str(self.layout_file)}
        for variable in ("TMUX", "COLORTERM", "TERM_PROGRAM", "KITTY_WINDOW_ID"):
            environment.pop(variable, None)
        if terminal == "kitty":  # software OpenGL: the virtual display has no GPU
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
                raise AssertionError("xterm exited")
            layout = self.layout()
            if layout and condition(layout):
                return layout
            time.sleep(0.1)
        raise AssertionError(f"the app never showed that; its layout: {self.layout()}")

    def shot(self) -> Image.Image:
        """The terminal's area of the display, COLUMNS x ROWS cells."""
        return ImageGrab.grab(xdisplay=self.display).convert("RGB")

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
        """Pixels per cell: the terminal's window (no border, scroll bar or padding) divided by its cells."""
        done = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", self._terminal, "getwindowgeometry", "--shell"],
                              env={**os.environ, "DISPLAY": self.display}, capture_output=True, text=True, check=True)
        values = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
        return int(values["WIDTH"]) // COLUMNS, int(values["HEIGHT"]) // ROWS
