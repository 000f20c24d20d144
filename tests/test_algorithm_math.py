"""The algorithm's math on hand-made tensors: DDIM log-probs, guided noise, triplets, rewards, PPO clip."""

import math

import pytest
import torch

from hero_engine.algorithm.noise import feedback_guided_noise, refine_noise
from hero_engine.algorithm.policy import ppo_clip_loss
from hero_engine.algorithm.representation import cosine_distance, triplet_loss
from hero_engine.algorithm.rewards import (
    binary_rewards,
    label_agreement,
    normalized_advantages,
    similarity_rewards,
)
from hero_engine.algorithm.sampling import DdimSchedule, ddim_step_with_logprob
from hero_engine.models.pipelines import SD15_SCHEDULER_CONFIG


@pytest.fixture(scope="module")
def schedule():
    return DdimSchedule.from_scheduler_config(SD15_SCHEDULER_CONFIG, 50)


def test_schedule_ends_with_positive_sigma(schedule):
    assert int(schedule.timesteps[-1]) == 1  # SD1.5: steps_offset=1, so the last step still has noise
    _, lp = ddim_step_with_logprob(schedule, torch.zeros(1, 4, 2, 2), schedule.timesteps[-1:], torch.zeros(1, 4, 2, 2), 1.0, noise=torch.randn(1, 4, 2, 2))
    assert torch.isfinite(lp).all()


def test_ddim_log_prob_matches_direct_gaussian(schedule):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=g)
    eps = torch.randn(3, 4, 5, 5, generator=g)
    t = schedule.timesteps[[0, 10, 30]]
    prev, lp = ddim_step_with_logprob(schedule, eps, t, x, 1.0, noise=torch.randn(3, 4, 5, 5, generator=g))
    for i in range(3):
        a_t = float(schedule.alphas_cumprod[t[i]])
        a_p = float(schedule.alphas_cumprod[t[i] - 20])
        x0 = (x[i] - math.sqrt(1 - a_t) * eps[i]) / math.sqrt(a_t)
        var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        mean = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p - var) * eps[i]
        direct = torch.distributions.Normal(mean.double(), math.sqrt(var)).log_prob(prev[i].double()).mean()
        assert float(lp[i]) == pytest.approx(float(direct), abs=1e-4)


def test_ddim_step_scores_a_given_sample_without_changing_it(schedule):
    x, eps, prev = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    out, lp = ddim_step_with_logprob(schedule, eps, schedule.timesteps[:2], x, 1.0, prev_sample=prev)
    assert torch.equal(out, prev)
    # a sample far from the mean is less likely than the mean itself
    mean, lp_mean = ddim_step_with_logprob(schedule, eps, schedule.timesteps[:2], x, 1.0, noise=torch.zeros(2, 4, 3, 3))
    assert (lp_mean > lp).all()


def test_refined_noise_keeps_unit_variance():
    g = torch.Generator().manual_seed(1)
    source = torch.randn(1, 4, 64, 64, generator=g).expand(200, -1, -1, -1)
    refined = refine_noise(source, 0.1, g)
    # each refined noise stays close to its source ...
    assert float((refined - math.sqrt(1 - 0.01) * source).std()) == pytest.approx(0.1, rel=0.02)
    # ... and over fresh sources the variance is 1
    fresh = refine_noise(torch.randn(200, 4, 16, 16, generator=g), 0.5, g)
    assert float(fresh.var()) == pytest.approx(1.0, abs=0.02)


def test_guided_noise_splits_between_best_and_good():
    g = torch.Generator().manual_seed(2)
    best = torch.full((4, 2, 2), 10.0)
    good = torch.stack([torch.full((4, 2, 2), -10.0), torch.full((4, 2, 2), 20.0)])
    out = feedback_guided_noise(best, good, 10, eps=0.0, best_ratio=0.3, generator=g)
    assert out.shape == (10, 4, 2, 2)
    assert torch.allclose(out[:3], best.expand(3, -1, -1, -1))
    assert all(float(o.mean()) in (-10.0, 20.0) for o in out[3:])


def test_cosine_distance_and_triplet_loss_on_hand_made_embeddings():
    a = torch.tensor([[1.0, 0.0]])
    same, orth, opposite = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[-1.0, 0.0]])
    assert float(cosine_distance(a, same)) == pytest.approx(0.0)
    assert float(cosine_distance(a, orth)) == pytest.approx(0.5)
    assert float(cosine_distance(a, opposite)) == pytest.approx(1.0)
    # positive identical, negative opposite: 0 - 1 + 0.5 < 0, so no loss
    assert float(triplet_loss(a, same, opposite, 0.5)) == pytest.approx(0.0)
    # positive orthogonal, negative identical: 0.5 - 0 + 0.5
    assert float(triplet_loss(a, orth, same, 0.5)) == pytest.approx(1.0)
    # the margin is read
    assert float(triplet_loss(a, orth, same, 0.2)) == pytest.approx(0.7)


def test_similarity_rewards_are_graded_in_unit_interval():
    ref = torch.tensor([1.0, 0.0])
    feats = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    r = similarity_rewards(feats, ref)
    assert r.tolist() == pytest.approx([1.0, (1 + math.sqrt(0.5)) / 2, 0.5, 0.0])
    assert binary_rewards(torch.tensor([True, False])).tolist() == [1.0, 0.0]


def test_advantages_are_normalized_and_clipped():
    adv = normalized_advantages(torch.tensor([0.0] * 99 + [1.0]), clip=5.0)
    assert float(adv.max()) == pytest.approx(5.0)
    adv = normalized_advantages(torch.tensor([1.0, 2.0, 3.0]), clip=5.0)
    assert float(adv.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(adv.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(normalized_advantages(torch.ones(4), 5.0), torch.zeros(4))


def test_ppo_clip_takes_the_pessimistic_side():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss, ratio = ppo_clip_loss(new, old, adv, clip_range=0.2)
    # positive advantage: ratio capped at 1.2; negative advantage with ratio 1.5: unclipped 1.5 is worse
    expected = [-1.2, 1.5, -0.5, 0.8]
    assert float(loss) == pytest.approx(sum(expected) / 4)
    assert ratio.tolist() == pytest.approx([1.5, 1.5, 0.5, 0.5])


def test_ppo_clip_gives_no_gradient_past_the_range_in_the_advantages_direction():
    """d loss / d log p_new is 0 for a ratio past the clip range the way its advantage pushes, else -A * ratio / n.

    Rows: past it with A > 0, past it with A < 0, past it against A > 0 and against A < 0, inside it.
    Fails if the clip is dropped, applied on both sides, or takes the optimistic side.
    """
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    new = torch.log(ratio).requires_grad_(True)
    loss, _ = ppo_clip_loss(new, torch.zeros(5), adv, clip_range=0.2)
    loss.backward()
    expected = [0.0, 0.0, -1.0 * 0.5 / 5, 1.0 * 1.5 / 5, -2.0 * 1.1 / 5]
    assert new.grad.tolist() == pytest.approx(expected)


def test_encoder_training_separates_good_from_bad_latents():
    from hero_engine.algorithm.representation import FeedbackEncoder, train_encoder

    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    encoder = FeedbackEncoder(embed_dim=16)
    direction = torch.randn(4, 8, 8, generator=g)
    best = direction + 0.1 * torch.randn(4, 8, 8, generator=g)
    good = direction + 0.3 * torch.randn(6, 4, 8, 8, generator=g)
    bad = -direction + 0.3 * torch.randn(6, 4, 8, 8, generator=g)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    losses = train_encoder(encoder, optimizer, best, good, bad, epochs=60, triplets=16, margin=0.5, generator=g)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        r_good = similarity_rewards(encoder.features(good), encoder.features(best.unsqueeze(0))[0])
        r_bad = similarity_rewards(encoder.features(bad), encoder.features(best.unsqueeze(0))[0])
    assert float(r_good.min()) > float(r_bad.max())


def test_global_pooling_sees_how_much_not_where():
    """Guards the encoder's "global" pooling: moving an object within the latent leaves its features unchanged,
    while "grid" pooling tells the two places apart (so the setting is not ignored or swapped)."""
    from hero_engine.algorithm.representation import FeedbackEncoder

    blob = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(5))
    left, right = torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16)
    # Shifted by a multiple of the backbone's total stride (4) and away from the zero-padded border,
    # so the convolutions see the same neighbourhoods in both places.
    left[0, :, 4:7, 4:7], right[0, :, 8:11, 8:11] = blob, blob
    with torch.no_grad():
        for pooling, same in (("global", True), ("grid", False)):
            torch.manual_seed(0)
            encoder = FeedbackEncoder(embed_dim=16, pooling=pooling)
            features = encoder.features(torch.cat([left, right]))
            assert torch.allclose(features[0], features[1], atol=1e-5) is same, pooling


def _policy_step_result(rows_per_pass: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """LoRA parameters before and after one policy update on a tiny model."""
    from engine_support import tiny_policy

    from hero_engine.algorithm.policy import PolicySettings, policy_update

    pipe, params, schedule, embeddings, trajectory = tiny_policy(6, lora_spread=0.01)
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=10.0)
    settings = PolicySettings(
        train_timesteps=2, policy_batch=4, rows_per_pass=rows_per_pass, ppo_epochs=1, clip_range=1.0, grad_clip=1e9, eta=1.0, guidance=5.0
    )
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0])
    stats = policy_update(pipe.unet, params, optimizer, schedule, embeddings, trajectory, advantages, settings, torch.Generator().manual_seed(3))
    assert stats.optimizer_steps == 2  # 6 trajectories in steps of 4: one full, one partial
    return before, [p.detach().clone() for p in params]


def test_train_batch_changes_memory_use_not_the_update():
    before, one_at_a_time = _policy_step_result(rows_per_pass=1)
    _, all_at_once = _policy_step_result(rows_per_pass=4)
    largest_change = max(float((a - b).abs().max()) for a, b in zip(one_at_a_time, before))
    assert largest_change > 1e-3
    for a, b, start in zip(one_at_a_time, all_at_once, before):
        torch.testing.assert_close(a - start, b - start, rtol=0, atol=largest_change * 1e-3)


def test_label_agreement_counts_pairs_ordered_as_labeled():
    good = torch.tensor([True, True, False, False])
    assert label_agreement(torch.tensor([0.9, 0.8, 0.1, 0.2]), good) == 1.0
    assert label_agreement(torch.tensor([0.1, 0.2, 0.9, 0.8]), good) == 0.0
    assert label_agreement(torch.tensor([0.9, 0.1, 0.5, 0.5]), good) == 0.5  # one good above both, one below
    assert label_agreement(torch.tensor([0.5, 0.5, 0.5, 0.5]), good) == 0.5  # ties count half
    assert math.isnan(label_agreement(torch.tensor([0.5, 0.5]), torch.tensor([True, True])))
