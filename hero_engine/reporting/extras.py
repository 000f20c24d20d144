"""The optional extra the report, the plots and the dataset need, and the one line that says how to get it."""

from __future__ import annotations

import importlib
from types import ModuleType

from hero_engine.errors import HeroError

REPORT_EXTRA_INSTALL = 'pip install "hero[report]"'


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` of the report extra, or raise a HeroError that names the install that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise HeroError(f"{purpose} needs {module.split('.')[0]}, which is not installed: {REPORT_EXTRA_INSTALL}") from None
