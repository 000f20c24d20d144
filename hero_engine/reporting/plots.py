"""Figures drawn with matplotlib: a session's metrics round by round, and the benchmark's success against labels.

matplotlib comes with the optional extra (``hero[report]``); every function here asks for it
through ``extras.require``, so a missing extra is one line that names the install. Figures are
built on ``matplotlib.figure.Figure`` (no pyplot, no global state) and saved as PNG bytes.
docs/report.md says what each plot means.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hero_engine.reporting.extras import require
from hero_engine.reporting.session_record import SessionRecord

METHOD_COLOURS = {"hero": "#d62728", "plain-noise": "#ff7f0e", "binary": "#1f77b4", "untuned": "#7f7f7f"}
STAGE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


@dataclass(frozen=True)
class Series:
    metric: str  # the name in hero.db's metrics table
    label: str


@dataclass(frozen=True)
class RoundPlot:
    """One per-round plot of the report: which metrics it draws, and how."""

    key: str
    title: str
    y_label: str
    series: tuple[Series, ...]
    meaning: str  # what the plot shows, under it in the report (docs/report.md says more)
    unit_range: bool = False  # a share: the y axis spans 0 to 1
    log_scale: bool = False  # values spread over decades (approximate KL)


ROUND_PLOTS = (
    RoundPlot("agreement", "Rewards agree with the labels", "share of pairs ordered right",
              (Series("reward_label_agreement", "seen: encoder trained on the round"),
               Series("reward_label_agreement_unseen", "unseen: encoder before the round")),
              "Of the round's (good, not good) image pairs, the share whose rewards rank the good image higher. Seen: "
              "the encoder after it trained on the round's labels; unseen: before, a test on labels it had not seen. "
              "1 is perfect, 0.5 is chance.", unit_range=True),
    RoundPlot("good_rate", "Good rate", "good / labeled", (Series("good_rate", "good rate"),),
              "The share of the round's images marked good: it rises as the model learns to draw what is wanted.",
              unit_range=True),
    RoundPlot("reward", "Mean reward", "reward", (Series("reward_mean", "all images"), Series("reward_good_mean", "good"),
                                                  Series("reward_bad_mean", "not good")),
              "The rewards the encoder gave the round's images (HERO's graded reward in [0, 1]): over all of them, the "
              "good ones and the others. A gap between good and not good is what the policy update learns from."),
    RoundPlot("approx_kl", "Approximate KL of the policy update", "KL (log scale)",
              (Series("policy_approx_kl", "approximate KL"),),
              "How far one round's update moved the model's denoising steps from those it sampled with (mean of "
              "0.5 (log-ratio)^2). PPO's clip keeps it small; a sudden jump means a large step.", log_scale=True),
    RoundPlot("clip_fraction", "Clip fraction", "share clipped", (Series("policy_clip_fraction", "clip fraction"),),
              "The share of trained denoising steps whose probability ratio left PPO's clip range, so their gradient "
              "was cut off. Near 1 the clip range, not the learning rate, limits each round.", unit_range=True),
    RoundPlot("policy_loss", "Policy loss", "PPO loss", (Series("policy_loss", "policy loss"),),
              "PPO's clipped loss, mean over the round's trained steps: the reward-weighted objective the LoRA's "
              "update minimises. Its sign and size follow the round's advantages more than progress."),
    RoundPlot("encoder_loss", "Encoder loss", "triplet loss", (Series("encoder_loss_first", "first epoch"),
                                                                Series("encoder_loss_last", "last epoch")),
              "The feedback encoder's triplet loss on the round's labels, in its first and last epoch: the last below "
              "the first means the encoder learned to pull the good images together, away from the others."),
)
SECONDS_MEANING = ("Seconds each stage of the round's update took, stacked: replaying a trajectory, the encoder "
                   "(representation), the policy update, saving the checkpoint and sampling the next round's images.")
STAGE_SECONDS_PREFIX = "seconds_"
NOT_A_STAGE = {"seconds_first_images"}  # when the first chunk of the next images was stored: part of sampling's time


def round_values(record: SessionRecord) -> dict[int, dict[str, float]]:
    """Each updated round's metrics (NaN where hero.db holds none), with its good rate added."""
    values = {}
    for round_ in record.updated_rounds():
        row = {name: math.nan if value is None else float(value) for name, value in round_.metrics.items()}
        good, bad = row.get("good", math.nan), row.get("bad", math.nan)
        row["good_rate"] = good / (good + bad) if good + bad > 0 else math.nan
        values[round_.round] = row
    return values


def round_plot_pngs(record: SessionRecord) -> list[tuple[RoundPlot | None, bytes]]:
    """Every per-round plot as PNG bytes, in ROUND_PLOTS' order, then the stages' seconds (its RoundPlot is None)."""
    values = round_values(record)
    pngs: list[tuple[RoundPlot | None, bytes]] = [(spec, _png(_round_figure(spec, values))) for spec in ROUND_PLOTS]
    pngs.append((None, _png(_seconds_figure(values))))
    return pngs


def _figure(width: float = 5.2, height: float = 3.0):
    figure_module = require("matplotlib.figure", "drawing the plots")
    return figure_module.Figure(figsize=(width, height), dpi=110, layout="constrained")


def _round_figure(spec: RoundPlot, values: Mapping[int, Mapping[str, float]]):
    figure = _figure()
    axes = figure.add_subplot()
    rounds = sorted(values)
    drawn = False
    for series in spec.series:
        ys = [values[r].get(series.metric, math.nan) for r in rounds]
        if spec.log_scale:
            ys = [y if y > 0 else math.nan for y in ys]  # zero or negative has no place on a log axis
        if all(math.isnan(y) for y in ys):
            continue
        axes.plot(rounds, ys, marker="o", markersize=4, label=series.label)
        drawn = True
    if spec.log_scale and drawn:
        axes.set_yscale("log")
    if spec.unit_range:
        axes.set_ylim(-0.03, 1.03)
    if not drawn:
        axes.text(0.5, 0.5, "not recorded for these rounds", ha="center", va="center", transform=axes.transAxes, color="#777")
    _round_axes(axes, spec.title, spec.y_label, rounds)
    if drawn and len(spec.series) > 1:
        axes.legend(fontsize=8, frameon=False)
    return figure


def _seconds_figure(values: Mapping[int, Mapping[str, float]]):
    figure = _figure()
    axes = figure.add_subplot()
    rounds = sorted(values)
    stages = sorted({name for row in values.values() for name in row
                     if name.startswith(STAGE_SECONDS_PREFIX) and name not in NOT_A_STAGE})
    bottom = [0.0] * len(rounds)
    for colour, stage in zip(_cycle(STAGE_COLOURS, len(stages)), stages):
        heights = [values[r].get(stage, 0.0) for r in rounds]
        heights = [0.0 if math.isnan(h) else h for h in heights]
        axes.bar(rounds, heights, bottom=bottom, color=colour, label=stage.removeprefix(STAGE_SECONDS_PREFIX).replace("_", " "))
        bottom = [b + h for b, h in zip(bottom, heights)]
    _round_axes(axes, "Seconds per stage", "seconds", rounds)
    if stages:
        axes.legend(fontsize=7, frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    return figure


def _cycle(colours: Sequence[str], n: int) -> list[str]:
    return [colours[i % len(colours)] for i in range(n)]


def _round_axes(axes, title: str, y_label: str, rounds: list[int]) -> None:
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("round")
    axes.set_ylabel(y_label, fontsize=8)
    ticker = require("matplotlib.ticker", "drawing the plots")
    axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if rounds:
        axes.set_xlim(rounds[0] - 0.5, rounds[-1] + 0.5)
    axes.grid(alpha=0.3)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# the benchmark's figure ---------------------------------------------------------------------------------------------

Curve = Sequence[tuple[int, float]]  # (labels used, success rate) at each measurement of one seed's run


def mean_and_standard_error(curves: Sequence[Curve]) -> list[tuple[int, float, float]]:
    """(labels, mean, standard error of the mean) over the seeds measured at each label count."""
    by_labels: dict[int, list[float]] = {}
    for curve in curves:
        for labels, success in curve:
            by_labels.setdefault(labels, []).append(success)
    return [(labels, statistics.fmean(found), statistics.stdev(found) / math.sqrt(len(found)) if len(found) > 1 else 0.0)
            for labels, found in sorted(by_labels.items())]


def bench_figure_png(curves: Mapping[str, Mapping[str, Mapping[str, Sequence[Curve]]]], max_labels: int) -> bytes:
    """Success against labels, one panel per task: a mean line per method with a band of one standard error over seeds.

    ``curves[task][method][noise]`` holds one curve per seed, ``noise`` being "plain" (solid line, with its band)
    or "refined" (dotted line). A method measured only at zero labels (the untuned model) is a dashed level line.
    """
    tasks = list(curves)
    columns = min(3, len(tasks) + 1)
    rows = math.ceil((len(tasks) + 1) / columns)  # one spare panel holds the legend
    figure = _figure(width=3.0 * columns, height=2.5 * rows)
    figure.get_layout_engine().set(w_pad=0.08, h_pad=0.08)
    grid = figure.subplots(rows, columns, squeeze=False)
    handles: dict[str, object] = {}
    for panel, task in zip(grid.flat, tasks):
        for method, by_noise in curves[task].items():
            colour = METHOD_COLOURS.get(method, "#000000")
            plain = mean_and_standard_error(by_noise.get("plain", []))
            if not plain:
                continue
            if len(plain) == 1:  # the untuned model: its zero-label success holds at every label count
                _, mean, error = plain[0]
                line = panel.axhline(mean, color=colour, linestyle="--", linewidth=1.5)
                panel.axhspan(mean - error, mean + error, color=colour, alpha=0.12, linewidth=0)
            else:
                xs, means, errors = zip(*plain)
                (line,) = panel.plot(xs, means, color=colour, marker="o", markersize=3.5, linewidth=1.8)
                panel.fill_between(xs, [m - e for m, e in zip(means, errors)], [m + e for m, e in zip(means, errors)],
                                   color=colour, alpha=0.18, linewidth=0)
            handles.setdefault(method, line)
            refined = mean_and_standard_error(by_noise.get("refined", []))
            if len(refined) > 1:
                xs, means, _ = zip(*refined)
                panel.plot(xs, means, color=colour, linestyle=":", linewidth=1.5)
                if "refined noise" not in handles:
                    lines = require("matplotlib.lines", "drawing the plots")
                    handles["refined noise"] = lines.Line2D([], [], color="black", linestyle=":", linewidth=1.5)
        panel.set_title(task, fontsize=10)
        panel.set_xlim(0, max_labels)
        panel.set_ylim(0, 1)
        panel.set_xlabel("labels", fontsize=8)
        panel.set_ylabel("success rate", fontsize=8)
        panel.tick_params(labelsize=8)
        panel.grid(alpha=0.3)
    spare = list(grid.flat)[len(tasks):]
    for panel in spare:
        panel.axis("off")
    if spare:
        handles["refined noise"] = handles.pop("refined noise", None)  # after the methods
        handles = {name: handle for name, handle in handles.items() if handle is not None}
        spare[0].legend(list(handles.values()), list(handles), loc="center", fontsize=9, frameon=False,
                        title="success from plain noise,\nmean ± standard error over seeds", title_fontsize=9)
    return _png(figure)
