"""Export the tuned LoRA (as `hero-tui export` does): ask where to write it."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from hero_tui.keys import key_names


class ExportScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="export_cancel")]

    def __init__(self, default_path: str, keys: Mapping[str, str] | None = None):
        """``keys``: each binding id's key as the hint names it (keys.key_names; default: this screen's own keys)."""
        super().__init__()
        self._keys = keys or key_names({"": self.BINDINGS}, {})
        self._default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical(id="export-frame") as frame:
            frame.border_title = " export the LoRA "
            yield Static("A .safetensors file, or a folder to hold one: diffusers' format, and kohya's beside it "
                         "(*.kohya.safetensors, for ComfyUI and AUTOMATIC1111). Enter writes, "
                         f"{self._keys['export_cancel']} cancels.", markup=False)
            yield Input(self._default_path, id="export-path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        self.dismiss(path or None)
