"""The model a session tunes: the loaded pipeline with its LoRA, the learner, and which checkpoint they equal.

``TunedModel.policy_round`` is the round whose checkpoint the in-memory LoRA,
encoder and optimizers equal (-1: the initial state; None: unknown, reload before
the next use).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from hero_engine.algorithm import seeds
from hero_engine.algorithm.learner import Learner
from hero_engine.algorithm.representation import FeedbackEncoder
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    decode_images,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.models import pipelines, weights_variant
from hero_engine.models.lora_merge import LoraMerge
from hero_engine.session import checkpoints
from hero_engine.session.progress import StageProgress
from hero_engine.storage.integrity import publish_folder
from hero_engine.storage.store import SESSION_FILE, SessionStore

log = logging.getLogger(__name__)


class TunedModel:
    """The pipeline, loaded on first use, and the trainable state HERO adds to it, kept at a round's checkpoint."""

    def __init__(
        self, config: HeroConfig, runtime: pipelines.Runtime, store: SessionStore, pipe=None
    ):
        self.config = config
        self.runtime = runtime
        self.store = store
        self.pipe = None
        self.policy_round: int | None = None  # round whose checkpoint the in-memory state equals (-1 = initial)
        self._loaded_pipe = pipe  # the pipeline create() loaded before the folder existed

    def load(self, on_download: Callable[[int, int], None] | None = None) -> None:
        """Load the pipeline on first use and add what HERO trains; learner, schedule, embeddings and vae_scale exist from then on.
        ``on_download``: told the bytes fetched so far, and of how many, while a hub model downloads."""
        if self.pipe is not None:
            return
        cfg = self.config
        log.info("loading model %s on %s (%s)", cfg.model, self.runtime.device, self.runtime.dtype)
        pipe = self._loaded_pipe or pipelines.load_pipeline(cfg.model, self.runtime, on_download, self.weights_variant())
        self._loaded_pipe = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds.seed(cfg.seed, -1, seeds.INIT))
            params = pipelines.add_lora(pipe.unet, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
            encoder = FeedbackEncoder(latent_channels=pipe.unet.config.in_channels, embed_dim=cfg.embed_dim,
                                      pooling=cfg.encoder_pooling).to(self.runtime.device)
        self.learner = Learner(pipe.unet, params, encoder, cfg)
        self.lora_merge = LoraMerge(pipe.unet)
        self.schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, cfg.steps)
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.pipe = pipe
        self.family = pipelines.model_family(pipe)
        self.store.record_model_family(self.family)
        # Once a session: SDXL's text encoders then stay off the GPU.
        self.embeddings = encode_prompt(pipe, cfg.prompt, cfg.negative_prompt, size=self.image_size())

    def weights_variant(self) -> str:
        """Which of the model's weight files the session loads: the ones it was started with, or, at its first load,
        those ``weights_variant.choose`` picks for this runtime (kept before they are loaded)."""
        variant = self.store.weights_variant()
        if variant is None:
            # a session whose rounds were drawn before variants were kept loaded the default files
            variant = weights_variant.DEFAULT if self.store.rounds() else weights_variant.choose(
                self.config.model, self.runtime.half_precision)
            self.store.record_weights_variant(variant)
        if variant not in weights_variant.VARIANTS:
            raise HeroError(f"{self.store.folder / SESSION_FILE} is damaged: weights_variant {variant!r} is not one of "
                            f"{', '.join(weights_variant.VARIANTS)}")
        return variant

    def latent_shape(self) -> tuple[int, int, int]:
        unet = self.pipe.unet
        side = self.config.resolution // self.vae_scale if self.config.resolution else unet.config.sample_size
        return (unet.config.in_channels, side, side)

    def image_size(self) -> tuple[int, int]:
        """(height, width) of the session's images in pixels: SDXL's size ids say it to the UNet."""
        side = self.latent_shape()[1] * self.vae_scale
        return (side, side)

    def sample_images(self, prompt: str, initial: torch.Tensor, generator: torch.Generator, base: bool = False,
                      on_progress: Callable[[int, int], None] | None = None) -> list:
        """Images the tuned model (with ``base``, the base model: the LoRA switched off) makes for ``prompt`` from ``initial``;
        ``on_progress`` hears the image-steps denoised so far, of all the images' steps."""
        cfg = self.config
        embeddings = encode_prompt(self.pipe, prompt, cfg.negative_prompt, size=self.image_size())
        with self.without_lora() if base else self.merged_for_sampling():
            traj = sample_trajectories(
                self.pipe.unet, self.schedule, embeddings, initial,
                eta=cfg.eta, guidance=cfg.guidance, generator=generator, chunk=cfg.sample_batch, on_progress=on_progress,
            )
        return decode_images(self.pipe.vae, traj.final_latents, chunk=cfg.sample_batch)

    def merged_for_sampling(self) -> AbstractContextManager:
        """The LoRA merged into the UNet while sampling (base weights restored bit for bit on leaving).

        Merged weights round once more to the base precision, which moves a round's log-probs,
        PPO's old log-probs: on a CPU in float32 by about 1e-6, in bfloat16 by far more than the
        clip range. Where ``old_log_probs.aligns`` says so, the session checks them against the
        update's path, and recomputes the steps the update trains, before the update reads them.
        """
        return self.lora_merge.merged()

    @contextmanager
    def without_lora(self) -> Iterator[None]:
        """The base model: the UNet's LoRA layers pass their input to the base layers alone until the block ends."""
        self.pipe.unet.disable_adapters()
        try:
            yield
        finally:
            self.pipe.unet.enable_adapters()

    # the policy's round -------------------------------------------------------

    def forget_policy(self) -> None:
        """Mark the in-memory state as unknown (part-trained, or lost to an error): it is reloaded before the next use."""
        self.policy_round = None

    def ensure_policy_at(self, round_: int) -> None:
        if self.policy_round != round_:
            raise HeroError(f"internal state is at round {self.policy_round}, expected {round_}")

    def load_policy(self, round_: int | None) -> None:
        """Load round ``round_``'s checkpoint (-1: the initial state; None: nothing, reload before the next use)."""
        if round_ is None:
            pass
        elif round_ == -1:
            self.learner.reset()
        else:
            checkpoints.load(self.learner, self.store.checkpoint_dir(round_))
        self.policy_round = round_

    def save_checkpoint(self, round_: int, progress: StageProgress) -> None:
        report = progress.stage("saving")
        report(0, 2)
        tmp = self.store.temp_dir("checkpoints")
        checkpoints.write(self.learner, tmp, round_)
        report(1, 2)
        publish_folder(tmp, self.store.checkpoint_dir(round_))
        self.policy_round = round_
        report(2, 2)
