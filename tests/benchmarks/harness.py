"""What the scripts under tests/benchmarks/ share: their environment, the options of a run over tasks and seeds, results files, and mean ± spread.

Importing this module, before hero_engine (where isort puts it: among the third-party
imports), sets the environment every script runs in: transformers' and diffusers'
logging at errors only, and the checkout (and tests/, for the app's test support) first
on sys.path, so hero_engine is this checkout's whether or not hero is installed. Torch's
threads are left to the caller (``OMP_NUM_THREADS=1 python ...``): the figures in docs/
say which setting they ran with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
TESTS = BENCHMARKS.parent
REPO = TESTS.parent

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
for _folder in (TESTS, REPO):  # the checkout ends up first
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


def add_task_options(parser: argparse.ArgumentParser, tasks: str, seeds: str) -> None:
    """``--tasks`` and ``--seeds``, comma-separated, with these defaults."""
    parser.add_argument("--tasks", default=tasks)
    parser.add_argument("--seeds", default=seeds, help="comma-separated seeds")


def add_session_options(parser: argparse.ArgumentParser, eval_images: int) -> None:
    """The size of one benchmark session: ``--budget`` labels in rounds of ``--batch``, ``--eval-images`` held out."""
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16, help="images per round")
    parser.add_argument("--eval-images", type=int, default=eval_images)


def add_variant_options(parser: argparse.ArgumentParser) -> None:
    """``--variant NAME=JSON`` (repeatable) and ``--no-defaults``; ``variants`` reads them."""
    parser.add_argument("--variant", action="append", default=[], help="NAME=JSON HeroConfig overrides; repeatable")
    parser.add_argument("--no-defaults", action="store_true", help="skip the defaults variant (the demo model's defaults)")


def parse_loop_options(description: str, rounds: int, add_options: Callable[[argparse.ArgumentParser], None] | None = None):
    """The options of a timed run of the loop `hero-tui run` drives (``--model``, ``--rounds``, ``--device``,
    ``--seed``, and a script's own from ``add_options``), and its HeroConfig: (args, config)."""
    from hero_engine.config import HeroConfig

    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo (default), tiny, or any model hero loads")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    if add_options:
        add_options(parser)
    args = parser.parse_args()
    return args, HeroConfig(prompt="a red hand", model=args.model, seed=args.seed).for_model(args.model)


def add_out_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--out", type=Path, required=required, help="JSON file the results are added to as each run ends")


def tasks(args: argparse.Namespace) -> list[str]:
    return args.tasks.split(",")


def seeds(args: argparse.Namespace) -> list[int]:
    return [int(seed) for seed in args.seeds.split(",")]


def variants(args: argparse.Namespace) -> dict[str, dict]:
    """Each variant's HeroConfig overrides by name, ``defaults`` (none) first unless ``--no-defaults``."""
    named = {} if args.no_defaults else {"defaults": {}}
    for item in args.variant:
        name, _, overrides = item.partition("=")
        named[name] = json.loads(overrides)
    return named


def read_results(path: Path | None) -> list[dict]:
    """The results an earlier run left in ``path`` (none without a file), so that a run adds to them."""
    return json.loads(path.read_text()) if path and path.exists() else []


def write_results(path: Path | None, results: list[dict]) -> None:
    """All results so far, written after each run so that a long one can be read while it goes on (nothing without a path)."""
    if path:
        path.write_text(json.dumps(results, indent=1))


def mean(values: Iterable[float | None]) -> float:
    """Mean of ``values``, missing ones (None or NaN, e.g. a round without a figure) left out; NaN when none is left."""
    present = _present(values)
    return statistics.mean(present) if present else float("nan")


def mean_and_spread(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and standard error of ``values``, missing ones left out as in ``mean``; the spread is NaN below two values."""
    present = _present(values)
    spread = statistics.stdev(present) / len(present) ** 0.5 if len(present) > 1 else float("nan")
    return mean(present), spread


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def summary(values: Iterable[float | None]) -> str:
    """``mean ± spread`` to two decimals (as ``mean_and_spread``), or ``-`` when no value is present."""
    average, spread = mean_and_spread(values)
    return "-" if math.isnan(average) else f"{average:.2f} ± {spread:.2f}"
