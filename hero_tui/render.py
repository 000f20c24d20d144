"""What the command line shows: one-line errors and notices, progress, round rows, session tables.

Consoles are made per use, so they follow the output streams of the moment
(a terminal, a pipe, or a test runner's capture).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from hero_engine.models import weights_variant as variants
from hero_tui import lock_holder
from hero_tui.stages import (
    DOWNLOADING,
    STAGE_TITLES,
    StageEstimate,
    byte_size,
    download_total_known,
    time_left,
)

if TYPE_CHECKING:  # the engine's types, without importing torch at run time
    from hero_engine.config import HeroConfig
    from hero_engine.drivers.bench import LabelCost, Summary
    from hero_engine.drivers.headless import RoundResult
    from hero_engine.storage.listing import SessionSummary

ProgressFn = Callable[[str, int, int], None]

# The progress line's stage names, as the app names them; its columns keep their widths so the bar stays put.
_STAGE_NAMES = {**STAGE_TITLES, DOWNLOADING: "downloading the model", "plots": "drawing the plots"}  # plots: `report`
_STAGE_WIDTH = max(map(len, _STAGE_NAMES.values()))
_COUNT_WIDTH = len("100%, about 10 min 00 s left")  # the bar keeps its length as the count changes
# Stages shorter than this are left out of a round's timing line.
_MIN_SECONDS_SHOWN = 0.05
# Longest prompt (and unreadable-session reason) shown in a table cell; the rest is cut with "…".
PROMPT_WIDTH = 60
REASON_WIDTH = 120
# Characters that would move the cursor, recolour or reorder the terminal's text: shown escaped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def stdout(piped_width: int | None = None) -> Console:
    """The console for results; ``piped_width`` widens it when output goes to a file instead of a terminal."""
    console = Console(highlight=False)
    if piped_width and not console.is_terminal:
        console = Console(highlight=False, width=piped_width)
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def one_line(text: str) -> str:
    """``text`` on one line: whitespace runs (newlines included) become one space, other control characters are shown escaped."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), " ".join(text.split()))


def shorten(text: str, width: int) -> str:
    """``one_line(text)``, cut to ``width`` characters with a trailing "…" when longer."""
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_error(message: str) -> None:
    stderr().print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True)


def print_interrupted(message: str) -> None:
    stderr().print(f"[bold yellow]{escape(one_line(message))}[/]", soft_wrap=True)


def print_notice(message: str) -> None:
    stderr().print(f"[yellow]notice:[/] {escape(one_line(message))}", soft_wrap=True)


@contextlib.contextmanager
def stage_progress(console: Console) -> Iterator[ProgressFn]:
    """A transient progress line fed by the engine's (stage, done, total) reports; off when not on a terminal.

    Stages are named as the app names them. A stage with a count shows its share done and, once it can be told,
    the time left (``StageEstimate``: its own pace, and its time when it last ran in this command, as in a `run`'s
    earlier rounds). Loading has no count, so its bar pulses; a model's download counts bytes, of the total the hub
    told, and pulses without one."""
    columns = (TextColumn("{task.description}", justify="right", table_column=Column(width=_STAGE_WIDTH, no_wrap=True)),
               BarColumn(bar_width=None), TextColumn("{task.fields[count]}", table_column=Column(width=_COUNT_WIDTH, no_wrap=True)),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=None, visible=False, count="")
        shown_stage = ""
        finished = False  # the shown stage has run to its end
        estimate = StageEstimate(0.0, None)
        last_seconds: dict[str, float] = {}  # each stage's time when it last ran to its end

        def report(stage: str, done: int, total: int) -> None:
            nonlocal shown_stage, finished, estimate
            now = time.monotonic()
            starts = stage != shown_stage or (finished and done < total)  # a stage that runs again starts over
            if starts:
                estimate, finished = StageEstimate(now, last_seconds.get(stage)), False
            if stage == DOWNLOADING:
                pulsing = not download_total_known(done, total)
                count = f"{byte_size(done)} so far" if pulsing else f"{byte_size(done)} of {byte_size(total)}"
            else:
                counted = total > 1  # loading's 0 of 1 is no count
                pulsing = not counted and done < total
                count = f"{min(done / total, 1.0):.0%}" if counted else ""
                left = estimate.update(done, total, now) if counted else None
                if left is not None and done < total:
                    count += f", {time_left(left)}"
                if done >= total > 0 and not finished:
                    last_seconds[stage] = now - estimate.started
            finished = done >= total > 0
            bar = dict(total=None, completed=0) if pulsing else dict(total=total, completed=done)
            if starts:  # the bar and its clock start again
                progress.reset(task, description=_STAGE_NAMES.get(stage, stage), visible=True, count=count, **bar)
                shown_stage = stage
            else:
                progress.update(task, count=count, **bar)

        yield report


# agrees: the reward orders the round's labels; unseen: the same before the encoder trained on them
ROUND_HEADER = f"{'round':>5} {'labels':>6} {'good':>4} {'reward':>7} {'agrees':>6} {'unseen':>6} {'evaluator':>9}  seconds per stage"


def round_legend(evaluator: str, description: str) -> str:
    """What ROUND_HEADER's columns mean, printed under it."""
    return ("labels: given so far · agrees: share of the round's labels the reward orders as given · unseen: the same "
            f"before the encoder trained on them · evaluator: mean score of the round's images by '{evaluator}', which "
            f"{description}; higher is more of what it wants")


def _percent(value: float) -> str:
    return "-" if value != value else f"{value:.0%}"  # NaN: nothing to compare


def round_line(result: RoundResult) -> str:
    stages = " ".join(f"{stage} {seconds:.1f}" for stage, seconds in result.seconds.items() if seconds >= _MIN_SECONDS_SHOWN)
    return (
        f"{result.round:>5} {result.labels_total:>6} {result.good:>4} "
        f"{result.mean_reward:>7.3f} {_percent(result.reward_agreement):>6} {_percent(result.reward_agreement_unseen):>6} "
        f"{result.evaluator_score:>9.4f}  [dim]{escape(stages)}[/]"
    )


def sessions_lines(sessions: Sequence[SessionSummary]) -> list[Text]:
    """A header and one line per session, the folder last and whole (print with soft_wrap: never cut or wrapped).

    Not a rich Table: a table fits its cells to the console width and cuts the folder, which is the one
    column a person copies (`hero-tui resume FOLDER`). A session that cannot be read shows why in place
    of its prompt.
    """
    header = ("prompt", "model", "rounds", "labels", "last activity", "open in")
    rows = [(shorten(s.prompt, PROMPT_WIDTH), shorten(s.model, PROMPT_WIDTH), str(s.rounds), str(s.labels),
             f"{datetime.fromtimestamp(s.last_activity):%Y-%m-%d %H:%M}",
             "-" if s.open_in is None else lock_holder.open_in(s.open_in)) for s in sessions]
    widths = [max([len(title)] + [len(row[c]) for row, s in zip(rows, sessions) if not s.problem])
              for c, title in enumerate(header)]
    right = (False, False, True, True, False, False)

    def cells(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right))

    lines = [Text(cells(header) + "  folder", style="bold")]
    for summary, row in zip(sessions, rows):
        folder = one_line(str(summary.folder))
        if summary.problem:
            lines.append(Text.assemble(("cannot be read:", "red"), f" {shorten(summary.problem, REASON_WIDTH)}  -  -  -  "
                                       f"{row[4]}  -  {folder}"))
        else:
            lines.append(Text(f"{cells(row)}  {folder}"))
    return lines


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"  # NaN: nothing to rank


def bench_table(summaries: Sequence[Summary], target: float) -> Table:
    """Success at the end of the budget (mean ± std over seeds) and the labels needed to reach ``target``."""
    table = Table("task", "method", "success (plain noise)", "success (refined noise)",
                  f"labels to {target:.0%} (plain)", f"labels to {target:.0%} (refined)", "reward agrees (min / mean)",
                  "reward ~ judge (round / misses)", box=None, header_style="bold")
    for s in summaries:
        refined = _mean_plus_minus_std(s.success_refined, s.seeds) if s.success_refined else "-"
        agreement = f"{s.agreement[0]:.2f} / {s.agreement[1]:.2f}" if s.agreement else "-"
        grading = f"{s.grading[0]:.2f} / {_number(s.grading[1])}" if s.grading else "-"
        table.add_row(s.task, s.method, _mean_plus_minus_std(s.success_plain, s.seeds), refined,
                      _label_cost(s.to_target_plain, s.seeds), _label_cost(s.to_target_refined, s.seeds), agreement, grading)
    return table


def _mean_plus_minus_std(value: tuple[float, float], seeds: int) -> str:
    return f"{value[0]:.2f} ± {value[1]:.2f}" if seeds > 1 else f"{value[0]:.2f}"


def _label_cost(cost: LabelCost, seeds: int) -> str:
    """Mean labels over the seeds that reached the target, and how many did."""
    if cost.mean is None:
        return f"- (0/{seeds})"
    return f"{cost.mean:.0f} ({cost.reached}/{seeds})"


def front_end_line(kohya_file: str, family: str) -> str:
    """Where the kohya file goes in ComfyUI and AUTOMATIC1111/Forge, and (for SDXL) the checkpoint it needs there."""
    line = f"ComfyUI / AUTOMATIC1111 / Forge: put {kohya_file} in models/loras (ComfyUI) or models/Lora (A1111, Forge)"
    if family == "SDXL":
        line += (f"; it is an SDXL LoRA: in ComfyUI a LoraLoader after an SDXL checkpoint's loader, in A1111/Forge an SDXL "
                 f"checkpoint and <lora:{Path(kohya_file).stem}:1> in the prompt")
    return line


def lora_snippet(config: HeroConfig, lora: Path, family: str = "", weights_variant: str | None = None) -> str:
    """Python that loads the session's base model and the exported LoRA, then draws the prompt with its settings;
    a hub model from the weight files the session loaded (``weights_variant``), which the cache holds."""
    model = config.model
    if model == "demo":
        load = "from hero_engine.demo import load_pipeline\npipe = load_pipeline()"
    elif model in ("tiny", "tiny-sdxl") or Path(model).expanduser().is_file():
        # single files load offline through hero's shipped configs; tiny is built, not downloaded
        load = f"from hero_engine.models.pipelines import Runtime, load_pipeline\npipe = load_pipeline({model!r}, Runtime.resolve())"
    else:
        pipeline = "StableDiffusionXLPipeline" if family == "SDXL" else "StableDiffusionPipeline"
        files = f", variant={weights_variant!r}" if weights_variant == variants.HALF else ""
        load = f"from diffusers import {pipeline}\npipe = {pipeline}.from_pretrained({model!r}{files})"
    return (
        f"{load}\n"
        f"pipe.load_lora_weights({str(lora.parent)!r}, weight_name={lora.name!r})\n"
        f"image = pipe({config.prompt!r}, num_inference_steps={config.steps}, guidance_scale={config.guidance}).images[0]\n"
        f"image.save('hero_sample.png')"
    )
