"""What HERO trains, and one round of training it: encoder, rewards, then the LoRA policy update.

``Learner`` owns the trainable state (the UNet's LoRA parameters, the feedback
encoder, their optimizers and the float16 loss scaler). ``RoundFeedback`` is a
submitted round's labels as tensors, already on the learner's device: every
tensor read from disk or kept from sampling is moved there in ``gather_feedback``
and nowhere else, so no stage mixes devices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from hero_engine.algorithm import rewards
from hero_engine.algorithm.policy import PolicySettings, policy_update
from hero_engine.algorithm.representation import FeedbackEncoder, train_encoder
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    PromptEmbeddings,
    Trajectory,
    takes_added_conditioning,
)
from hero_engine.config import HeroConfig

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RoundFeedback:
    """One submitted round's labels as tensors on the learner's device."""

    final: torch.Tensor  # [n, C, h, w] final latents of the round's images, batch order
    best_latent: torch.Tensor  # [C, h, w] the best image's final latent (this round's or an earlier one's)
    good: torch.Tensor  # [n] bool: labeled good (the best included when it is in this round)
    positives: list[int]  # batch positions of the good images other than the best
    negatives: list[int]  # batch positions of the not-good images
    best_index: int | None  # batch position of the best, or None when an earlier round's best was kept
    earlier_good: torch.Tensor | None = None  # [k, C, h, w] earlier rounds' good final latents the encoder also trains on
    earlier_bad: torch.Tensor | None = None  # [m, C, h, w] earlier rounds' not-good final latents, likewise


RewardsOverride = Callable[[RoundFeedback], torch.Tensor]  # a round's feedback -> every image's reward, batch order


def gather_feedback(
    final: torch.Tensor, labels: list[str | None], best_index: int | None, kept_best_latent: torch.Tensor | None, device: torch.device,
    earlier: tuple[torch.Tensor, list[str | None]] | None = None,
) -> RoundFeedback:
    """Build a round's feedback from its final latents and labels, moved to ``device`` in this one place.

    ``best_index`` is the best's position in this batch; when the person kept an
    earlier round's best, it is None and ``kept_best_latent`` holds that image's latent.
    ``earlier`` is the final latents and labels of earlier rounds the encoder trains on as well.
    """
    final = final.to(device, torch.float32)
    if best_index is not None:
        best_latent = final[best_index]
    elif kept_best_latent is not None:
        best_latent = kept_best_latent.to(device, torch.float32)
    else:
        raise ValueError("a round's feedback needs a best image")
    good = torch.tensor([label == "good" for label in labels], device=device)
    positives = [i for i, label in enumerate(labels) if label == "good" and i != best_index]
    negatives = [i for i, label in enumerate(labels) if label != "good"]
    earlier_good = earlier_bad = None
    if earlier is not None:
        earlier_final, earlier_labels = earlier[0].to(device, torch.float32), earlier[1]
        earlier_good = earlier_final[[i for i, label in enumerate(earlier_labels) if label == "good"]]
        earlier_bad = earlier_final[[i for i, label in enumerate(earlier_labels) if label != "good"]]
    return RoundFeedback(final, best_latent, good, positives, negatives, best_index, earlier_good, earlier_bad)


def earlier_rounds(round_: int, encoder_rounds: int) -> range:
    """The earlier rounds whose labels the encoder trains on besides ``round_``'s: up to ``encoder_rounds`` - 1 before it."""
    return range(max(0, round_ - encoder_rounds + 1), round_)


def round_rewards(encoder: FeedbackEncoder, feedback: RoundFeedback, kind: str) -> torch.Tensor:
    """Every image's reward: similarity to the best (HERO), to the mean good image, or the binary label.

    Similarities use the encoder's backbone features; its projection head is only for training.
    """
    if kind == "binary":
        return rewards.binary_rewards(feedback.good)
    with torch.no_grad():
        features = encoder.features(feedback.final)
        if kind == "similarity":
            reference = encoder.features(feedback.best_latent.unsqueeze(0))[0]
        elif kind == "mean-good":
            reference = features[feedback.good].mean(0)
        else:
            raise ValueError(f"unknown reward kind {kind}")
        return rewards.similarity_rewards(features, reference)


class Learner:
    """The trainable state of a session and the learning step of one round."""

    def __init__(self, unet, params: list[torch.nn.Parameter], encoder: FeedbackEncoder, config: HeroConfig):
        self.unet = unet
        self.params = params
        self.encoder = encoder
        self.config = config
        self.device = unet.device
        self.rewards_override: RewardsOverride | None = None  # set: every round's rewards, in place of the encoder's (untrained then)
        self._initial_lora = [p.detach().clone() for p in params]
        self._initial_encoder = {k: v.clone() for k, v in encoder.state_dict().items()}
        self.new_optimizers()

    def new_optimizers(self) -> None:
        cfg = self.config
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.encoder_optimizer = self._new_encoder_optimizer()
        self.scaler = loss_scaler(self.unet.dtype, self.device)

    def reset(self) -> None:
        """Back to the state before any round: the initial LoRA and encoder, fresh optimizers."""
        with torch.no_grad():
            for p, init in zip(self.params, self._initial_lora):
                p.copy_(init)
        self.encoder.load_state_dict(self._initial_encoder)
        self.new_optimizers()

    def _new_encoder_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.encoder.parameters(), lr=self.config.encoder_lr)

    def _train_encoder(self, feedback: RoundFeedback, generator: torch.Generator, on_progress: Progress | None,
                       on_features: bool = False) -> list[float]:
        cfg = self.config
        good, bad = feedback.final[feedback.positives], feedback.final[feedback.negatives]
        if feedback.earlier_good is not None:
            good, bad = torch.cat([good, feedback.earlier_good]), torch.cat([bad, feedback.earlier_bad])
        return train_encoder(
            self.encoder, self.encoder_optimizer, feedback.best_latent, good, bad,
            epochs=cfg.encoder_epochs, triplets=cfg.encoder_triplets, margin=cfg.triplet_margin,
            generator=generator, on_progress=on_progress, on_features=on_features,
        )

    def fit_rewards(
        self, feedback: RoundFeedback, generator: torch.Generator, on_progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Train the encoder on the round's labels (unless rewards are binary or overridden) and give every image its reward.

        Returns the rewards (on the CPU) and the representation's metrics.
        """
        if self.rewards_override is not None:
            return self.rewards_override(feedback).cpu(), unset_representation_metrics()
        cfg = self.config
        metrics = unset_representation_metrics()
        if cfg.reward == "binary":
            return round_rewards(self.encoder, feedback, cfg.reward).cpu(), metrics
        good = feedback.good.cpu()
        # The encoder as earlier rounds left it, on images it has not trained on: whether what it
        # learned carries to new images, which the agreement after training on these labels cannot show.
        metrics["reward_label_agreement_unseen"] = rewards.label_agreement(round_rewards(self.encoder, feedback, cfg.reward).cpu(), good)
        losses = self._train_encoder(feedback, generator, on_progress)
        if encoder_stalled(losses, cfg.triplet_margin):
            # Adam's second moments, grown in an earlier round of large losses, shrink its steps so far
            # that embeddings gathered at one point stay there round after round: every reward ~1, the
            # policy's normalized advantages noise. A fresh optimizer state learns the round's labels.
            log.info("the feedback encoder's loss stayed at the margin; training it again with a fresh optimizer state")
            self.encoder_optimizer = self._new_encoder_optimizer()
            losses += self._train_encoder(feedback, generator, on_progress)
            metrics["encoder_restarted"] = 1.0
        reward = round_rewards(self.encoder, feedback, cfg.reward).cpu()
        if rewards.label_agreement(reward, good) < AGREEMENT_FLOOR:
            # The head separates the labels (its loss is often 0 by now), but the rewards are read from the
            # backbone, which earlier rounds shaped: training the head alone no longer moves it.
            log.info("the rewards ordered the round's labels below %.0f%%; training the encoder on them again with the "
                     "triplet loss on its features as well", 100 * AGREEMENT_FLOOR)
            losses += self._train_encoder(feedback, generator, on_progress, on_features=True)
            reward = round_rewards(self.encoder, feedback, cfg.reward).cpu()
            metrics["encoder_refit_features"] = 1.0
        metrics["encoder_loss_first"], metrics["encoder_loss_last"] = losses[0], losses[-1]
        return reward, metrics

    def learn(
        self,
        feedback: RoundFeedback,
        trajectory: Trajectory,
        schedule: DdimSchedule,
        embeddings: PromptEmbeddings,
        *,
        encoder_generator: torch.Generator,
        policy_generator: torch.Generator,
        on_encoder_progress: Progress | None = None,
        on_policy_progress: Progress | None = None,
    ) -> tuple[dict[str, float], dict[str, float], torch.Tensor]:
        """Representation learning, rewards and the policy update for one round: (metrics, seconds, each image's reward)."""
        cfg = self.config
        started = time.perf_counter()
        reward, representation = self.fit_rewards(feedback, encoder_generator, on_encoder_progress)
        advantages = rewards.normalized_advantages(reward, cfg.adv_clip)
        seconds = {"representation": time.perf_counter() - started}

        started = time.perf_counter()
        stats = policy_update(
            self.unet, self.params, self.optimizer, schedule, embeddings, trajectory, advantages,
            policy_settings(cfg, checkpointing=takes_added_conditioning(self.unet)), policy_generator, on_progress=on_policy_progress, scaler=self.scaler,
        )
        seconds["policy"] = time.perf_counter() - started
        good = feedback.good.cpu()
        metrics = {
            "good": int(good.sum()),
            "bad": int((~good).sum()),
            "reward_mean": float(reward.mean()),
            "reward_std": float(reward.std(unbiased=False)),
            "reward_good_mean": float(reward[good].mean()),
            "reward_bad_mean": float(reward[~good].mean()) if (~good).any() else float("nan"),
            "reward_best": float(reward[feedback.best_index]) if feedback.best_index is not None else float("nan"),
            "reward_label_agreement": rewards.label_agreement(reward, good),
            **representation,
            **{f"policy_{k}": float(v) for k, v in asdict(stats).items()},
        }
        return metrics, seconds, reward


def unset_representation_metrics() -> dict[str, float]:
    """The representation's metrics of a round whose rewards no encoder gave (binary or overridden rewards): NaN losses, nothing retrained."""
    return {"reward_label_agreement_unseen": float("nan"), "encoder_loss_first": float("nan"),
            "encoder_loss_last": float("nan"), "encoder_restarted": 0.0, "encoder_refit_features": 0.0}


AGREEMENT_FLOOR = 0.8  # share of a round's (good, bad) pairs its rewards must order as labeled, or the encoder trains again
STALL_WINDOW = 50  # triplet steps: fewer cannot tell a stalled encoder from a slow start


def encoder_stalled(losses: list[float], margin: float) -> bool:
    """Whether a round's triplet training ended where it stalls: the loss at the margin over its last steps.

    There every embedding sits at one point and tells no image from another; a
    healthy encoder ends well below the margin.
    """
    if margin <= 0 or len(losses) < STALL_WINDOW:
        return False
    tail = losses[-STALL_WINDOW:]
    return min(tail) >= margin * (1 - 1e-3)


def policy_settings(cfg: HeroConfig, checkpointing: bool = False) -> PolicySettings:
    """The policy update's settings; ``checkpointing`` for SDXL, whose UNet's activations at 1024 px for even a few
    rows a pass do not fit a 24 GB card beside the model."""
    return PolicySettings(
        train_timesteps=cfg.train_timesteps, policy_batch=cfg.policy_batch, rows_per_pass=cfg.train_batch,
        ppo_epochs=cfg.ppo_epochs, clip_range=cfg.clip_range, grad_clip=cfg.grad_clip, eta=cfg.eta, guidance=cfg.guidance,
        checkpointing=checkpointing,
    )


def loss_scaler(dtype: torch.dtype, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler when the frozen model is float16, else None.

    float16 has 5 exponent bits: without scaling, the small gradients that flow back
    through the frozen half-precision UNet to the float32 LoRA underflow to zero.
    bfloat16 and float32 have float32's range and need none.
    """
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.type, init_scale=2.0**16)
