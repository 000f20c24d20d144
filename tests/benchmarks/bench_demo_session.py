"""How long a person waits on the demo model at its own defaults: the first images, then each round.

    python tests/benchmarks/bench_demo_session.py                  # prompt "hand", 3 rounds
    python tests/benchmarks/bench_demo_session.py --task attribute --rounds 5

In one fresh process it does what the engine behind `hero-tui start --prompt hand`
does before the first images show (import the engine, load the demo model, sample
round 0), then rounds labeled by the task's simulated evaluator: each round is
learning (representation, policy, checkpoint) plus sampling the next batch, what a
person waits for between pressing submit and labeling again. The settings are the
session's defaults on the demo model (config.DEMO_SCALE); torch uses its default threads.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import harness  # noqa: E402, F401  (before hero_engine: sets the environment it loads in)

from hero_engine.config import HeroConfig  # noqa: E402
from hero_engine.evaluation.evaluators import get_evaluator, label_batch  # noqa: E402
from hero_engine.session.hero_session import HeroSession  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hand", help="simulated evaluator; its prompt is the session's")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    evaluator = get_evaluator(args.task)
    with tempfile.TemporaryDirectory(prefix="hero-bench-demo-") as tmp:
        session = HeroSession.create(Path(tmp) / "s", HeroConfig(prompt=evaluator.prompt or "a flower", model="demo"))
        with session:
            batch = session.propose()
            first = time.perf_counter() - STARTED
            cfg = session.config
            print(f"demo model, {cfg.batch_size} images of {cfg.steps} steps, {cfg.encoder_epochs} encoder steps, "
                  f"{cfg.train_timesteps} trained timesteps; torch threads: {__import__('torch').get_num_threads()}")
            print(f"first images ({len(batch.images)}) after {first:.1f} s (imports, model load, round 0 sampling)")
            for _ in range(args.rounds):
                label_batch(session, evaluator)
                session.submit()
                started = time.perf_counter()
                report = session.update()
                stages = "  ".join(f"{k} {v:.1f}" for k, v in report.seconds.items())
                print(f"round {report.round}: submit to next images {time.perf_counter() - started:.1f} s  ({stages})")


if __name__ == "__main__":
    main()
