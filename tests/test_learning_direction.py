"""The direction of learning: tests that tell learning from anti-learning.

Each test names, in its docstring, the faults it catches: a flipped advantage
sign, rewards misaligned with trajectories, the wrong latent as the best, the
initial noise fed to the encoder, the head used for rewards, optimizer state
lost between rounds, the next round sampled without the LoRA, guided noise
drawn around the wrong image. Each was planted by hand and made its test fail.
"""

import copy
import math

import numpy as np
import pytest
import torch
from engine_support import run_rounds, tiny_policy
from safetensors.torch import load_file

from hero_engine.algorithm import learner as learner_module
from hero_engine.algorithm.learner import Learner, RoundFeedback, round_rewards
from hero_engine.algorithm.policy import PolicySettings, policy_update
from hero_engine.algorithm.representation import FeedbackEncoder
from hero_engine.algorithm.rewards import label_agreement, similarity_rewards
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    ddim_step_with_logprob,
    encode_prompt,
    predict_noise,
    sample_trajectories,
)
from hero_engine.config import HeroConfig
from hero_engine.evaluation.evaluators import get_evaluator
from hero_engine.models.pipelines import (
    SD15_SCHEDULER_CONFIG,
    add_lora,
    build_tiny_pipeline,
)
from hero_engine.session.hero_session import HeroSession

# the DDIM step --------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_step_matches_diffusers_scheduler_step(prediction_type):
    """Our per-sample DDIM step equals diffusers' DDIMScheduler.step given the same variance noise.

    Guards the step math that sampling and the policy update share (x0, the mean, sigma with eta).
    """
    from diffusers import DDIMScheduler

    config = {**SD15_SCHEDULER_CONFIG, "prediction_type": prediction_type}
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(20)
    schedule = DdimSchedule.from_scheduler_config(config, 20)
    g = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps[[0, 7, 19]]:
        sample, output, noise = (torch.randn(2, 4, 6, 6, generator=g) for _ in range(3))
        expected = scheduler.step(output, t, sample, eta=1.0, variance_noise=noise).prev_sample
        ours, _ = ddim_step_with_logprob(schedule, output, torch.full((2,), int(t)), sample, 1.0, noise=noise)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


# the policy update ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_trajectories():
    return tiny_policy(8, lora_spread=0.05)


def _log_probs(pipe, schedule, embeddings, trajectory) -> torch.Tensor:
    """Mean log-prob of each stored trajectory under the current policy."""
    n, steps = trajectory.log_probs.shape
    cond, uncond = embeddings.expand(n)
    total = torch.zeros(n)
    with torch.no_grad():
        for i in range(steps):
            t = trajectory.timesteps[i].expand(n)
            eps = predict_noise(pipe.unet, trajectory.latents[:, i], t, cond, uncond, 5.0)
            _, lp = ddim_step_with_logprob(schedule, eps, t, trajectory.latents[:, i], 1.0, prev_sample=trajectory.latents[:, i + 1])
            total += lp
    return total / steps


def test_policy_step_raises_log_probs_of_positive_advantages_and_lowers_negative(tiny_trajectories):
    """One optimizer step makes trajectories with positive advantage likelier and negative ones less likely:
    each positive one gains more log-probability than any negative one.

    Advantages differ in sign without pairing, so the test fails if the advantage sign is flipped
    (in the loss or before it) or if advantages are read in a different order than the shuffled
    trajectories they belong to.
    """
    pipe, params, schedule, embeddings, trajectory = tiny_trajectories
    start = [p.detach().clone() for p in params]
    before = _log_probs(pipe, schedule, embeddings, trajectory)
    advantages = torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0])
    settings = PolicySettings(train_timesteps=4, policy_batch=8, rows_per_pass=8, ppo_epochs=1, clip_range=1.0, grad_clip=1e9, eta=1.0, guidance=5.0)
    try:
        policy_update(pipe.unet, params, torch.optim.SGD(params, lr=0.05), schedule, embeddings, trajectory, advantages,
                      settings, torch.Generator().manual_seed(3))
        change = _log_probs(pipe, schedule, embeddings, trajectory) - before
    finally:
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
    rising, falling = change[advantages > 0], change[advantages < 0]
    # shared weights move every trajectory a little alike; what the advantages decide is the order
    assert float(rising.min()) > float(falling.max()), change
    assert float(rising.mean()) > 0 > float(falling.mean()), change


def test_float16_model_gives_the_float32_lora_gradient():
    """With the frozen UNet in float16 (as on older GPUs), the LoRA gradient matches float32's.

    Guards the dynamic loss scaling: without it, the small gradients that flow back through the
    half-precision UNet underflow and the LoRA would train on noise (here: cosine 0.86, 20% of
    the entries exactly zero). Emulated on the CPU; advantages of 1e-3 stand in for the much
    smaller per-element gradients of a full-size UNet at 64x64 latents, out of a CPU test's reach.
    """
    reference = build_tiny_pipeline(torch.float32)
    schedule = DdimSchedule.from_scheduler_config(reference.scheduler.config, 4)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(4, 4, 16, 16, generator=gen)
    embeddings = encode_prompt(reference, "a hand")
    trajectory = sample_trajectories(reference.unet, schedule, embeddings, noise, eta=1.0, guidance=5.0, generator=gen, chunk=4)
    grads = {}
    for dtype in (torch.float32, torch.float16):
        pipe = build_tiny_pipeline(dtype)
        torch.manual_seed(0)
        params = add_lora(pipe.unet, 4, 4.0)
        with torch.no_grad():
            for p in params:
                p.copy_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        recorder = _GradientRecorder(params)
        settings = PolicySettings(train_timesteps=1, policy_batch=4, rows_per_pass=4, ppo_epochs=1, clip_range=1.0, grad_clip=1e9, eta=1.0, guidance=5.0)
        policy_update(pipe.unet, params, recorder, schedule, encode_prompt(pipe, "a hand"), trajectory, 1e-3 * torch.tensor([1.0, -0.5, 0.25, -0.75]),
                      settings, torch.Generator().manual_seed(2), scaler=learner_module.loss_scaler(dtype, pipe.unet.device))
        grads[dtype] = recorder.gradient
    cosine = torch.nn.functional.cosine_similarity(grads[torch.float32], grads[torch.float16], dim=0)
    assert float(cosine) >= 0.99
    assert float((grads[torch.float16] == 0).float().mean()) < 0.01


class _GradientRecorder(torch.optim.Optimizer):
    """An optimizer that changes nothing and keeps the (unscaled, clipped) gradient it is stepped with."""

    def __init__(self, params):
        super().__init__(params, {})
        self.gradient = None

    def step(self, closure=None):
        self.gradient = torch.cat([p.grad.detach().float().flatten() for g in self.param_groups for p in g["params"]])


# rewards and the encoder's inputs ---------------------------------------------


def test_rewards_use_the_backbone_not_the_projection_head():
    """Similarity rewards compare backbone features; the projection head only serves the triplet loss.

    Fails if rewards are computed from the encoder's output (head) instead of its features.
    """
    torch.manual_seed(0)
    encoder = FeedbackEncoder(embed_dim=16)
    final = torch.randn(6, 4, 8, 8)
    feedback = RoundFeedback(final, final[2], torch.tensor([0, 1, 1, 0, 0, 0], dtype=torch.bool), [1], [0, 3, 4, 5], 2)
    got = round_rewards(encoder, feedback, "similarity")
    with torch.no_grad():
        from_backbone = similarity_rewards(encoder.features(final), encoder.features(final[2:3])[0])
        from_head = similarity_rewards(encoder(final), encoder(final[2:3])[0])
    torch.testing.assert_close(got, from_backbone)
    assert not torch.allclose(from_backbone, from_head, atol=1e-3)  # the two differ, so the check above means something
    assert float(got[2]) == pytest.approx(1.0)


@pytest.mark.parametrize("encoder_rounds", [1, 2])
def test_encoder_trains_on_final_latents_with_the_best_as_anchor(tmp_path, tiny_config, monkeypatch, encoder_rounds):
    """The encoder sees the round's stored final latents: anchor = the best, positives = other good, negatives = the rest.

    Checked in a round whose best is new and in one that keeps the previous best. Fails if the
    encoder is fed the initial noise or intermediate latents, if the best is read at a wrong index
    or from the wrong round, if the best is among the positives, or if the margin is not the
    configured one. With ``encoder_rounds`` 2 the second round's positives and negatives also hold
    the first round's good and not-good latents; fails if earlier rounds are left out where asked
    for, added where not, or split by the wrong labels.
    """
    calls = []
    learning = [0]  # the round being learned: a round may train the encoder more than once (a restart, a refit)
    real = learner_module.train_encoder

    def spy(encoder, optimizer, best, good, bad, **kwargs):
        calls.append((learning[0], best.clone(), good.clone(), bad.clone(), kwargs["margin"]))
        return real(encoder, optimizer, best, good, bad, **kwargs)

    monkeypatch.setattr(learner_module, "train_encoder", spy)
    config = tiny_config.replace(triplet_margin=0.3, encoder_rounds=encoder_rounds)
    with HeroSession.create(tmp_path / "s", config) as session:
        run_rounds(session, 1)
        batch = session.propose()
        session.choose_best(batch.previous_best.id)  # keep round 0's best
        session.label(batch.images[1].id, True)
        session.label(batch.images[4].id, True)
        session.submit()
        learning[0] = 1
        session.update()
        rows = {r: session.store.images(r) for r in (0, 1)}
        best0 = session.store.round(0).best_image_id
    final = {r: load_file(tmp_path / "s" / "rounds" / f"{r:04d}" / "tensors.safetensors")["final"] for r in (0, 1)}
    best_idx = next(i.idx for i in rows[0] if i.id == best0)
    for round_, best, good, bad, margin in calls:
        torch.testing.assert_close(best, final[0][best_idx], rtol=0, atol=0)
        good_idx = [i.idx for i in rows[round_] if i.label == "good" and i.id != best0]
        bad_idx = [i.idx for i in rows[round_] if i.label != "good"]
        expected_good, expected_bad = final[round_][good_idx], final[round_][bad_idx]
        if round_ == 1 and encoder_rounds == 2:
            expected_good = torch.cat([expected_good, final[0][[i.idx for i in rows[0] if i.label == "good"]]])
            expected_bad = torch.cat([expected_bad, final[0][[i.idx for i in rows[0] if i.label != "good"]]])
        torch.testing.assert_close(good, expected_good, rtol=0, atol=0)
        torch.testing.assert_close(bad, expected_bad, rtol=0, atol=0)
        assert margin == 0.3
    assert {call[0] for call in calls} == {0, 1} and sorted(good_idx) == [1, 4]  # the last call learns round 1


def test_best_image_gets_the_top_reward_and_the_first_encoder_loss_shows_the_margin(tmp_path, tiny_config):
    """In a session, the best image's reward is exactly 1 (it is its own reference) and round 0's first
    triplet loss is about the margin (an untrained encoder does not yet separate good from bad).

    Fails if the reference latent is not the best's, or if the session does not pass its margin on.
    """
    for margin in (0.5, 0.2):
        config = tiny_config.replace(triplet_margin=margin, encoder_epochs=1)
        with HeroSession.create(tmp_path / f"m{margin}", config) as session:
            report = run_rounds(session, 1)[0]
        assert report.metrics["reward_best"] == pytest.approx(1.0, abs=1e-5)
        assert report.metrics["encoder_loss_first"] == pytest.approx(margin, abs=0.1)


def test_round_report_gives_each_image_its_reward_in_batch_order(tmp_path, tiny_config):
    """``RoundReport.rewards`` (what the benchmark ranks against the judge) holds one reward per image, in the
    order of the round's images: the best's is its top reward of exactly 1, and the good and not-good images'
    means are the round's metrics. Fails if the rewards are reordered, or taken from another round or encoder.
    """
    with HeroSession.create(tmp_path / "s", tiny_config.replace(encoder_epochs=2)) as session:
        report = run_rounds(session, 1)[0]
        rows = session.store.images(0)
        best = session.store.image(session.store.round(0).best_image_id)
    assert [row.idx for row in rows] == list(range(tiny_config.batch_size)) == list(range(len(report.rewards)))
    assert report.rewards[best.idx] == pytest.approx(report.metrics["reward_best"], abs=1e-6)
    assert report.rewards[best.idx] == pytest.approx(1.0, abs=1e-5)
    good = [r for r, row in zip(report.rewards, rows) if row.label == "good"]
    bad = [r for r, row in zip(report.rewards, rows) if row.label != "good"]
    assert sum(good) / len(good) == pytest.approx(report.metrics["reward_good_mean"], abs=1e-6)
    assert sum(bad) / len(bad) == pytest.approx(report.metrics["reward_bad_mean"], abs=1e-6)


# across rounds ---------------------------------------------------------------


def test_guided_noise_is_drawn_around_the_stored_noise_of_the_best_and_good_images(tmp_path, tiny_config):
    """Each next-round noise z is sqrt(1 - eps^2) * source + eps * xi around the stored noise of the
    best image (the first half) or of a good one (the rest): (z - sqrt(1 - eps^2) * source) / eps
    has unit spread for the true source and about 2.6 for any other noise.

    Checked after a round with a new best and after one that keeps the previous best. Fails if
    guided noise is drawn around a wrong image (wrong index, wrong round, a bad one), or with a
    wrong mixing formula.
    """
    eps = 0.5
    config = tiny_config.replace(noise_eps=eps, best_ratio=0.5)
    with HeroSession.create(tmp_path / "s", config) as session:
        run_rounds(session, 1)
        batch = session.propose()
        session.choose_best(batch.previous_best.id)  # round 1 keeps round 0's best
        session.label(batch.images[2].id, True)
        session.submit()
        session.update()
        rows = {r: session.store.images(r) for r in (0, 1)}
        best = session.store.image(session.store.round(0).best_image_id)
    noise = {r: load_file(tmp_path / "s" / "rounds" / f"{r:04d}" / "tensors.safetensors")["noise"] for r in (0, 1, 2)}

    def spread(z, source):
        return float(((z - math.sqrt(1 - eps**2) * source) / eps).std())

    n_best = round(0.5 * tiny_config.batch_size)
    for round_ in (1, 2):
        source = round_ - 1
        good = [noise[source][i.idx] for i in rows[source] if i.label == "good"]
        for i, z in enumerate(noise[round_]):
            nearest = spread(z, noise[0][best.idx]) if i < n_best else min(spread(z, g) for g in good)
            assert nearest == pytest.approx(1.0, abs=0.1), (round_, i, nearest)


def _round_feedback(latents: torch.Tensor, good_positions: list[int]) -> RoundFeedback:
    """A round whose first image is the best, with the good ones at ``good_positions``."""
    good = torch.zeros(len(latents), dtype=torch.bool)
    good[good_positions] = True
    return RoundFeedback(latents, latents[0], good, [i for i in good_positions if i], [i for i in range(len(latents)) if not good[i]], 0)


def test_rewards_order_the_labels_after_earlier_rounds_shaped_the_encoder_otherwise():
    """The rewards the learner gives order a round's labels at 0.8 or more even when earlier rounds
    taught the encoder the opposite.

    Two rounds mark the same 16 near-duplicate latents good at 1-7; the third marks 8-10 good instead.
    Trained through the projection head alone, the head learns the new labels while the backbone,
    which rewards are read from, still orders them the old way: the learner then trains the encoder on
    the round again with the triplet loss on the backbone features. Fails if that second training is
    skipped, its loss is taken on the head's output again, or the rewards are not recomputed after it.
    """
    pipe = build_tiny_pipeline()
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 4, 16, 16, generator=g) + 0.3 * torch.randn(16, 4, 16, 16, generator=g)
    first, then = _round_feedback(latents, list(range(8))), _round_feedback(latents, [0, 8, 9, 10])
    torch.manual_seed(2)
    encoder = FeedbackEncoder()
    config = HeroConfig(prompt="x", model="tiny", encoder_epochs=300, encoder_triplets=32, encoder_lr=3e-5)
    learner = Learner(pipe.unet, add_lora(pipe.unet, 4, 4.0), encoder, config)
    for feedback in (first, first):
        learner.fit_rewards(feedback, torch.Generator().manual_seed(1))
    reward, metrics = learner.fit_rewards(then, torch.Generator().manual_seed(1))
    assert metrics["encoder_refit_features"] == 1.0  # the case this guards happened
    assert label_agreement(reward, then.good) >= 0.8


def test_optimizer_state_carries_across_rounds(tmp_path, tiny_config):
    """Adam's moments and step counts build up over rounds: round 1's checkpoint holds both rounds' steps.

    Fails if either optimizer is rebuilt (its state lost) at the start of a round.
    """
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        reports = run_rounds(session, 2)
    state = torch.load(tmp_path / "s" / "checkpoints" / "0001" / "optimizers.pt", weights_only=True)
    policy_steps = sum(int(r.metrics["policy_optimizer_steps"]) for r in reports)
    assert {float(s["step"]) for s in state["policy"]["state"].values()} == {float(policy_steps)}
    assert not any(r.metrics["encoder_restarted"] for r in reports)  # a restart begins a fresh state
    encoder_trainings = sum(1 + int(r.metrics["encoder_refit_features"]) for r in reports)  # a refit goes on with it
    assert {float(s["step"]) for s in state["encoder"]["state"].values()} == {float(encoder_trainings * tiny_config.encoder_epochs)}


def test_a_stalled_encoder_learns_the_round_again_with_a_fresh_optimizer_state(tmp_path, tiny_config):
    """An encoder stuck at the triplet margin learns the round's labels again, with a fresh optimizer state.

    The stuck state is the one measured on ``hand``: embeddings at one point, and Adam's second moments
    grown in an earlier round of large losses, so its steps are too small to leave; its rewards are then
    all alike (agreement about 0.5) for the rest of the session. Fails if the stall goes unnoticed or the
    encoder trains again with its old optimizer state.
    """
    config = tiny_config.replace(encoder_epochs=learner_module.STALL_WINDOW + 30, encoder_lr=1e-3)
    with HeroSession.create(tmp_path / "s", config) as session:
        run_rounds(session, 1)  # gives the encoder's optimizer its state
        learner = session._model.learner
        learner.encoder.load_state_dict(learner._initial_encoder)  # a fresh encoder's embeddings nearly coincide
        for state in learner.encoder_optimizer.state.values():
            state["exp_avg"].zero_()
            state["exp_avg_sq"].fill_(1e6)
        report = run_rounds(session, 1)[0]
    assert report.metrics["encoder_restarted"] == 1.0
    assert report.metrics["encoder_loss_last"] < 0.9 * config.triplet_margin
    assert report.metrics["reward_label_agreement"] >= 0.8


def test_unseen_agreement_is_the_encoder_before_it_learns_the_round(tmp_path, tiny_config):
    """``reward_label_agreement_unseen`` orders a round's labels with the encoder as the earlier rounds left
    it: how far the learned representation carries to new images (the plain agreement is measured after
    training on those very labels). Fails if it is measured after the round's encoder training, or with
    another encoder (the initial one, a later one).
    """
    config = tiny_config.replace(encoder_epochs=60, encoder_lr=1e-3)
    with HeroSession.create(tmp_path / "s", config) as session:
        run_rounds(session, 1)
        left_by_round_0 = copy.deepcopy(session._model.learner.encoder)
        report = run_rounds(session, 1)[0]
        rows = session.store.images(1)
        best = session.store.image(session.store.round(1).best_image_id)
    final = {r: load_file(tmp_path / "s" / "rounds" / f"{r:04d}" / "tensors.safetensors")["final"] for r in (0, 1)}
    good = torch.tensor([row.label == "good" for row in rows])
    feedback = RoundFeedback(final[1], final[best.round][best.idx], good, [], [], None)
    expected = label_agreement(round_rewards(left_by_round_0, feedback, "similarity"), good)
    trained = report.metrics["reward_label_agreement"]
    assert report.metrics["reward_label_agreement_unseen"] == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(trained, abs=1e-6), "the round must tell the two encoders apart"


def test_encoder_stall_is_the_loss_at_the_margin_to_the_end():
    """The stall test: the loss at the margin over the last STALL_WINDOW steps, and only then.

    Fails if a short or still-falling run is called stalled (a healthy encoder would lose its optimizer state).
    """
    window = learner_module.STALL_WINDOW
    assert learner_module.encoder_stalled([0.88] * 10 + [0.4999] * window, 0.5)
    assert not learner_module.encoder_stalled([0.4999] * (window - 1), 0.5)  # too few steps to tell
    assert not learner_module.encoder_stalled([0.4999] * window + [0.49], 0.5)
    assert not learner_module.encoder_stalled([0.5] * window, 0.0)


def test_the_tuned_model_gets_redder_and_rounds_are_sampled_from_it(tmp_path, tiny_config):
    """End to end: four rounds labeled by the redness evaluator make plain-noise images redder.

    The measure is the mean redness of 24 held-out images from plain noise, the tuned model's
    own transfer. Fails if the advantage sign is flipped anywhere, if the policy update does not
    run, or if the rewards ignore the labels. In every round the first PPO ratio is 1 (sampling and
    training agree), which fails if a round is sampled with the LoRA disabled or another precision.
    With the adapters disabled the same held-out noise gives back the untuned score exactly, so the
    rise is the LoRA's doing.
    """
    judge = get_evaluator("redness")
    config = tiny_config.replace(
        prompt="a flower", batch_size=12, steps=8, train_timesteps=8, encoder_epochs=20, encoder_triplets=16,
        sample_batch=12, train_batch=12, policy_batch=4, lr=1e-2, clip_range=1e-2, guided_noise=False,
    )

    def redness(session) -> float:
        return float(np.mean([judge.score(im) for im in session.sample(None, 24, seed=999)]))

    with HeroSession.create(tmp_path / "s", config) as session:
        base = redness(session)
        reports = run_rounds(session, 4)
        tuned = redness(session)
        session._model.pipe.unet.disable_adapters()
        try:
            without_lora = redness(session)
        finally:
            session._model.pipe.unet.enable_adapters()
    assert tuned > base + 0.01, (base, tuned)
    assert without_lora == pytest.approx(base, abs=1e-6)
    for report in reports:
        assert report.metrics["policy_first_ratio_error"] < 1e-4
        assert report.metrics["reward_label_agreement"] > 0.8
    assert math.isfinite(reports[-1].mean_reward)
