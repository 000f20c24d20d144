"""Research probes of HERO on the demo model, one subcommand each: what bounds a task, and which settings help.

    python tests/benchmarks/research.py --help
    python tests/benchmarks/research.py reward-bound --tasks counting --seeds 0,1,2 --out bound.json
    python tests/benchmarks/research.py supervised-bound --task hand --train all
    python tests/benchmarks/research.py noise-influence --tasks counting --noises 48 --draws 6
    python tests/benchmarks/research.py step-gradients --schedule sd15 --steps 50
    python tests/benchmarks/research.py representation --task counting
    python tests/benchmarks/research.py sweep-demo-settings --tasks hand,counting --out /tmp/sweep.json

``research.py COMMAND --help`` says what a subcommand asks and how. Where the scripts
beside this one measure what a person waits for (their figures are in docs/performance.md),
these ask questions of the method; docs/experiments.md has what they found. Each
subcommand is a module of research_commands/.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType

import harness  # noqa: F401  (before hero_engine: sets the environment it loads in)
import research_commands
from research_commands import UsageError


def commands() -> dict[str, ModuleType]:
    """Every module of research_commands/ by its subcommand name (the module's name with hyphens)."""
    return {info.name.replace("_", "-"): importlib.import_module(f"research_commands.{info.name}")
            for info in pkgutil.iter_modules(research_commands.__path__)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for name, module in commands().items():
        summary = module.__doc__.splitlines()[0]
        parsers[name] = subparsers.add_parser(name, help=summary, description=summary)
        module.add_arguments(parsers[name])
        parsers[name].set_defaults(run=module.main)
    args = parser.parse_args()
    try:
        args.run(args)
    except UsageError as exc:
        parsers[args.command].error(str(exc))


if __name__ == "__main__":
    main()
