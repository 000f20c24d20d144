"""How many CPU threads torch computes with: the cores this process may use, less those other programs keep busy.

torch starts one thread per core and its threads wait on each other at every operation,
so when another program holds a core, each operation waits for the thread that core
runs last: on 2 cores beside two busy jobs the demo drew 3-4x slower with 2 threads
than with 1 (docs/performance.md, "CPU threads"). The engine therefore counts the
processes running beside it and leaves their cores to them.

The person decides instead with ``HERO_THREADS=N``; ``OMP_NUM_THREADS`` (torch's own
setting) is respected as well.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

THREADS_VARIABLE = "HERO_THREADS"
PROC_STAT = Path("/proc/stat")
SAMPLES = 8  # looks at the run queue 8 times ...
SAMPLE_INTERVAL = 0.02  # ... over about 0.15 s: a program that keeps a core busy is running in most of them


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # what decided it, in words for the log and `doctor`


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), not all the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def running_threads(pid: int | str) -> int:
    """Threads of process ``pid`` ("self": this one) that are running or ready to run; 0 once it has ended."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    running = 0
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # the thread ended as it was read
            continue
        running += state == "R"
    return running


def running_elsewhere(samples: int = SAMPLES, interval: float = SAMPLE_INTERVAL) -> int | None:
    """Threads of other programs that keep a CPU busy now: the kernel's count of running threads, less hero's own.

    Hero's own are this process's (torch's pool may still be spinning) and its parent's:
    the front end that started the engine redraws its screen in a burst of half a second
    or more when the person submits, just as the learning starts, and counting it would
    halve the engine's threads for the whole round. Taken as the lower quartile of a few
    looks, so a program that runs in bursts (a terminal redrawing) is not counted while
    one that computes all along is. None where the count cannot be read (not Linux).
    """
    parent = os.getppid()
    counts = []
    for look in range(samples):
        try:
            text = PROC_STAT.read_text()
        except OSError:
            return None
        line = next((line for line in text.splitlines() if line.startswith("procs_running ")), None)
        if line is None:
            return None
        counts.append(int(line.split()[1]) - running_threads("self") - running_threads(parent))
        if look + 1 < samples:
            time.sleep(interval)
    counts.sort()
    return max(0, counts[len(counts) // 4])


def choose_threads(cores: int, busy_elsewhere: int | None, asked: str | None, omp: str | None) -> ThreadChoice:
    """The thread count from the usable ``cores``, the threads ``busy_elsewhere``, and the person's settings.

    ``asked`` is HERO_THREADS and wins; a set ``OMP_NUM_THREADS`` is kept as torch read it.
    Raises ValueError for a HERO_THREADS that is not a positive whole number.
    """
    if asked:
        try:
            threads = int(asked)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"{THREADS_VARIABLE}={asked!r} is not a number of threads: set a whole number from 1, or unset it")
        return ThreadChoice(threads, f"{THREADS_VARIABLE}={threads}")
    if omp:
        return ThreadChoice(max(1, int(omp)) if omp.isdigit() else cores, f"OMP_NUM_THREADS={omp}")
    if busy_elsewhere is None:
        return ThreadChoice(cores, f"{cores} usable cores")
    threads = max(1, cores - busy_elsewhere)
    if threads == cores:
        return ThreadChoice(threads, f"{cores} usable cores, none busy elsewhere")
    return ThreadChoice(threads, f"{cores} usable cores, {busy_elsewhere} busy with other programs")


def use_cpu_threads() -> ThreadChoice:
    """Choose the thread count for what runs now and give it to torch; logged, and returned for the caller to show."""
    import torch

    from hero_engine.errors import HeroError

    try:
        choice = choose_threads(usable_cores(), running_elsewhere(), os.environ.get(THREADS_VARIABLE),
                                os.environ.get("OMP_NUM_THREADS"))
    except ValueError as exc:
        raise HeroError(str(exc)) from None
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    log.info("CPU threads: %d (%s)", choice.threads, choice.reason)
    return choice
