"""Smoke test: the real `hero-tui start` in a real terminal (tmux), on the tiny model, driven by keys."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tui_support import TmuxServer

from hero_tui import launch

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ENGINE = "--model tiny --batch 6 --steps 6 --train-timesteps 3 --encoder-epochs 8 --encoder-triplets 8 --sample-batch 6 --device cpu"


class Tmux(TmuxServer):
    """A pane that runs one command and then shows its exit status."""

    def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # The pane gets its 120x45 just after its first process starts (before, a detached server may hand out
        # 80x24): start the app only once it has it.
        subprocess.run([*self.base, "new-session", "-d", "-s", "hero", "-x", "120", "-y", "45", "cat"], check=True)
        subprocess.run([*self.base, "respawn-pane", "-k", "-t", "hero",
                        f"env -u COLUMNS -u LINES {exports} {command}; echo EXIT=$?; sleep 60"], check=True)


def test_start_under_tmux_labels_submits_and_shows_the_next_round(tmp_path: Path):
    tmux = Tmux(f"hero-test-{os.getpid()}")
    folder = tmp_path / "session"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    command = f"{shlex.quote(sys.executable)} -m hero_tui start --prompt 'a red hand' {ENGINE} --session {folder}"
    try:
        tmux.start(command, env)
        tmux.wait_for("round 0", "labeling", "· unlabeled", timeout=240)  # the first chunk of the round is in
        tmux.wait_until_gone("images still coming", timeout=120)
        # thumbnails carry their numbers, the cursor on the first; half-blocks (the last tiles move in once laid out)
        tmux.wait_for("▶ 1", "  2  ", "  6", "▀▀▀▀", timeout=30)
        tmux.keys("Space", "Right", "b", "Right", "Space")
        tmux.wait_for("best #2", "✓ good", "★ best", timeout=20)
        tmux.keys("s")
        tmux.wait_for("submit round 0?", "unlabeled", timeout=20)
        tmux.keys("Enter")
        tmux.wait_for("learning from round 0", timeout=30)
        tmux.wait_for("round 1", "labeling", timeout=300)
        tmux.wait_until_gone("images still coming", timeout=120)
        tmux.keys("q")
        screen = tmux.wait_for("EXIT=", timeout=60)
        assert "EXIT=0" in screen and f"hero-tui resume {folder}" in screen.replace("\n", "")
        # made with --session outside the sessions folder, yet `hero-tui resume` alone finds it
        data = tmp_path / "data" / "hero"
        assert launch.most_recent_session(data / "sessions", data / "recent_sessions.json") == folder.resolve()
    finally:
        tmux.kill()
