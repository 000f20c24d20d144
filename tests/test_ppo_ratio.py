"""PPO's ratio: its old log-probs on the policy update's own path, and clipping that still bites.

On a GPU, sampling stores the old log-probs in eval mode and ``sample_batch`` images
a pass, while the update recomputes them in train mode and ``rows_per_pass`` steps a
pass; in bfloat16 the two may differ by more than the clip range (1e-4), and the
update would clip every sample. On a CPU they agree to ~1e-6, so these tests plant
the drift (1e-3 of noise on the stored log-probs) and check it is measured and
recomputed away. Recomputing must not hide the update's own movement: once the
LoRA moves, ratios leave 1 and clipping stops samples past the clip range.
"""

import pytest
import torch
from engine_support import tiny_policy

from hero_engine.algorithm.old_log_probs import (
    log_prob_mismatch,
    recompute_log_probs,
    update_pass_rows,
)
from hero_engine.algorithm.policy import PolicySettings, policy_update
from hero_engine.algorithm.sampling import Trajectory
from hero_engine.errors import StageCancelled
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.session.hero_session import HeroSession

DRIFT = 1e-3  # planted |stored - training path| log-prob, ten times the clip range


def _drifted(trajectory: Trajectory, seed: int = 0) -> Trajectory:
    """The trajectory with its stored log-probs off by about DRIFT, as half-precision kernels of another shape may leave them."""
    noise = DRIFT * torch.randn(trajectory.log_probs.shape, generator=torch.Generator().manual_seed(seed))
    return Trajectory(trajectory.latents, trajectory.log_probs + noise, trajectory.timesteps)


def _settings(**changes) -> PolicySettings:
    base = dict(train_timesteps=4, policy_batch=8, rows_per_pass=3, ppo_epochs=1, clip_range=1e-4, grad_clip=1e9, eta=1.0, guidance=5.0)
    return PolicySettings(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny_trajectories():
    return tiny_policy(8, lora_spread=0.05)


def _update_without_moving(policy, trajectory: Trajectory, settings: PolicySettings):
    """The update's statistics with a zero learning rate: every ratio is then the stored log-probs' mismatch."""
    pipe, params, schedule, embeddings, _ = policy
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1.0, -1.0])
    return policy_update(pipe.unet, params, torch.optim.SGD(params, lr=0.0), schedule, embeddings, trajectory, advantages,
                         settings, torch.Generator().manual_seed(3))


def test_recomputed_old_log_probs_are_the_updates_own(tiny_trajectories):
    """Old log-probs recomputed through the training path give ratio 1 in the update, where drifted ones clip.

    With drifted stored log-probs the update's first ratio is off by about the drift and most
    samples are clipped; after ``recompute_log_probs`` the measured mismatch and the update's own
    first ratio error are ~0 and nothing is clipped. Fails if the recompute runs another path
    than the update (mode, guidance, eta, the step scored), if it scores a step against the
    wrong latents, or if it returns the log-probs in another order than [sample, step].
    """
    pipe, params, schedule, embeddings, trajectory = tiny_trajectories
    settings = _settings()
    drifted = _drifted(trajectory)
    generator = lambda: torch.Generator().manual_seed(5)  # noqa: E731 - the same measured steps each time
    assert log_prob_mismatch(pipe.unet, schedule, embeddings, drifted, settings, generator()) > 10 * settings.clip_range
    stale = _update_without_moving(tiny_trajectories, drifted, settings)
    assert stale.first_ratio_error > 10 * settings.clip_range and stale.clip_fraction > 0.5

    fresh = recompute_log_probs(pipe.unet, schedule, embeddings, drifted, settings)
    assert fresh.shape == drifted.log_probs.shape
    aligned = Trajectory(drifted.latents, fresh, drifted.timesteps)
    assert log_prob_mismatch(pipe.unet, schedule, embeddings, aligned, settings, generator()) < 1e-5
    stats = _update_without_moving(tiny_trajectories, aligned, settings)
    assert stats.first_ratio_error < 1e-5
    assert stats.clip_fraction == 0.0
    assert not pipe.unet.training  # left in eval mode, as sampling expects it


def test_the_recompute_passes_the_unet_what_the_update_passes_it(tiny_trajectories):
    """The recompute runs the UNet in train mode with the update's batch shape (rows per pass, doubled for guidance).

    Half-precision kernels are chosen by shape, so the same shape is what makes the two agree on a
    GPU. Fails if the update changes how many stored steps it puts through the UNet at once (then
    ``update_pass_rows`` must follow it) or runs it in another mode.
    """
    pipe, params, schedule, embeddings, trajectory = tiny_trajectories
    settings = _settings()
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: seen.append((args[0].shape[0], module.training)))
    try:
        _update_without_moving(tiny_trajectories, trajectory, settings)
        in_update = set(seen)
        seen.clear()
        recompute_log_probs(pipe.unet, schedule, embeddings, trajectory, settings)
        in_recompute = set(seen)
    finally:
        hook.remove()
    assert max(in_update) == max(in_recompute) == (2 * update_pass_rows(settings, trajectory.latents.shape[-1] * trajectory.latents.shape[-2]), True)
    assert {training for _, training in in_update | in_recompute} == {True}


def test_later_steps_of_a_round_see_ratios_off_one_and_get_clipped(tiny_trajectories):
    """With a learning rate that moves the LoRA, the round's later optimizer steps see ratios beyond the clip range.

    The first step's ratios are all 1 (its parameters are the sampling ones), so any clipping comes
    from later steps: the update still constrains how far the policy moves in a round. Fails if the
    old log-probs are taken from the current parameters (ratio always 1, nothing ever clipped) or if
    the clip statistic is not counted.
    """
    pipe, params, schedule, embeddings, trajectory = tiny_trajectories
    start = [p.detach().clone() for p in params]
    settings = _settings(policy_batch=2, rows_per_pass=2, ppo_epochs=2)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1.0, -1.0])
    try:
        stats = policy_update(pipe.unet, params, torch.optim.Adam(params, lr=1e-2), schedule, embeddings, trajectory, advantages,
                              settings, torch.Generator().manual_seed(3))
    finally:
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
    assert stats.optimizer_steps == 8
    assert stats.first_ratio_error < 1e-5
    assert stats.clip_fraction > 0.2


def test_a_sample_past_the_clip_range_in_its_advantages_direction_adds_no_gradient(tiny_trajectories):
    """A sample whose ratio is already past the clip range the way its advantage pushes adds nothing to the LoRA's step.

    Sample 0 (advantage +1) gets ratio e^0.03 and sample 1 (advantage -1) e^-0.03 with a clip range of
    0.01: the step equals the one with their advantages set to 0. Pushed the other way, past the range
    against their advantages, they still pull the LoRA back (the pessimistic side of PPO's objective),
    so the step differs. Fails if the clip is dropped or applied on both sides, or if the ratio is
    taken against log-probs other than the stored ones (e.g. recomputed from the current parameters).
    """
    pipe, params, schedule, embeddings, trajectory = tiny_trajectories
    settings = _settings(clip_range=1e-2)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1.0, -1.0])

    def step(log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
        start = [p.detach().clone() for p in params]
        try:
            policy_update(pipe.unet, params, torch.optim.SGD(params, lr=1.0), schedule, embeddings,
                          Trajectory(trajectory.latents, log_probs, trajectory.timesteps), advantages, settings, torch.Generator().manual_seed(3))
            return torch.cat([(p.detach() - s).flatten() for p, s in zip(params, start)])
        finally:
            with torch.no_grad():
                for p, s in zip(params, start):
                    p.copy_(s)

    shift = torch.zeros_like(trajectory.log_probs)
    shift[0], shift[1] = -3 * settings.clip_range, 3 * settings.clip_range  # ratio e^{+0.03} for advantage +1, e^{-0.03} for -1
    without_them = step(trajectory.log_probs, advantages * torch.tensor([0.0, 0.0, 1, 1, 1, 1, 1, 1]))
    past_with = step(trajectory.log_probs + shift, advantages)
    past_against = step(trajectory.log_probs - shift, advantages)
    scale = float(without_them.abs().max())
    assert scale > 0
    torch.testing.assert_close(past_with, without_them, rtol=0, atol=1e-4 * scale)
    assert float((past_against - without_them).abs().max()) > 0.05 * scale


def test_session_aligns_drifted_old_log_probs_and_its_update_starts_at_ratio_one(tmp_path, tiny_config):
    """``HeroSession.align_old_log_probs`` recomputes the open round's old log-probs only when they drift from the
    update's path, records the mismatch before and after in the round's metrics, and the round's update then
    starts at ratio 1.

    On a CPU in float32 nothing drifts and nothing is recomputed; with 1e-3 planted on the kept trajectory it
    is recomputed (a cancel leaves it as it was). Fails if the recomputed log-probs are not the ones the update
    uses, if the threshold is ignored either way, or if the metrics are not stored.
    """
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        session.propose()
        kept = session._sampler.trajectory[1]
        clean = session.align_old_log_probs()
        assert clean["old_log_prob_recomputed"] == 0.0 and clean["old_log_prob_error"] < 1e-5
        assert session._sampler.trajectory[1] is kept

        drifted = _drifted(kept)
        session._sampler.trajectory = (0, drifted)
        with pytest.raises(StageCancelled):
            session.align_old_log_probs(should_stop=lambda: True)
        assert session._sampler.trajectory[1] is drifted
        aligned = session.align_old_log_probs()
        assert aligned["old_log_prob_recomputed"] == 1.0
        assert aligned["old_log_prob_error"] > 10 * tiny_config.clip_range
        assert aligned["old_log_prob_error_after"] < 1e-5

        label_batch(session, get_evaluator("redness"))
        session.submit()
        report = session.update()
        stored = session.store.metrics()[0]
    assert report.metrics["policy_first_ratio_error"] < 1e-5
    assert {k: stored[k] for k in aligned} == pytest.approx(aligned)


def test_an_update_aligns_a_round_not_aligned_while_labeling(tmp_path, tiny_config):
    """Guards the update's own check: where the precision calls for it (here bfloat16 on the CPU) and the round's
    old log-probs were not checked while the person labelled (a quick submit, a resumed round), the update checks them
    first and records the figure and its seconds; in float32 on the CPU it spends nothing on it (faults planted: no
    check in the update; a check in float32 on the CPU)."""
    with HeroSession.create(tmp_path / "half", tiny_config, dtype="bfloat16") as session:
        label_batch(session, get_evaluator("redness"))
        session.submit()
        report = session.update()
    assert "aligning" in report.seconds and "old_log_prob_error" in report.metrics
    assert report.metrics["policy_first_ratio_error"] < 1e-4
    with HeroSession.create(tmp_path / "full", tiny_config) as session:
        label_batch(session, get_evaluator("redness"))
        session.submit()
        report = session.update()
    assert "aligning" not in report.seconds and "old_log_prob_error" not in report.metrics
