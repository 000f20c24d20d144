"""The benchmark's mechanics on the tiny model: every method runs, results are written and read back."""

import math

import pytest

from hero_engine.drivers.bench import (
    BenchSettings,
    load_results,
    plot,
    reward_grading,
    run_benchmark,
    summarize,
)
from hero_engine.evaluation.evaluators import Feedback


def test_benchmark_runs_every_method_and_round_trips_its_results(tmp_path):
    settings = BenchSettings(
        tasks=["redness"], seeds=1, budget=18, batch=6, eval_images=4, eval_every=2, model="tiny",
        engine={"steps": 4, "train_timesteps": 2, "encoder_epochs": 4, "encoder_triplets": 4},
    )
    runs = run_benchmark(settings, tmp_path)
    assert sorted(r.method for r in runs) == ["binary", "hero", "plain-noise", "untuned"]
    tuned = [r for r in runs if r.method != "untuned"]
    # measured every second round and after the last
    assert all([p.labels for p in r.points] == [0, 12, 18] for r in tuned)
    # at zero labels every method is the same base model on the same held-out noise
    assert len({r.points[0].success_plain for r in runs}) == 1

    hero = next(r for r in runs if r.method == "hero")
    assert len(hero.score_correlation) == len(hero.miss_correlation) == 3  # one per round
    assert all(c is not None and -1 <= c <= 1 for c in hero.score_correlation)

    stored_settings, stored_runs = load_results(tmp_path / "results.json")
    assert stored_settings == settings and stored_runs == runs
    summaries = summarize(stored_runs, target=0.5)
    assert {s.method for s in summaries} == {"binary", "hero", "plain-noise", "untuned"}
    pytest.importorskip("matplotlib", reason='the figure needs the report extra: pip install -e ".[report]"')
    plot(stored_runs, tmp_path / "success.png")
    assert (tmp_path / "success.png").stat().st_size > 0


def test_quick_benchmark_on_the_demo_model_lifts_success_above_the_untuned_model(tmp_path):
    """Two rounds of HERO on the `attribute` task (a yellow flower, ~6-20% before tuning).

    Success is judged on held-out images drawn from the refined noise, as HERO samples at inference;
    the untuned model draws from plain noise. This claim can fail.
    """
    from hero_engine.drivers.bench import QUICK

    settings = BenchSettings(
        tasks=["attribute"], methods=["hero", "untuned"], seeds=QUICK["seeds"], budget=QUICK["budget"],
        batch=QUICK["batch"], eval_images=QUICK["eval_images"], model="demo", engine=QUICK["engine"],
    )
    run_benchmark(settings, tmp_path)
    _, runs = load_results(tmp_path / "results.json")
    hero = next(r for r in runs if r.method == "hero")
    untuned = next(r for r in runs if r.method == "untuned")
    assert [p.labels for p in hero.points] == [0, 16, 32]
    assert hero.points[-1].success_refined > untuned.points[0].success_plain + 0.15


def test_parallel_benchmark_gives_the_sequential_results(tmp_path):
    """--jobs runs (task, seed) pairs in worker processes: guards that it changes speed alone (same runs, same order)."""
    settings = BenchSettings(
        tasks=["redness"], methods=["hero", "untuned"], seeds=2, budget=12, batch=6, eval_images=4, eval_every=1, model="tiny",
        engine={"steps": 4, "train_timesteps": 2, "encoder_epochs": 4, "encoder_triplets": 4}, device="cpu",
    )
    sequential = run_benchmark(settings, tmp_path / "one")
    parallel = run_benchmark(BenchSettings(**{**settings.__dict__, "jobs": 2}), tmp_path / "two")
    assert [(r.method, r.seed) for r in parallel] == [("hero", 0), ("untuned", 0), ("hero", 1), ("untuned", 1)]
    assert parallel == sequential
    assert load_results(tmp_path / "two" / "results.json")[1] == sequential


def test_reward_grading_ranks_the_misses_by_the_judges_score():
    """The benchmark's measure of a reward that grades the misses (``reward_grading``): rewards in the judge's order
    give 1 over the round and over its misses; rewards that order the labels but rank the misses backwards give a
    negative figure for the misses; 0/1 rewards do not rank the misses (NaN). Fails if the misses are taken from the
    good images, or the rewards are not compared in batch order.
    """
    scores = [0.0, -1.0, -2.0, -3.0, 0.0, -1.0]  # e.g. minus how far a circle count is from three
    feedback = Feedback(good=[0, 4], best=0, scores=scores)
    assert reward_grading([1.0, 0.6, 0.4, 0.2, 0.9, 0.5], feedback) == pytest.approx((1.0, 1.0), abs=0.1)
    assert reward_grading([1.0, 0.2, 0.4, 0.6, 0.9, 0.3], feedback)[1] == pytest.approx(-1.0, abs=0.1)
    whole, misses = reward_grading([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], feedback)
    assert whole > 0.5 and math.isnan(misses)


def test_a_run_keeps_the_settings_it_sets_at_the_papers_values_on_the_demo_model(tmp_path):
    """Guards every benchmark and sweep on the demo model: a setting the run sets (its round size, an engine
    override, the method's ablation) stays as set even where it equals the paper's default, which the demo's own
    defaults would otherwise replace (64-image rounds run as 16, a paper's clip range of 1e-4 as 1e-3)."""
    from hero_engine.config import DEMO_SCALE, HeroConfig
    from hero_engine.drivers.bench import create_session

    paper = HeroConfig()
    settings = BenchSettings(tasks=["attribute"], methods=["hero"], seeds=1, budget=64, batch=64, eval_images=4,
                             engine={"clip_range": paper.clip_range})
    with create_session(tmp_path / "s", "attribute", "hero", 0, settings) as session:
        assert session.config.batch_size == 64 and session.config.clip_range == paper.clip_range
        assert session.config.steps == DEMO_SCALE["steps"][0]  # what the run does not set takes the demo's value
