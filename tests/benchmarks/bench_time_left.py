"""How close the app's "about N s left" comes to the time that was left, on a real session's progress reports.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_time_left.py                 # built-in demo model, 3 rounds
    OMP_NUM_THREADS=1 python tests/benchmarks/bench_time_left.py --rounds 1      # one round: about half a minute

Runs the loop `hero-tui run` drives (HeroSession, labels from the `redness`
simulated evaluator) and keeps the progress reports the app would receive (the
worker's Throttle, with their arrival times). Then each learning stage's reports
go through hero_tui.stages.StageEstimate as the app's panel feeds it, with the
stage's time in the round before, and what it says is set against what was left.
Per stage run: its seconds, the mean and worst error, and how long it said under a
second while more than 2 s were left.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import harness  # before hero_engine: sets the environment it loads in
import torch

from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.session.hero_session import HeroSession
from hero_engine.worker import Throttle
from hero_tui.stages import STAGES, StageEstimate

Report = tuple[float, int, int]  # (arrival time, done, total)


class ReportRecorder:
    """Stands for the worker's channel: keeps each progress event Throttle lets through, with its time."""

    def __init__(self):
        self.runs: list[tuple[str, list[Report]]] = []  # each stage run of the round, in order

    def emit(self, event: str, stage: str, done: int, total: int, **_) -> None:
        if stage not in STAGES:
            return
        if not self.runs or self.runs[-1][0] != stage:
            self.runs.append((stage, []))
        self.runs[-1][1].append((time.monotonic(), done, total))


def replay(reports: list[Report], last_seconds: float | None) -> tuple[float, float, float, float]:
    """(stage seconds from its first report, mean and worst |said - left|, seconds said "under a second" with over
    2 s left) for one stage run fed to the estimate as the panel feeds it."""
    first, end = reports[0][0], reports[-1][0]
    estimate = StageEstimate(first, last_seconds)
    errors, wrongly_done = [], 0.0
    for (when, done, total), (after, _, _) in zip(reports, reports[1:]):
        said = estimate.update(done, total, when)
        if said is None:
            continue
        errors.append(abs(said - (end - when)))
        if said < 1.0 and end - when > 2.0:  # shown until the next report
            wrongly_done += after - when
    mean = sum(errors) / len(errors) if errors else float("nan")
    return end - first, mean, max(errors, default=float("nan")), wrongly_done


def main() -> None:
    args, config = harness.parse_loop_options(__doc__, rounds=3)
    evaluator = get_evaluator("redness")
    print(f"{'round':>5} {'stage':>15} {'seconds':>8} {'mean error':>10} {'worst':>6} {'said <1 s, >2 s left':>20}")
    with tempfile.TemporaryDirectory(prefix="hero-time-left-") as tmp:
        with HeroSession.create(Path(tmp) / "session", config, device=args.device) as session:
            session.propose()
            last_seconds: dict[str, float] = {}
            for round_ in range(args.rounds):
                label_batch(session, evaluator)
                session.submit()
                recorder = ReportRecorder()
                report = session.update(Throttle(recorder, session))
                for stage, reports in recorder.runs:
                    seconds, mean, worst, wrongly_done = replay(reports, last_seconds.get(stage))
                    print(f"{round_:>5} {STAGES[stage]:>15} {seconds:>8.2f} {mean:>10.2f} {worst:>6.2f} {wrongly_done:>18.2f} s")
                last_seconds = dict(report.seconds)  # what the panel goes by in the next round
    print("(seconds from each stage's first report; errors in seconds, over the reports where a time left was said)")
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"python {sys.version.split()[0]}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))


if __name__ == "__main__":
    main()
