"""Learning from a submitted round: its feedback gathered from the store, then the learner's three stages with the round's seeds."""

from __future__ import annotations

import torch

from hero_engine.algorithm import seeds
from hero_engine.algorithm.learner import earlier_rounds, gather_feedback
from hero_engine.algorithm.sampling import Trajectory
from hero_engine.session.progress import StageProgress
from hero_engine.session.round_sampler import RoundTensors
from hero_engine.session.tuned_model import TunedModel
from hero_engine.storage.store import SessionStore


class Trainer:
    """Learns a session's submitted rounds into its tuned model, from the labels in its store."""

    def __init__(self, store: SessionStore, model: TunedModel, round_tensors: RoundTensors):
        self.store = store
        self.model = model
        self.round_tensors = round_tensors

    def learn(
        self, round_: int, trajectory: Trajectory, progress: StageProgress, seconds: dict[str, float]
    ) -> tuple[dict[str, float], list[float]]:
        """Representation learning, rewards and the policy update for one submitted round: (metrics, each image's reward)."""
        model, seed = self.model, self.model.config.seed
        row = self.store.round(round_)
        images = self.store.images(round_)
        best = self.store.image(row.best_image_id)
        kept = None if best.round == round_ else self.round_tensors(best.round)["final"][best.idx]
        feedback = gather_feedback(
            trajectory.final_latents, [i.label for i in images], best.idx if best.round == round_ else None, kept,
            model.runtime.device, self._earlier_rounds(round_),
        )
        metrics, stage_seconds, rewards = model.learner.learn(
            feedback, trajectory, model.schedule, model.embeddings,
            encoder_generator=seeds.generator(seed, round_, seeds.ENCODER),
            policy_generator=seeds.generator(seed, round_, seeds.POLICY),
            on_encoder_progress=progress.stage("representation"), on_policy_progress=progress.stage("policy"),
        )
        seconds.update(stage_seconds)
        return metrics, rewards.tolist()

    def _earlier_rounds(self, round_: int) -> tuple[torch.Tensor, list[str | None]] | None:
        """The final latents and labels of the earlier rounds the encoder trains on besides ``round_`` (None: only this one)."""
        rounds = earlier_rounds(round_, self.model.config.encoder_rounds)
        if not rounds:
            return None
        finals = [self.round_tensors(r)["final"] for r in rounds]
        labels = [image.label for r in rounds for image in self.store.images(r)]
        return torch.cat(finals), labels
