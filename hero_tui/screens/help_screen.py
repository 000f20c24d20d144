"""hero's key bindings on the screen underneath, with the keys they have now (after remapping)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hero_tui.keys import QUIT_BINDING, config_path


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "dismiss", "Close", id="help_close"), QUIT_BINDING]

    def __init__(self, bindings: dict[str, ActiveBinding]):
        super().__init__()
        self._shown_bindings = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-frame") as frame:
            frame.border_title = " keys "
            yield Static(self._table())
            yield Static(f"Remap keys in {config_path()} under [keys], e.g. good = \"g\". Escape closes.",
                         id="help-hint", markup=False)

    def _table(self) -> Table:
        rows: dict[tuple[str, str], list[str]] = {}
        for key, active in self._shown_bindings.items():
            binding = active.binding
            if binding.id is None:  # Textual's own (tab, the clipboard's super+c, the command palette's): not hero's keys
                continue
            name = binding.description or binding.action
            rows.setdefault((name, binding.id or ""), []).append(self.app.get_key_display(binding.with_key(key)))
        table = Table(box=None, padding=(0, 2))
        table.add_column("key", style="bold")
        table.add_column("does")
        table.add_column("id (for remapping)", style="dim")
        for (name, binding_id), keys in rows.items():
            table.add_row(", ".join(keys), name, binding_id)
        return table
