"""How well the reward a session learns from labels ranks images it never saw: the representation alone, in minutes.

    OMP_NUM_THREADS=1 python tests/benchmarks/research.py representation --task counting \\
        --variant 'global={"encoder_pooling": "global"}' \\
        --variant 'global, all rounds={"encoder_pooling": "global", "encoder_rounds": 8}'

The demo model draws a pool of images for the task's prompt from plain noise (640 by
default; ``--pool FILE`` keeps it for the next run). The task's evaluator labels rounds
of 16 drawn from the first half, as in the benchmark (good, best, the previous best
kept when it ranks higher), and the session's own learner trains its encoder on them
round by round, with each variant's settings on top of the demo defaults. The reward
that results (similarity to the final best) then ranks the pool's second half, which
no round saw, against the judge:

- ``success``: the chance that an image that fulfils the intent gets a higher reward than
  one that does not (0.5: chance; the labels' own ordering, on new images).
- ``near > far``: among the misses, the chance that a near one (judge's score -1, e.g.
  two or four circles for three; on ``spatial``, both colours out of place) outranks a far
  one (-2 or lower; on ``spatial``, a colour missing): what no good/bad label says, and
  what a graded reward adds.
- ``spearman``: rank correlation of the reward with the judge's graded score.
- ``misses``: the same over the misses alone, the order no label gives.

No policy is trained and every round is drawn from plain noise, so this isolates the
representation from the policy update and from feedback-guided noise, at a small
fraction of a session's cost; a whole session (``research.py sweep-demo-settings``) says
whether a better ranking reaches the tuned model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness
import torch

from hero_engine.algorithm import noise, rewards
from hero_engine.algorithm.learner import earlier_rounds, gather_feedback
from hero_engine.algorithm.sampling import decode_images, sample_trajectories
from hero_engine.drivers.bench import BenchSettings, create_session
from hero_engine.evaluation.evaluators import feedback_from_scores, get_evaluator
from research_commands import UsageError, hero_settings

ROUND = 16
POOL_SEED = 1234
FAR_MISS = {"spatial": -1.0}  # the judge's score at or below which a miss is far; -2 where scores are counts off


def task_settings(task: str, overrides: dict) -> BenchSettings:
    return hero_settings(task, overrides, budget=128, batch=ROUND, eval_images=ROUND)


def draw_pool(task: str, n: int, workdir: Path) -> dict[str, torch.Tensor]:
    """``n`` images of the untuned demo model from plain noise: final latents, the judge's scores and verdicts."""
    evaluator = get_evaluator(task)
    with create_session(workdir / "pool", task, "untuned", 0, task_settings(task, {})) as session:
        session._ensure_policy()
        model, cfg = session._model, session.config
        generator = torch.Generator().manual_seed(POOL_SEED)
        initial = noise.plain_noise(n, model.latent_shape(), generator)
        trajectory = sample_trajectories(model.pipe.unet, model.schedule, model.embeddings, initial, eta=cfg.eta,
                                         guidance=cfg.guidance, generator=generator, chunk=cfg.sample_batch)
        images = decode_images(model.pipe.vae, trajectory.final_latents, chunk=cfg.sample_batch)
    return {"latents": trajectory.final_latents.cpu(), "scores": torch.tensor([evaluator.score(im) for im in images]),
            "success": torch.tensor([evaluator.is_success(im) for im in images])}


def outranks(higher: torch.Tensor, lower: torch.Tensor) -> float:
    """Chance that a reward from ``higher`` exceeds one from ``lower`` (ties count half); NaN when either is empty."""
    return rewards.label_agreement(torch.cat([higher, lower]), torch.arange(len(higher) + len(lower)) < len(higher))


def learned_rewards(pool: dict[str, torch.Tensor], task: str, overrides: dict, trial: int, rounds: int, workdir: Path,
                    train: bool = True) -> dict:
    """Label ``rounds`` rounds of the pool's first half as the evaluator would, train the session's encoder on them, rank the second half.

    Without ``train`` no encoder is trained and the reward is the final latents' own
    similarity to the same best: what the labels add to the latent space as it is.
    """
    latents, scores, success = pool["latents"], pool["scores"].float(), pool["success"]
    labeled, held_out = len(latents) // 2, slice(len(latents) // 2, None)
    order = torch.randperm(labeled, generator=torch.Generator().manual_seed(trial))
    with create_session(workdir / f"trial-{trial}", task, "hero", trial, task_settings(task, overrides)) as session:
        session._ensure_policy()
        learner = session._model.learner
        previous = best_latent = None
        seen_latents: list[torch.Tensor] = []  # per labeled round
        seen_labels: list[list[str]] = []
        for round_ in range(rounds):
            batch = order[round_ * ROUND : (round_ + 1) * ROUND]
            feedback = feedback_from_scores(scores[batch].tolist(), success[batch].tolist(), previous)
            labels = ["good" if i in feedback.good else "bad" for i in range(ROUND)]
            if feedback.best is not None:
                previous = (bool(success[batch][feedback.best]), float(scores[batch][feedback.best]))
                best_latent = latents[batch][feedback.best]
            window = earlier_rounds(round_, session.config.encoder_rounds)  # the rounds the session's trainer would add
            earlier = (torch.cat([seen_latents[r] for r in window]), [lab for r in window for lab in seen_labels[r]]) if window else None
            if train:
                round_feedback = gather_feedback(latents[batch], labels, feedback.best, best_latent, learner.device, earlier)
                learner.fit_rewards(round_feedback, torch.Generator().manual_seed(1000 * trial + round_))
            seen_latents.append(latents[batch])
            seen_labels.append(labels)
        embed = learner.encoder.features if train else (lambda x: x.flatten(1))
        with torch.no_grad():
            features = embed(latents[held_out].to(learner.device))
            reward = rewards.similarity_rewards(features, embed(best_latent[None].to(learner.device))[0]).cpu()
    score, ok = scores[held_out], success[held_out]
    far_cut = FAR_MISS.get(task, -2.0)
    near, far = ~ok & (score > far_cut), ~ok & (score <= far_cut)
    return {"success": outranks(reward[ok], reward[~ok]), "near > far": outranks(reward[near], reward[far]),
            "spearman": rewards.rank_correlation(reward, score), "misses": rewards.rank_correlation(reward[~ok], score[~ok])}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="counting")
    harness.add_variant_options(parser)
    parser.add_argument("--latents", action="store_true", help="also rank by the final latents' own similarity to the best (no encoder)")
    parser.add_argument("--trials", type=int, default=3, help="label orders (and encoder seeds) per variant")
    parser.add_argument("--rounds", type=int, default=8, help="labeled rounds of 16 (the benchmark's 128 labels: 8)")
    parser.add_argument("--pool-size", type=int, default=640)
    parser.add_argument("--pool", type=Path, help="file that keeps the drawn pool for later runs")
    harness.add_out_option(parser)


def main(args: argparse.Namespace) -> None:
    if args.pool_size < 2 * args.rounds * ROUND:
        raise UsageError(f"--pool-size must hold the labeled rounds twice over (at least {2 * args.rounds * ROUND})")
    variants = harness.variants(args)
    results = harness.read_results(args.out)
    with tempfile.TemporaryDirectory(prefix="hero-representation-") as tmp:
        if args.pool and args.pool.exists():
            pool = torch.load(args.pool)
        else:
            pool = draw_pool(args.task, args.pool_size, Path(tmp))
            if args.pool:
                torch.save(pool, args.pool)
        print(f"{args.task}: pool of {len(pool['latents'])}, success {float(pool['success'].float().mean()):.2f}", flush=True)
        runs = [(name, overrides, True) for name, overrides in variants.items()]
        if args.latents:
            runs.insert(0, ("final latents, no encoder", {}, False))
        for name, overrides, train in runs:
            trials = [learned_rewards(pool, args.task, overrides, t, args.rounds, Path(tmp) / f"run-{len(results)}", train)
                      for t in range(args.trials)]
            row = {"task": args.task, "variant": name, "overrides": overrides, "trials": trials}
            results.append(row)
            harness.write_results(args.out, results)
            print(f"{name:24s} " + "  ".join(f"{key} {harness.summary(t[key] for t in trials)}" for key in trials[0]), flush=True)
