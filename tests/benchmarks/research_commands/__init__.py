"""The subcommands of tests/benchmarks/research.py, a module each (the subcommand is its name with hyphens).

Each module's docstring is the subcommand's help (its first line the summary),
``add_arguments(parser)`` declares its options and ``main(args)`` runs it.
"""

from __future__ import annotations

from hero_engine.drivers.bench import BENCH_ENGINE, BenchSettings


def hero_settings(task: str, overrides: dict, budget: int, batch: int, eval_images: int) -> BenchSettings:
    """One HERO session on ``task`` as the benchmark runs it (the demo model's defaults and the benchmark's engine
    settings, ``overrides`` on top), its held-out success measured once, after the last round."""
    return BenchSettings(tasks=[task], methods=["hero"], seeds=1, budget=budget, batch=batch, eval_images=eval_images,
                         eval_every=10**6, engine={**BENCH_ENGINE, **overrides})


class UsageError(Exception):
    """Options that do not go together: research.py reports it as argparse reports a bad option, usage first."""
