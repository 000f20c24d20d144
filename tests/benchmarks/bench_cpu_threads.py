"""The engine's own CPU thread choice against a thread count set by hand, on a quiet machine and beside busy programs.

    python tests/benchmarks/bench_cpu_threads.py                  # demo model, 1 round, 1 busy program
    python tests/benchmarks/bench_cpu_threads.py --busy 2 --rounds 2

Each setting runs bench_round_latency.py (the demo's first round, then a labeled
round: learning, first new images, whole round) in a fresh process, with
HERO_THREADS and OMP_NUM_THREADS unset (the engine chooses), or OMP_NUM_THREADS set by
hand to 1 or to the core count (torch's own default, what the engine used before it chose).
"busy" runs ``--busy`` CPU-bound processes beside it for the whole run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time

import harness

from hero_engine.cpu_threads import usable_cores

LATENCY = harness.BENCHMARKS / "bench_round_latency.py"
THREAD_SETTINGS = ("HERO_THREADS", "OMP_NUM_THREADS")


def spin() -> None:
    """A CPU-bound program: what a compile, a data job or another model does to a shared machine."""
    while True:
        pass


def run_latency(threads: str | None, model: str, rounds: int) -> tuple[float, float, float, str]:
    """bench_round_latency.py with OMP_NUM_THREADS=``threads`` (None: the engine chooses): seconds of round 0, from
    submit to the first new images and to the whole round, and the thread count the engine used."""
    env = {name: value for name, value in os.environ.items() if name not in THREAD_SETTINGS}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    done = subprocess.run([sys.executable, str(LATENCY), "--model", model, "--rounds", str(rounds)],
                          env=env, capture_output=True, text=True, check=True)
    first = float(re.search(r"model load \+ round 0 ([\d.]+) s", done.stdout).group(1))
    mean = re.search(r"^ *mean +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)", done.stdout, re.M)
    used = re.search(r"with (\d+) threads", done.stdout).group(1)
    return first, float(mean.group(2)), float(mean.group(4)), used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--busy", type=int, default=1, help="CPU-bound programs beside the engine in the busy runs")
    args = parser.parse_args()
    cores = usable_cores()
    settings = [("quiet", None), ("quiet", str(cores)), ("busy", None), ("busy", "1"), ("busy", str(cores))]
    print(f"{'machine':>7} {'threads set':>11} {'used':>4} {'round 0':>8} {'first images':>12} {'whole round':>11}")
    for machine, threads in settings:
        burners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy if machine == "busy" else 0)]
        for burner in burners:
            burner.start()
        time.sleep(1.0 if burners else 0.0)
        try:
            first, learned_to_first, whole, used = run_latency(threads, args.model, args.rounds)
        finally:
            for burner in burners:
                burner.terminate()
                burner.join()
        label = "engine" if threads is None else f"{threads} by hand"
        print(f"{machine:>7} {label:>11} {used:>4} {first:>8.1f} {learned_to_first:>12.1f} {whole:>11.1f}", flush=True)
    print(f"(seconds; round 0: model load and the first round's images; first images and whole round: from submit, mean "
          f"of {args.rounds} round(s)); machine: {cores} usable cores, busy = {args.busy} CPU-bound program(s) beside it; "
          f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
