"""Learning from submitted rounds: one round's update, and the checkpoints lost since the last whole one.

A lost or damaged checkpoint is learned again: the latest whole one is loaded and
each round after it is replayed from its stored noise and learned from its stored
labels, with the same seeds, so the rebuilt checkpoint equals the lost one (on one device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hero_engine.algorithm.learner import earlier_rounds, gather_feedback
from hero_engine.algorithm.sampling import Trajectory
from hero_engine.session.progress import NO_PROGRESS, StageProgress
from hero_engine.session.round_sampler import RoundSampler
from hero_engine.session.tuned_model import TunedModel
from hero_engine.storage.store import SessionStore


class Trainer:
    """Learns a session's submitted rounds into its tuned model, from the labels in its store."""

    def __init__(
        self, store: SessionStore, model: TunedModel, sampler: RoundSampler, notify: Callable[[str], None]
    ):
        self.store = store
        self.model = model
        self.sampler = sampler
        self._notify = notify  # tells the user (a checkpoint rebuilt)

    def ensure_policy(self, target: int | None) -> None:
        """Bring the in-memory LoRA, encoder and optimizers to round ``target``'s checkpoint (None: the initial state)."""
        self.model.load()
        target = -1 if target is None else target
        if self.model.policy_round == target:
            return
        loaded = self.model.load_latest_whole(target)
        for round_ in range(loaded + 1, target + 1):
            self._notify(f"rebuilding checkpoint {round_:04d} from round {round_}'s stored labels")
            trajectory = self.sampler.trajectory_of(round_, NO_PROGRESS)
            self.learn(round_, trajectory, NO_PROGRESS, {})
            self.model.save_checkpoint(round_, NO_PROGRESS)

    def learn(
        self, round_: int, trajectory: Trajectory, progress: StageProgress, seconds: dict[str, float]
    ) -> tuple[dict[str, float], list[float]]:
        """Representation learning, rewards and the policy update for one submitted round: (metrics, each image's reward)."""
        row = self.store.round(round_)
        images = self.store.images(round_)
        best = self.store.image(row.best_image_id)
        kept = None if best.round == round_ else self.sampler.round_tensors(best.round)["final"][best.idx]
        feedback = gather_feedback(
            trajectory.final_latents, [i.label for i in images], best.idx if best.round == round_ else None, kept,
            self.model.runtime.device, self._earlier_rounds(round_),
        )
        metrics, stage_seconds, rewards = self.model.learn(round_, feedback, trajectory, progress)
        seconds.update(stage_seconds)
        return metrics, rewards.tolist()

    def _earlier_rounds(self, round_: int) -> tuple[torch.Tensor, list[str | None]] | None:
        """The final latents and labels of the earlier rounds the encoder trains on besides ``round_`` (None: only this one)."""
        rounds = earlier_rounds(round_, self.model.config.encoder_rounds)
        if not rounds:
            return None
        finals = [self.sampler.round_tensors(r)["final"] for r in rounds]
        labels = [image.label for r in rounds for image in self.store.images(r)]
        return torch.cat(finals), labels
