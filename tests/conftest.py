import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# A home of the tests' own, for them and every process they start: nothing a test writes (the recent
# sessions, a config file, logs) reaches the user's, and nothing of the user's (a [keys] table, a Hugging
# Face cache, HERO_THREADS) changes a test.
_HOME = tempfile.mkdtemp(prefix="hero-tests-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["HOME"] = _HOME
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE",
              "HERO_THREADS", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
    os.environ.pop(_name, None)
# One thread per process: tests start engine child processes beside the test process, and on a
# 2-core machine oversubscribed torch threads slow everything down many times over.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["DIFFUSERS_VERBOSITY"] = "error"

from hero_engine.config import HeroConfig  # noqa: E402

# The app's tests that need no torch: .ci/run runs them again under Python 3.12 with the newest textual-image,
# in an environment with the app's dependencies only (where torch cannot be imported, only these are collected).
TUI_ONLY = ("test_tui_app.py", "test_tui_labels.py", "test_tui_xterm.py", "test_tui_kitty.py", "test_terminal_probe.py",
            "test_kitty_output.py", "test_terminal_input.py", "test_session_controller.py", "test_feedback_rules.py",
            "test_structure.py", "test_docs_links.py")

try:
    import torch  # noqa: E402
except ImportError:
    torch = None
    collect_ignore = [path.name for path in Path(__file__).parent.glob("test_*.py") if path.name not in TUI_ONLY]
else:
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in TUI_ONLY:
            item.add_marker(pytest.mark.tui_only)


@pytest.fixture
def tiny_config():
    """A HERO config small enough that a round takes about a second on a CPU core."""
    return HeroConfig(
        prompt="a red hand",
        model="tiny",
        batch_size=6,
        steps=6,
        train_timesteps=3,
        encoder_epochs=8,
        encoder_triplets=8,
        sample_batch=6,
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs where this machine lets the tests mount one (root, and a kernel that allows it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)

