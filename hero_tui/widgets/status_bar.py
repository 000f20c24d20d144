"""The status line: round, page, labels this round and in total, good count, and a small copy of the best when its tile is not on screen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static

from hero_tui.widgets.image_grid import OFF_SCREEN, show_once_laid_out

NOTICE_COLOURS = {"warning": "bold $warning", "error": "bold $error", "information": "$accent"}


class StatusBar(Horizontal):
    def __init__(self, image_class: type[Widget], note: str = "", **kw):
        super().__init__(**kw)
        self._image_class = image_class
        colours = reduced_colours(os.environ)
        notes = [f"images: {note}" if note else "", f"colours: {colours}" if colours else ""]
        self._note = "\n".join(f"[dim]{_escape(line)}[/dim]" for line in notes if line)
        self._best_path: Path | None = None
        self._lines = "starting the engine…"
        self._notice = ""  # a notice in place of the notes, for a few seconds
        self._notice_timer: Timer | None = None
        self._shown_below = self._note  # what the notes' rows show

    def compose(self) -> ComposeResult:
        # The status's two lines, then the notes or a notice: the lines and notes are cut at the width (a wrapped
        # one would push the next out of the rows), a notice wraps onto the notes' two rows.
        with Vertical(id="status-lines"):
            yield Static(self._lines, id="status-text")
            yield Static(self._note, id="status-notes")

    def show(self, *, round_: int | None, prompt: str, labeled: int, batch_size: int, labels_total: int | None,
             good: int, best: str, phase: str, page: str = "") -> None:
        """``labeled``: images of this round with a label in hero.db, good or not good (after a submit, every one)."""
        parts = [f"round {round_}" if round_ is not None else "round –"]
        if page:
            parts.append(page)
        parts.append(f"labeled {labeled}/{batch_size}")
        parts.append(f"good {good}")
        parts.append(f"best {best}")
        parts.append(f"total {labels_total if labels_total is not None else '–'}")  # last: the line is cut at the width
        text = " │ ".join(parts)
        self._lines = f"{_escape(text)}\n[b]{_escape(phase)}[/b]  [dim]{_escape(prompt)}[/dim]"
        self._draw()

    def show_notice(self, message: str, title: str, severity: str, seconds: float) -> None:
        """A notice under the status, in place of the notes, for ``seconds``: the status line carries what a
        notification would show over the images."""
        colour = NOTICE_COLOURS.get(severity, "")
        text = f"{title}: {message}" if title else message
        self._notice = f"[{colour}]{_escape(text)}[/]" if colour else _escape(text)
        if self._notice_timer is not None:
            self._notice_timer.stop()
        self._notice_timer = self.set_timer(seconds, self._clear_notice)
        self._draw()

    def _clear_notice(self) -> None:
        self._notice, self._notice_timer = "", None
        self._draw()

    def _draw(self) -> None:
        # Its size is fixed in CSS, so no layout pass: one per key press would re-flow every thumbnail.
        self.query_one("#status-text", Static).update(self._lines, layout=False)
        below = self._notice or self._note
        if below != self._shown_below:  # unchanged at most key presses: not repainted
            self._shown_below = below
            notes = self.query_one("#status-notes", Static)
            notes.set_class(bool(self._notice), "-notice")
            notes.update(below, layout=False)

    def show_best_image(self, path: Path | None) -> None:
        """A new widget for a new best, laid out off screen first (show_once_laid_out): changing the image of a
        shown one would make a Sixel terminal get it twice."""
        if path == self._best_path:
            return
        self._best_path = path
        self.query(".best-image").remove()
        if path is None:
            return
        image = self._image_class(path, classes="best-image")
        image.styles.offset = (0, OFF_SCREEN)
        self.mount(image, before=0)
        show_once_laid_out(image, repaint=True)


def reduced_colours(environ: Mapping[str, str]) -> str:
    """One line when the app draws fewer than 24-bit colours (decided as Textual decides: COLORTERM, then TERM),
    saying how to get them; '' otherwise."""
    if environ.get("COLORTERM", "").strip().lower() in ("truecolor", "24bit"):
        return ""
    depth = "256" if environ.get("TERM", "").endswith("256color") else "16"
    tmux = "; in tmux also set -as terminal-features ',*:RGB'" if environ.get("TMUX") else ""
    return (f"{depth} only (COLORTERM is not truecolor), so images and colours are approximated; for 24-bit: "
            f"COLORTERM=truecolor, or truecolor = true under [graphics] in the config file{tmux}")


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
