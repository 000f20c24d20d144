"""hero-tui: the command line.

Commands that need the engine import it inside the command, so `hero-tui --help`
(and the TUI) start without loading torch. Errors a user can act on (HeroError),
Ctrl-C, and anything else that goes wrong (an unwritable path, a full disk, a
bug) become one line on stderr and an exit code, for every command, in
HeroGroup.invoke; the traceback of an unexpected error goes to a log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from platformdirs import user_log_dir
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from hero_engine.config import (
    AUTO_MODEL,
    DEFAULT_HUB_MODEL,
    HeroConfig,
    model_problem,
    runtime_problem,
)
from hero_engine.errors import HeroError, SessionLocked
from hero_engine.models import model_configs
from hero_engine.storage.listing import list_sessions, summarize_sessions
from hero_engine.storage.paths import new_session_folder, sessions_root
from hero_engine.storage.store import SessionStore, is_session
from hero_tui import recent_sessions, render
from hero_tui.graphics import GraphicsMethod
from hero_tui.lock_holder import refusal_line
from hero_tui.options import DeviceOption, DtypeOption, EngineOptions, engine_options

# Before the engine is imported (lazily, in the commands): keep library chatter off the terminal.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "critical")  # its errors are raised after they are logged: said in one line
os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # its retries' warnings; the one-line error says what failed

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell tool whose reader left ends


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message that says what was kept and how to go on."""


# typer 0.29 and newer raise their own exit and usage exceptions instead of click's.
try:
    from typer.exceptions import TyperException
except ImportError:  # older typer has no such module and raises click's
    TyperException = click.ClickException
_TYPER_EXITS = (
    typer.Exit, typer.Abort, TyperException,
    click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
)


# --help lists the commands in the order a person meets them, the labeling app first.
COMMAND_ORDER = ("start", "resume", "doctor", "sessions", "export", "report", "sample", "run", "bench")


def _without_flag_types(params: list) -> list:
    """A flag takes no value, so --help shows no type beside it (typer shows <bool>)."""
    for param in params:
        if getattr(param, "is_flag", False):  # typer 0.29 has its own option class, not click's
            param.metavar = ""
    return params


class HeroCommand(TyperCommand):
    def get_params(self, ctx) -> list:
        return _without_flag_types(super().get_params(ctx))


class HeroGroup(TyperGroup):
    """Shows HeroError and Ctrl-C as one line on stderr with an exit code, never a traceback."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER))

    def get_params(self, ctx) -> list:
        return _without_flag_types(super().get_params(ctx))

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except SessionLocked as exc:
            render.print_error(refusal_line(exc))
            raise typer.Exit(EXIT_ERROR) from None
        except HeroError as exc:
            render.print_error(str(exc))
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt as exc:
            render.print_interrupted(str(exc) or "interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except _TYPER_EXITS:
            raise  # typer's own: usage errors, --help, exit codes
        except BrokenPipeError:
            raise  # the reader of our output left (`| head`): main() ends quietly
        except Exception as exc:
            render.print_error(unexpected_error_line(exc, _log_traceback(exc)))
            raise typer.Exit(EXIT_ERROR) from None


def unexpected_error_line(exc: BaseException, log_file: Path | None) -> str:
    """One line for an error no command turned into a HeroError: what failed, on which file, where the details are."""
    if isinstance(exc, OSError):
        target = f" {exc.filename}" if exc.filename else ""
        what = exc.strerror or str(exc)
        text = f"cannot use{target}: {what.lower() if exc.strerror else what}"
    elif isinstance(exc, sqlite3.Error):
        text = f"the session database failed: {exc}"
    else:
        first = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {first[0][:200] if first else 'no message'}"
    return text + (f" (details in {log_file})" if log_file else "")


def _log_traceback(exc: BaseException) -> Path | None:
    """Append the traceback to the user's hero log (never the terminal); the file, or None when it cannot be written."""
    try:
        folder = Path(user_log_dir("hero", appauthor=False))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "cli.log"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} hero-tui {' '.join(sys.argv[1:])}\n")
            fh.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return path
    except OSError:
        return None


app = typer.Typer(
    cls=HeroGroup,
    help="Fine-tune Stable Diffusion toward what you want from your keyboard feedback (HERO).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

SessionArgument = Annotated[Path, typer.Argument(help="Session folder.", show_default=False)]
GraphicsOption = Annotated[
    Optional[GraphicsMethod],
    typer.Option("--graphics", help="How images are drawn; auto asks the terminal (default: graphics.method in the "
                 "config file, else auto).", case_sensitive=False, show_default=False),
]


def main() -> None:
    """Console entry point of `hero-tui`."""
    # The commands draw one progress line of their own, a download's bytes included; huggingface_hub's bars (one a
    # file it fetches, before the model's loading turns them off) would stack above it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except BrokenPipeError:
        # `hero-tui ... | head`: the reader has what it wanted. Python would still flush stdout at exit and print
        # a traceback about the closed pipe; pointing stdout at /dev/null lets it exit as a shell tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)


@contextlib.contextmanager
def engine_log(folder: Path) -> Iterator[None]:
    """Send the engine's log and library warnings to <session>/engine.log (an open session's) instead of the terminal."""
    handler = _QuietFileHandler(Path(folder) / "engine.log", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()


class _QuietFileHandler(logging.FileHandler):
    """A log file that, when it cannot be written (a read-only folder, a full disk), drops the record instead of printing a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def check_new_session(folder: Path, config: HeroConfig, device: str | None, dtype: str | None, probe: bool = False) -> None:
    """Everything about a new session that can be checked before its folder exists: folder, settings, model, device, dtype.

    With ``probe`` the device and dtype are also resolved by the engine in a child process
    (the TUI never imports torch), when they were given.
    """
    SessionStore.check_new(folder)
    config.validate()
    problem = runtime_problem(device, dtype)
    if problem:
        raise HeroError(problem)
    model_configs.check_supported(config.model, online=False)  # SDXL refiners, SD3, Flux: named as such, from names and files here
    problem = model_problem(config.model)  # one request: an uncached hub id exists, and the hub answers
    if problem:
        raise HeroError(problem)
    model_configs.check_supported(config.model)  # the hub's model_index.json, only once the hub is known to answer (its download retries)
    if config.model == AUTO_MODEL:
        _check_auto_model(device)
    if probe and (device or dtype):
        _probe_runtime(device, dtype)


NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # Linux's NVIDIA driver: without it, CUDA is not there to use


def _check_auto_model(device: str | None) -> None:
    """`--model auto` takes SD1.5 from the hub where CUDA is. On a CUDA machine that has it neither cached nor in
    reach, say so now: the engine would find out only in the app, with the session folder already made."""
    if (device not in (None, "", "auto") and not device.startswith("cuda")) or not NVIDIA_DRIVER.exists():
        return  # the demo model, which ships with hero
    problem = model_problem(DEFAULT_HUB_MODEL)
    if problem and _cuda_visible():
        raise HeroError(f"--model auto takes {DEFAULT_HUB_MODEL} on a CUDA machine, and {problem}, or --model demo")


def _cuda_visible() -> bool:
    """torch's answer, from a child process (the app never imports torch)."""
    code = "import torch; print(torch.cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return done.stdout.strip().endswith("True")


_RUNTIME_PROBE = """
import sys
from hero_engine.errors import HeroError
from hero_engine.models.pipelines import Runtime
try:
    Runtime.resolve(sys.argv[1] or None, sys.argv[2] or None)
except HeroError as exc:
    print(exc)
    sys.exit(3)
"""


def _probe_runtime(device: str | None, dtype: str | None) -> None:
    done = subprocess.run([sys.executable, "-c", _RUNTIME_PROBE, device or "", dtype or ""], capture_output=True, text=True, timeout=300)
    if done.returncode == 3:
        raise HeroError(done.stdout.strip())
    if done.returncode:
        raise HeroError(f"could not ask the engine about --device {device or 'auto'} --dtype {dtype or 'auto'}: {done.stderr.strip()[-200:]}")


# headless commands -------------------------------------------------------------


@app.command(cls=HeroCommand)
@engine_options
def run(
    engine: EngineOptions,
    rounds: Annotated[int, typer.Option(help="Rounds to run: label, learn, sample the next batch.")] = 1,
    evaluator: Annotated[str, typer.Option(help="Simulated labeler with a fixed intent, e.g. 'redness' (works on any model).")] = "redness",
    session: Annotated[
        Optional[Path],
        typer.Option(help="Session folder; continued when it holds a session (default: a new folder in the user data folder).", show_default=False),
    ] = None,
) -> None:
    """Run HERO rounds with a simulated evaluator labeling instead of a person."""
    from hero_engine.evaluation.evaluators import get_evaluator

    if rounds < 1:
        raise HeroError("--rounds must be at least 1")
    judge = get_evaluator(evaluator)
    folder = session or new_session_folder(engine.given.get("prompt", ""))
    config = new_session_config(folder, engine)

    from hero_engine.drivers import headless

    out = render.stdout()
    try:
        # The progress line shows from the start: a new session's model loads (and downloads) as it opens.
        with render.stage_progress(out) as on_progress, headless.open_session(
            folder, config, engine.device, engine.dtype, engine.memory(), engine.given, on_progress,
        ) as hero, engine_log(folder):
            recent_sessions.record_use(folder)  # `hero-tui resume` then finds it wherever it lives
            out.print(f"{'new' if config else 'continuing'} session {folder} at round {hero.current_round}", soft_wrap=True)
            out.print(render.round_legend(evaluator, judge.description), style="dim", highlight=False)
            out.print(render.ROUND_HEADER, style="bold", soft_wrap=True)
            for result in headless.run_rounds(hero, judge, rounds, on_progress, render.print_notice):
                out.print(render.round_line(result), soft_wrap=True)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; session {folder} is saved with its labels: continue with `hero-tui run --session {folder}`") from None
    out.print(f"continue: hero-tui run --session {folder} --rounds {rounds}   export: hero-tui export {folder}", soft_wrap=True)


def new_session_config(folder: Path, engine: EngineOptions) -> HeroConfig | None:
    """The config of a new session in ``folder``; None when ``folder`` holds a session to continue."""
    if is_session(folder):
        _, stored = SessionStore.read_header(folder)
        engine.check_matches(stored, folder)
        return None
    config = engine.config()
    check_new_session(folder, config, engine.device, engine.dtype)  # before torch is imported; the engine loads the model before the folder exists
    return config


class ExportFormat(str, Enum):
    """`hero-tui export --format`: the LoRA's (hero_engine.models.lora_export.FORMATS, named here so --help needs no
    torch), or the labels as a dataset (hero_engine.reporting.dataset)."""

    both = "both"
    diffusers = "diffusers"
    kohya = "kohya"
    dataset = "dataset"


@app.command(cls=HeroCommand)
def export(
    session: SessionArgument,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", "-o",
            help="A .safetensors file, or a folder to hold pytorch_lora_weights.safetensors (default: <session>/exports/); "
            "with --format dataset, the dataset's folder (default: <session>/exports/dataset/).",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format", "-f", case_sensitive=False,
            help="diffusers (load_lora_weights), kohya (ComfyUI, AUTOMATIC1111/Forge, SD.Next, InvokeAI; diffusers reads it too), "
            "or both: the diffusers file plus the kohya one beside it, named *.kohya.safetensors; "
            "dataset: the labels and images as Parquet with a dataset card, not the LoRA.",
        ),
    ] = ExportFormat.both,
) -> None:
    """Write the tuned LoRA: diffusers format and kohya's layout (with alpha) that ComfyUI and AUTOMATIC1111 load."""
    if format is ExportFormat.dataset:
        export_dataset(session, out)
        return
    from hero_engine.drivers import headless

    with headless.open_session(session, None) as hero, engine_log(session):
        paths = headless.export_lora(hero, out, render.print_notice, format.value)
        round_, family = hero.latest_checkpoint(), hero.model_family()
    console = render.stdout()
    kinds = ["diffusers", "kohya"] if format is ExportFormat.both else [format.value]
    for kind, path in zip(kinds, paths):
        console.print(f"exported the LoRA after round {round_} ({kind} format) to {path}", soft_wrap=True)
    for kind, path in zip(kinds, paths):
        if kind == "kohya":
            console.print(render.front_end_line(path.name, family), soft_wrap=True)
    console.print("Python, ready to run:", soft_wrap=True)
    console.print(render.lora_snippet(hero.config, paths[0], family, hero.store.weights_variant()), soft_wrap=True,
                  markup=False, highlight=False)


def export_dataset(session: Path, out: Path | None) -> None:
    """`hero-tui export SESSION --format dataset`: torch-free, read-only on the session (it may be open in the app)."""
    from hero_engine.reporting import dataset, session_record
    from hero_engine.reporting.extras import require

    record = session_record.read_session(session)
    require("pyarrow", "the dataset")
    target = out or session / "exports" / "dataset"
    console = render.stdout()
    with render.stage_progress(console) as on_progress:
        parquet = dataset.write_dataset(record, target, on_progress)
    console.print(f"wrote {len(record.images())} images of {len(record.rounds)} rounds to {parquet}", soft_wrap=True)
    console.print(f"dataset card: {target / dataset.CARD_FILE}", soft_wrap=True)


@app.command(cls=HeroCommand)
def report(
    session: Annotated[
        Optional[Path], typer.Argument(help="Session folder (default: the most recently used session, as for `resume`).", show_default=False)
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="HTML file to write (default: <session>/exports/report-<time>.html).", show_default=False)
    ] = None,
    samples: Annotated[int, typer.Option(help="Image pairs drawn from the tuned LoRA and from the base model with the same noise.")] = 4,
    no_samples: Annotated[
        bool, typer.Option("--no-samples", help="Draw no images: needs no model, and works while the session is open in the app.")
    ] = False,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the samples' noise (default: the session's).", show_default=False)] = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Write one HTML file of what a session taught: every round's labels and best, plots, tuned against base."""
    from hero_engine.reporting import html_report, session_record
    from hero_engine.reporting.extras import require
    from hero_tui.launch import most_recent_session

    if samples < 1 and not no_samples:
        raise HeroError("--samples must be at least 1 (or give --no-samples)")
    folder = session or most_recent_session()
    record = session_record.read_session(folder)
    require("matplotlib", "the report's plots")
    target = out or html_report.default_report_path(folder)
    html_report.check_writable(target)
    console = render.stdout()
    comparison, note = None, "Not drawn: the report was written with --no-samples."
    with render.stage_progress(console) as on_progress:
        if not no_samples:
            comparison, note = _draw_comparison(folder, samples, seed, device, dtype, on_progress)
        path = html_report.write_report(record, target, comparison, note, on_progress)
    if comparison is None and not no_samples:
        render.print_notice(f"no samples in the report: {note}")
    console.print(f"wrote the report to {path}", soft_wrap=True)


def _draw_comparison(folder: Path, count: int, seed: int | None, device: str | None, dtype: str | None, on_progress):
    """The engine's tuned-against-base samples, or None and why not (no round learned from yet)."""
    from hero_engine.drivers import headless

    try:
        with headless.open_session(folder, None, device, dtype) as hero, engine_log(folder):
            if hero.latest_checkpoint() is None:
                return None, "no round has been learned from yet, so the LoRA still draws what the base model draws."
            return headless.draw_comparison(hero, count, seed, render.print_notice, on_progress), None
    except SessionLocked as exc:
        raise HeroError(f"{refusal_line(exc)}; the report can be written without samples meanwhile: add --no-samples") from None
    except HeroError as exc:  # e.g. the model is not on this machine
        raise HeroError(f"the samples cannot be drawn: {exc} (add --no-samples to write the report without them)") from None


@app.command(cls=HeroCommand)
def sample(
    session: SessionArgument,
    count: Annotated[int, typer.Option("-n", "--count", help="Images to draw.")] = 4,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt (default: the session's).", show_default=False)] = None,
    refined_noise: Annotated[
        bool, typer.Option("--refined-noise", help="Start from noise around the good images' noise instead of plain noise.")
    ] = False,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Grid image to write: PNG, or any format Pillow writes, by its extension "
                     "(default: <session>/exports/samples-<time>.png).", show_default=False),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the draw (default: the session's).", show_default=False)] = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Draw images from the tuned model and save them as one grid image."""
    from hero_engine.drivers import headless

    console = render.stdout()
    with render.stage_progress(console) as on_progress, headless.open_session(session, None, device, dtype) as hero, \
            engine_log(session):
        path = headless.sample_grid(hero, count, out=out, prompt=prompt, refined_noise=refined_noise, seed=seed,
                                    on_notice=render.print_notice, on_progress=on_progress)
    console.print(f"wrote {count} samples to {path}", soft_wrap=True)


# session management ------------------------------------------------------------


@app.command(cls=HeroCommand)
def sessions(
    root: Annotated[Optional[Path], typer.Argument(help="Folder to list (default: the user sessions folder).", show_default=False)] = None,
) -> None:
    """List sessions: prompt, model, rounds, labels, last activity, the app or process that has it open, and the whole folder path.

    Without a folder: the user sessions folder's, and those made elsewhere with --session (as resume finds them).
    """
    if root is not None and root.exists() and not root.is_dir():
        raise HeroError(f"{root} is a file: give a folder that holds sessions")
    found = list_sessions(root or sessions_root(), include_unreadable=True)
    if root is None:
        listed = {summary.folder.resolve() for summary in found}
        elsewhere = [folder for folder in recent_sessions.read_uses() if folder.resolve() not in listed]
        found = sorted([*found, *summarize_sessions(elsewhere, include_unreadable=True)],
                       key=lambda summary: summary.last_activity, reverse=True)
    root = root or sessions_root()
    console = render.stdout()
    if not found:
        console.print(f"no sessions in {root}", soft_wrap=True)
        return
    for line in render.sessions_lines(found):
        console.print(line, soft_wrap=True)


@app.command(cls=HeroCommand)
def bench(
    tasks: Annotated[str, typer.Option(help="Comma-separated simulated evaluators (tasks).")] = "hand,counting,attribute,spatial,personal",
    methods: Annotated[str, typer.Option(help="Comma-separated methods.")] = "hero,plain-noise,binary,untuned",
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per task and method.", show_default="3; quick: 1")] = None,
    budget: Annotated[Optional[int], typer.Option(help="Labels per run.", show_default="128; quick: 32")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Images per round.", show_default="16; quick: 16")] = None,
    eval_images: Annotated[Optional[int], typer.Option(help="Held-out images judged at each measurement, from plain and from refined noise.", show_default="24; quick: 16")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Rounds between measurements (the last round is always measured).", show_default="2; quick: 1")] = None,
    target: Annotated[float, typer.Option(help="Success rate whose label cost is reported.")] = 0.5,
    model: Annotated[str, typer.Option(help="Model every run starts from.")] = "demo",
    quick: Annotated[bool, typer.Option("--quick", help="One seed, 32 labels: about 2.5 minutes a task on one CPU "
                                              "thread, 13 for the five (docs/experiments.md); --jobs runs tasks side by side.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for results.json and success.png.")] = Path("bench-results"),
    redraw: Annotated[
        bool, typer.Option("--redraw", help="Run nothing: draw success.png and the table again from the results.json in --out.")
    ] = False,
    jobs: Annotated[int, typer.Option(help="Task-and-seed pairs run at once, each in its own process (the results are the same).")] = 1,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Measure label efficiency: success rate against labels used, per task and method (HERO and its ablations)."""
    from hero_engine.drivers import bench as benchmark

    problem = runtime_problem(device, dtype)
    if problem:
        raise HeroError(problem)
    if redraw:
        _redraw_bench(benchmark, out)
        return
    figure = _bench_figure_problem()
    if figure:
        render.print_notice(f"{figure}; the results and the table are written")

    defaults = benchmark.QUICK if quick else benchmark.FULL
    settings = benchmark.BenchSettings(
        tasks=_split(tasks),
        methods=_split(methods),
        seeds=defaults["seeds"] if seeds is None else seeds,
        budget=defaults["budget"] if budget is None else budget,
        batch=defaults["batch"] if batch is None else batch,
        eval_images=defaults["eval_images"] if eval_images is None else eval_images,
        eval_every=defaults["eval_every"] if eval_every is None else eval_every,
        target=target,
        model=model,
        engine=defaults["engine"],
        jobs=jobs,
        device=device,
        dtype=dtype,
    )
    console = render.stdout(piped_width=132)  # in a log file the table keeps one line per row
    runs = benchmark.run_benchmark(settings, out, on_round=lambda line: console.print(f"[dim]{escape(line)}[/]", soft_wrap=True))
    if not figure:
        benchmark.plot(runs, out / "success.png")
    console.print(render.bench_table(benchmark.summarize(runs, settings.target), settings.target))
    console.print(f"results: {out / 'results.json'}" + ("" if figure else f"  plot: {out / 'success.png'}"), soft_wrap=True)


def _bench_figure_problem() -> str | None:
    """Why the bench cannot draw its figure (the report extra is missing), or None."""
    from hero_engine.reporting.extras import require

    try:
        require("matplotlib", "the benchmark's figure")
    except HeroError as exc:
        return str(exc)
    return None


def _redraw_bench(benchmark, out: Path) -> None:
    """`hero-tui bench --redraw`: the figure and the table of the results already in ``out``."""
    from hero_engine.reporting.extras import require

    results = out / "results.json"
    if not results.is_file():
        raise HeroError(f"{results} does not exist: run the benchmark with --out {out} first")
    require("matplotlib", "the benchmark's figure")
    try:
        settings, runs = benchmark.load_results(results)
    except (ValueError, KeyError, TypeError) as exc:
        raise HeroError(f"{results} is not a benchmark's results ({exc})") from None
    benchmark.plot(runs, out / "success.png")
    console = render.stdout(piped_width=132)
    console.print(render.bench_table(benchmark.summarize(runs, settings.target), settings.target))
    console.print(f"plot: {out / 'success.png'}", soft_wrap=True)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# the labeling app -----------------------------------------------------------------


@app.command(cls=HeroCommand)
@engine_options
def start(
    engine: EngineOptions,
    session: Annotated[
        Optional[Path],
        typer.Option(help="Session folder to create (default: a new folder in the user data folder).", show_default=False),
    ] = None,
    graphics: GraphicsOption = None,
) -> None:
    """Create a session and label its images in the terminal app."""
    from hero_tui import launch

    folder = session or new_session_folder(engine.given.get("prompt", ""))
    config = engine.config()
    check_new_session(folder, config, engine.device, engine.dtype, probe=True)
    launch.start(folder, config, graphics.value if graphics else None, engine.device, engine.dtype, engine.given)


@app.command(cls=HeroCommand)
def resume(
    session: Annotated[
        Optional[Path], typer.Argument(help="Session folder (default: the most recently used session, by its last label, round or opening, among those in "
             "the user sessions folder and those opened with `start`, `resume` or `run` anywhere else).", show_default=False)
    ] = None,
    graphics: GraphicsOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
) -> None:
    """Reopen a session in the terminal app, where it was left."""
    from hero_tui import launch

    launch.resume(session, graphics.value if graphics else None, device, dtype)


@app.command(cls=HeroCommand)
def doctor(
    model: Annotated[
        Optional[str], typer.Option(help="Model to check for offline use (default: the engine's default model).", show_default=False)
    ] = None,
    graphics: GraphicsOption = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the graphics method found (or given with --graphics) in the "
                                       "config file, for `start` and `resume`.")] = False,
) -> None:
    """Check this terminal and machine: graphics, cell size, tmux/SSH, CUDA and free VRAM, model offline.

    Exits 1 when it finds something `start` would stop on (a refused config file or model, no torch).
    """
    from hero_tui import doctor as checks
    from hero_tui.graphics import select_graphics
    from hero_tui.user_config import graphics_settings, keep_graphics_method

    if keep and graphics is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise HeroError("--keep keeps what this terminal draws: run it in the terminal you label in, or name the method "
                        "with --graphics")
    choice = select_graphics(graphics.value if graphics else graphics_settings().method)
    problems = checks.print_report(checks.check_all(model or HeroConfig().model, choice))
    if keep:
        path = keep_graphics_method(choice.method)
        render.stdout().print(f"graphics method {choice.method} kept in {path}", soft_wrap=True, markup=False)
    if problems:
        raise typer.Exit(1)
