"""A round's images as sampled: its seeded initial noise, its trajectory, and its stored files kept whole.

The rounds it reads (for feedback-guided noise, for a trajectory sampled again) come
through ``RoundTensors``, which the session's recovery provides: checked, and rebuilt when damaged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from hero_engine.algorithm import noise, seeds
from hero_engine.algorithm.chunks import chunk_ranges
from hero_engine.algorithm.sampling import (
    StepCounter,
    Trajectory,
    decode_images,
    draw_step_noise,
    join_trajectories,
    sample_chunk,
    sample_trajectories,
)
from hero_engine.config import HeroConfig
from hero_engine.session import round_files
from hero_engine.session.progress import StageProgress
from hero_engine.session.tuned_model import TunedModel
from hero_engine.storage.store import ImageRow, SessionStore

log = logging.getLogger(__name__)

ChunkStored = Callable[[list[ImageRow]], None]  # a chunk's image rows, once they are in hero.db
RoundTensors = Callable[[int], dict[str, torch.Tensor]]  # a stored round's "noise" and "final" latents


class RoundSampler:
    """Samples a session's rounds with its tuned model, and stores them a chunk at a time."""

    def __init__(self, config: HeroConfig, store: SessionStore, model: TunedModel, round_tensors: RoundTensors):
        self.config = config
        self.store = store
        self.model = model
        self.round_tensors = round_tensors
        self.trajectory: tuple[int, Trajectory] | None = None  # the last round sampled or replayed, for its update

    def initial_noise(self, round_: int) -> torch.Tensor:
        gen = seeds.generator(self.config.seed, round_, seeds.NOISE)
        n = self.config.batch_size
        if round_ == 0 or not self.config.guided_noise:
            return noise.plain_noise(n, self.model.latent_shape(), gen)
        return self.guided_noise(round_ - 1, n, gen)

    def guided_noise(self, source_round: int, n: int, gen: torch.Generator) -> torch.Tensor:
        """Noise around the best and good images of ``source_round``."""
        row = self.store.round(source_round)
        best = self.store.image(row.best_image_id)
        good_idx = [i.idx for i in self.store.images(source_round) if i.label == "good"]
        noises = self.round_tensors(source_round)["noise"]
        best_noise = (noises if best.round == source_round else self.round_tensors(best.round)["noise"])[best.idx]
        return noise.feedback_guided_noise(
            best_noise, noises[good_idx], n, eps=self.config.noise_eps, best_ratio=self.config.best_ratio, generator=gen
        )

    def sample_trajectory(self, round_: int, initial: torch.Tensor, progress: StageProgress) -> Trajectory:
        """The whole round's trajectory from ``initial``, in the same chunks as sample_round draws it (reported as the
        "replay" stage: the round's images are drawn already)."""
        model = self.model
        drawn = progress.stage("replay")
        drawn(0, initial.shape[0] * len(model.schedule.timesteps))  # the stage's start, which a front end times it from
        with model.merged_for_sampling():
            return sample_trajectories(
                model.pipe.unet, model.schedule, model.embeddings, initial,
                eta=self.config.eta, guidance=self.config.guidance, generator=seeds.generator(self.config.seed, round_, seeds.STEPS),
                chunk=self.config.sample_batch, on_progress=drawn, short_first=True,
            )

    def sample_round(self, round_: int, progress: StageProgress, on_chunk: ChunkStored | None = None) -> None:
        """Sample the round with the policy in memory (the caller brings it to the round before), a chunk at a time.

        Each chunk is decoded and stored (files, then its rows in hero.db) before the next is drawn, and
        ``on_chunk`` gets its rows, so a front end can show the images while the rest are drawn. A round
        stopped part-way continues from the chunks already stored (``on_chunk`` gets those first) and gives
        the images an uninterrupted round would: the noise of every position is drawn as for the whole round.
        """
        cfg, model = self.config, self.model
        n = cfg.batch_size
        if self.store.round(round_) is None:
            self.store.open_round(round_, n)
        folder = self.store.round_dir(round_)
        stored = {row.idx: row for row in self.store.images(round_)}
        finals = round_files.stored_chunk_finals(folder, set(stored)) if stored else {}
        if stored and on_chunk:
            on_chunk(list(stored.values()))
        initial = self.initial_noise(round_)
        steps = len(model.schedule.timesteps)
        step_noise = draw_step_noise(seeds.generator(cfg.seed, round_, seeds.STEPS), steps, initial)
        counter = StepCounter(n * steps, progress.stage("sampling"), done=len(finals) * steps)
        counter(0)  # the stage's start, which a front end times it from
        drawn_whole = not finals  # every chunk sampled here, in its own batch: the trajectory is the round's
        parts = []
        for positions in chunk_ranges(n, cfg.sample_batch, short_first=True):
            idxs = [i for i in positions if i not in finals]
            if not idxs:
                continue
            with model.merged_for_sampling():  # weights restored before the chunk is stored
                part = sample_chunk(model.pipe.unet, model.schedule, model.embeddings, initial[idxs], step_noise[:, idxs],
                                    eta=cfg.eta, guidance=cfg.guidance, on_step=counter)
            images = decode_images(model.pipe.vae, part.final_latents, chunk=len(idxs))
            paths = round_files.write_chunk(self.store, round_, idxs, images, initial[idxs], part.final_latents)
            new = [(idx, path) for idx, path in paths if idx not in stored]  # a stored image rebuilt keeps its row
            self.store.add_images(round_, new)
            finals.update((idx, final) for idx, final in zip(idxs, part.final_latents.cpu()))
            parts.append(part)
            if on_chunk and new:
                added = {row.idx: row for row in self.store.images(round_)}
                on_chunk([added[idx] for idx, _ in new])
        final = torch.stack([finals[idx] for idx in range(n)])
        round_files.finish_round(folder, initial, final)
        # A round drawn whole keeps its trajectory for its update; one continued from stored chunks is replayed then.
        self.trajectory = (round_, join_trajectories(parts)) if drawn_whole else None
        log.info("round %d sampled: %d images", round_, n)

    def kept_trajectory(self, round_: int) -> Trajectory | None:
        """The trajectory kept from sampling or replaying ``round_``, or None."""
        return self.trajectory[1] if self.trajectory is not None and self.trajectory[0] == round_ else None

    def keep(self, round_: int, trajectory: Trajectory) -> None:
        """Keep ``trajectory`` as the round's (its old log-probs recomputed) for the round's update."""
        self.trajectory = (round_, trajectory)

    def release(self) -> None:
        """Let the kept trajectory's latents leave memory (once its round is learned, before the next is drawn)."""
        self.trajectory = None

    def trajectory_of(self, round_: int, progress: StageProgress) -> Trajectory:
        """The round's trajectory: kept from sampling, or re-sampled from its stored noise (same seed, same policy)."""
        kept = self.kept_trajectory(round_)
        if kept is not None:
            return kept
        self.model.ensure_policy_at(round_ - 1)
        stored_tensors = self.round_tensors(round_)
        trajectory = self.sample_trajectory(round_, stored_tensors["noise"], progress)
        stored = stored_tensors["final"]
        drift = float((trajectory.final_latents.cpu() - stored).abs().max())
        if drift > 1e-3:
            log.warning("re-sampled round %d differs from its stored latents by %.2e (different device or precision?)", round_, drift)
        self.trajectory = (round_, trajectory)
        return trajectory
