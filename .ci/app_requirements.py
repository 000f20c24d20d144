"""Print, one a line, the requirements of the app's tests that need no torch, as pyproject.toml declares them."""

import re
import tomllib
from pathlib import Path

APP = {"textual", "textual-image", "pillow", "numpy", "platformdirs", "typer", "click", "rich", "tomli-w"}

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
for requirement in project["dependencies"]:
    if re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower() in APP:
        print(requirement)
for requirement in project["optional-dependencies"]["test"]:
    print(requirement)
