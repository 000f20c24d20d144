"""Engine options: every HeroConfig field as a command-line option, collected into one EngineOptions.

Decorate a typer command with ``@engine_options`` (below ``@app.command()``) and
give it a parameter ``engine: EngineOptions``. The decorator adds ``--<field>``
for every HeroConfig field (its help text from the field, ``None`` meaning "not
given"), ``--config FILE``, ``--device`` and ``--dtype``, and hands the command
what was given::

    @app.command()
    @engine_options
    def start(engine: EngineOptions, session: Path | None = None) -> None:
        config = engine.config()

Values given on the command line override those of the --config file.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from hero_engine.config import DEMO_SCALE, MEMORY_FIELDS, HeroConfig, config_fields
from hero_engine.errors import HeroError
from hero_engine.models.model_configs import known_family

PANEL = "Engine options"

# Switches whose "off" side reads better than --no-<field> (the ablations of the paper).
_OFF_SWITCHES = {"guided_noise": "plain-noise"}

DeviceOption = Annotated[
    Optional[str], typer.Option("--device", help="Where the model runs: cpu, cuda, cuda:1 (default: cuda if visible).", rich_help_panel=PANEL)
]
DtypeOption = Annotated[
    Optional[str], typer.Option("--dtype", help="Precision of the frozen model: float32, float16, bfloat16 (default: bfloat16 on CUDA GPUs of compute capability 8 and up, else float16 with loss scaling; float32 on the CPU). The LoRA is float32 always.", rich_help_panel=PANEL)
]
ConfigFileOption = Annotated[
    Optional[Path], typer.Option("--config", help="TOML file of engine options (a config table, or keys at the top level); options given on the command line win.", rich_help_panel=PANEL)
]

Command = TypeVar("Command", bound=Callable[..., Any])

_FIELDS = {f.name: f for f in config_fields()}


@dataclass(frozen=True)
class EngineOptions:
    """The engine settings a command was given: config fields (file and command line) and the runtime."""

    given: dict[str, Any]  # HeroConfig field -> value, only for fields that were set
    device: str | None = None
    dtype: str | None = None

    def config(self) -> HeroConfig:
        """A new session's config: the model's defaults (the paper's, the demo model's, or SDXL's memory settings), overridden by what was given."""
        config = HeroConfig.from_dict(self.given)
        return config.for_model(config.model, self.given, known_family(config.model))

    def memory(self) -> dict[str, Any]:
        """The memory-only settings given, which a continued session may take."""
        return {name: value for name, value in self.given.items() if name in MEMORY_FIELDS}

    def check_matches(self, stored: HeroConfig, folder: Path) -> None:
        """Refuse settings that differ from a session's own: a session keeps the settings it was started with."""
        conflicts = [
            f"{option_text(name, value)} (the session has {value_text(name, getattr(stored, name))})"
            for name, value in self.given.items()
            if getattr(stored, name) != value and name not in MEMORY_FIELDS
        ]
        if conflicts:
            raise HeroError(f"session {folder} was started with other settings: {'; '.join(conflicts)}; drop these options to continue it")


def option_name(f: dataclasses.Field) -> str:
    return "--" + f.metadata.get("cli", f.name.replace("_", "-"))


def value_text(name: str, value: Any) -> str:
    """A field's value as written on the command line: 8, 'a hand', or a switch such as --plain-noise."""
    if isinstance(value, bool):
        on, off = _bool_flags(_FIELDS[name])
        return on if value else off
    return repr(value) if isinstance(value, str) else str(value)


def option_text(name: str, value: Any) -> str:
    """A field's option with its value, e.g. '--batch 8' or '--plain-noise'."""
    text = value_text(name, value)
    return text if isinstance(value, bool) else f"{option_name(_FIELDS[name])} {text}"


def _bool_flags(f: dataclasses.Field) -> tuple[str, str]:
    off = _OFF_SWITCHES.get(f.name, "no-" + f.name.replace("_", "-"))
    return option_name(f), f"--{off}"


def _demo_default(name: str) -> str:
    """"; the demo model: 16" where the built-in demo model starts with another value than the paper's."""
    if name not in DEMO_SCALE:
        return ""
    return f"; the demo model: {value_text(name, DEMO_SCALE[name][0])}"


def _field_parameter(f: dataclasses.Field) -> inspect.Parameter:
    kind = type(f.default)
    declaration = "/".join(_bool_flags(f)) if kind is bool else option_name(f)
    help_text = f.metadata["help"] + (f" (default: {value_text(f.name, f.default)}{_demo_default(f.name)})" if f.default != "" else "")
    option = typer.Option(declaration, help=help_text, show_default=False, rich_help_panel=PANEL)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[kind], option])


_RUNTIME_PARAMETERS = [
    inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigFileOption),
    inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DeviceOption),
    inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DtypeOption),
]
_ENGINE_PARAMETERS = [_field_parameter(f) for f in _FIELDS.values()] + _RUNTIME_PARAMETERS


def engine_options(command: Command) -> Command:
    """Give ``command`` every engine option; it receives them as its ``engine: EngineOptions`` argument."""
    signature = inspect.signature(command, eval_str=True)
    if "engine" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a parameter 'engine: EngineOptions'")
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "engine"]
    clashes = {p.name for p in own} & {p.name for p in _ENGINE_PARAMETERS}
    if clashes:
        raise TypeError(f"{command.__name__} has parameters that are engine options: {', '.join(sorted(clashes))}")

    @functools.wraps(command)
    def with_engine_options(**kwargs: Any) -> Any:
        engine_values = {p.name: kwargs.pop(p.name) for p in _ENGINE_PARAMETERS}
        return command(**kwargs, engine=_collect(engine_values))

    parameters = own + _ENGINE_PARAMETERS
    # typer reads both the signature and the annotations; keep them in step.
    with_engine_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_engine_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_engine_options  # type: ignore[return-value]


def _collect(values: dict[str, Any]) -> EngineOptions:
    config_file = values.pop("config_file")
    device = values.pop("device")
    dtype = values.pop("dtype")
    given = config_file_values(config_file) if config_file else {}
    given.update({name: value for name, value in values.items() if value is not None})
    return EngineOptions(given=given, device=device, dtype=dtype)


def config_file_values(path: Path) -> dict[str, Any]:
    """The fields a config file sets, typed; fields it leaves out stay "not given"."""
    config = HeroConfig.from_toml(path)  # one-line errors for a missing or invalid file
    table = tomllib.loads(Path(path).read_text())
    return {name: getattr(config, name) for name in table.get("config", table)}
