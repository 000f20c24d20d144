"""What a person waits for after pressing submit: the learning, then the first new images, then the whole round.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_round_latency.py                # built-in demo model, its defaults
    OMP_NUM_THREADS=1 python tests/benchmarks/bench_round_latency.py --resumed while-labeling   # each round resumed
    python tests/benchmarks/bench_round_latency.py --model tiny --rounds 2         # seconds, for a quick look

Runs the loop `hero-tui run` drives (HeroSession, labels from the `redness`
simulated evaluator) and times each round from its submit: when the learning
ends (the next round's sampling starts), when the first chunk of the next round
is stored (what the app shows first), and when the whole next round is stored.

``--resumed`` closes and reopens the session before each round, as a person
who quit and ran `hero-tui resume` would: the model is loaded and the round
replayed from its stored noise either while it is labeled (``while-labeling``,
what the app's engine does, timed apart) or in the update (``in-update``).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness  # before hero_engine: sets the environment it loads in
import torch

from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.session.hero_session import HeroSession


def time_round(session: HeroSession) -> tuple[float, float, float, int]:
    """Submit the labeled round and learn: (learning ends, first images stored, whole round stored) in seconds from
    the submit, and how many images the first chunk held."""
    marks: dict[str, float] = {}
    first_chunk: list[int] = []

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "sampling":
            marks.setdefault("learned", time.perf_counter())

    def on_images(round_: int, images: list, size: int) -> None:
        marks.setdefault("first", time.perf_counter())
        first_chunk.append(len(images))

    started = time.perf_counter()
    session.submit()
    session.update(on_progress, on_images=on_images)
    ended = time.perf_counter()
    return marks["learned"] - started, marks["first"] - started, ended - started, first_chunk[0]


def add_options(parser) -> None:
    parser.add_argument("--resumed", choices=("while-labeling", "in-update"),
                        help="reopen the session before each round; replay its round while it is labeled or in the update")


def main() -> None:
    args, config = harness.parse_loop_options(__doc__, rounds=4, add_options=add_options)
    evaluator = get_evaluator("redness")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hero-latency-") as tmp:
        folder = Path(tmp) / "session"
        session = HeroSession.create(folder, config, device=args.device)
        try:
            started = time.perf_counter()
            session.propose()
            print(f"model {args.model} on {session.runtime.device} ({session.runtime.dtype}), {config.batch_size} images, "
                  f"{config.steps} steps, sample_batch {config.sample_batch}; model load + round 0 {time.perf_counter() - started:.1f} s"
                  + (f"; each round resumed, replayed {args.resumed}" if args.resumed else ""))
            print(f"{'round':>5} {'learning':>9} {'first images':>12} {'after learning':>14} {'whole round':>11} {'first chunk':>11}"
                  + (f" {'while labeled':>13}" if args.resumed == "while-labeling" else ""))
            for round_ in range(args.rounds):
                idle = ""
                if args.resumed:
                    session.close()
                    session = HeroSession.open(folder, device=args.device)
                    session.propose()
                    if args.resumed == "while-labeling":
                        started = time.perf_counter()
                        session.replay_open_round()  # the model loaded, the round replayed
                        idle = f" {time.perf_counter() - started:>13.2f}"
                label_batch(session, evaluator)
                learned, first, whole, chunk = time_round(session)
                rows.append((learned, first, first - learned, whole))
                print(f"{round_:>5} {learned:>9.2f} {first:>12.2f} {first - learned:>14.2f} {whole:>11.2f} {chunk:>11}{idle}")
        finally:
            session.close()
    means = [statistics.mean(column) for column in zip(*rows)]
    print(f"{'mean':>5} {means[0]:>9.2f} {means[1]:>12.2f} {means[2]:>14.2f} {means[3]:>11.2f}")
    print("(seconds from submit; after learning: the first images' wait once the learning is done"
          + ("; while labeled: the model's loading and the replay, done before the submit" if args.resumed == "while-labeling" else "")
          + ")")
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"python {sys.version.split()[0]}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))


if __name__ == "__main__":
    main()
