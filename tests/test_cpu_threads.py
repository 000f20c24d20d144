"""The engine's CPU thread count: the usable cores less those other programs keep busy, unless the person sets it."""

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_support import run_rounds

from hero_engine import cpu_threads
from hero_engine.cpu_threads import choose_threads
from hero_engine.errors import HeroError
from hero_engine.session.hero_session import HeroSession

ROOT = Path(__file__).resolve().parents[1]


def test_busy_cores_are_left_to_the_programs_that_keep_them_busy():
    """Guards the rule: one thread per usable core that no other program keeps busy, and always at least one."""
    assert choose_threads(2, 0, None, None).threads == 2  # a quiet machine: torch's own default
    assert choose_threads(2, 1, None, None).threads == 1  # one busy program beside it on 2 cores
    assert choose_threads(2, 5, None, None).threads == 1
    assert choose_threads(16, 3, None, None).threads == 13
    assert choose_threads(4, None, None, None).threads == 4  # the run queue cannot be read: all usable cores
    assert "1 busy" in choose_threads(2, 1, None, None).reason


def test_the_person_decides_over_the_engine():
    """Guards the overrides: HERO_THREADS wins over everything, a set OMP_NUM_THREADS is kept; a bad value is refused."""
    assert choose_threads(2, 1, "2", "1") == cpu_threads.ThreadChoice(2, "HERO_THREADS=2")
    assert choose_threads(2, 0, None, "1").threads == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="HERO_THREADS"):
            choose_threads(2, 0, bad, None)


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_busy_program_is_seen_and_this_process_is_not():
    """Guards the count: a CPU-bound process beside the engine is counted, the engine's own spinning threads are not."""
    burner = multiprocessing.get_context("spawn").Process(target=_spin, args=(60.0,), daemon=True)
    burner.start()
    try:
        time.sleep(0.5)
        assert cpu_threads.running_elsewhere() >= 1
        assert cpu_threads.running_threads(burner.pid) == 1
    finally:
        burner.terminate()
        burner.join()
    assert cpu_threads.running_threads(burner.pid) == 0  # it has ended
    torch.set_num_threads(1)
    assert cpu_threads.running_threads("self") >= 1  # this thread, reading


# A front end that keeps one thread busy (as the app does for half a second after a submit) while the engine it
# started counts the busy threads, then prints the engine's count.
BUSY_FRONT_END = """
import subprocess, sys, threading, time
spinning = True
def spin():
    while spinning:
        pass
threading.Thread(target=spin, daemon=True).start()
time.sleep(0.3)
engine = subprocess.run([sys.executable, "-c", "from hero_engine import cpu_threads; print(cpu_threads.running_elsewhere())"],
                        capture_output=True, text=True, check=True)
spinning = False
print(engine.stdout.strip())
"""


def test_the_front_end_that_started_the_engine_is_not_counted(tmp_path):
    """Guards that the app's redraw at a submit does not halve the engine's threads for the round: the engine's parent
    process is hero's own, so its running threads are left out of the count, as the engine's own are."""
    quiet = cpu_threads.running_elsewhere()  # what else runs on the machine now, for a busy CI machine
    front_end = subprocess.run([sys.executable, "-c", BUSY_FRONT_END], capture_output=True, text=True, timeout=60,
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert front_end.returncode == 0, front_end.stderr
    assert int(front_end.stdout) <= quiet


def test_a_session_gives_torch_the_count_and_counts_again_at_each_round(tmp_path, tiny_config, monkeypatch):
    """Guards that the engine applies its choice: when a session opens, and again when a round's learning starts."""
    monkeypatch.setenv("HERO_THREADS", "2")
    try:
        with HeroSession.create(tmp_path / "s", tiny_config) as session:
            assert torch.get_num_threads() == 2
            monkeypatch.setenv("HERO_THREADS", "1")
            run_rounds(session, 1)
            assert torch.get_num_threads() == 1
        monkeypatch.setenv("HERO_THREADS", "nine")
        with pytest.raises(HeroError, match="HERO_THREADS='nine' is not a number of threads"):
            HeroSession.open(tmp_path / "s")
    finally:
        torch.set_num_threads(1)
