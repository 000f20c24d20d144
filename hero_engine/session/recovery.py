"""What a session lost, made again: the one place that falls back, rebuilds and repairs.

Everything a session stores can be made again from its seeds and labels, exactly on one device:
- a round's tensors (initial noises, final latents), by sampling the round again from its seed
  with the policy of the round before;
- a round's PNGs, by decoding its stored final latents;
- a checkpoint, by loading the latest whole one before it and learning each round after it again
  from its stored noise and labels, with the same seeds.
Each time, the person is told what was lost and what was made again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hero_engine.algorithm.sampling import decode_images
from hero_engine.errors import HeroError
from hero_engine.session import checkpoints, round_files
from hero_engine.session.progress import NO_PROGRESS
from hero_engine.session.round_sampler import RoundSampler
from hero_engine.session.trainer import Trainer
from hero_engine.session.tuned_model import TunedModel
from hero_engine.storage.store import SessionStore

# What a checkpoint that cannot be loaded raises: a checksum or file error, or torch/safetensors refusing its contents.
CHECKPOINT_ERRORS = (HeroError, OSError, RuntimeError, ValueError, KeyError)


class Recovery:
    """Reads a session's stored rounds and checkpoints, and makes again whatever of them is missing or damaged."""

    def __init__(
        self, store: SessionStore, model: TunedModel, sampler: RoundSampler, trainer: Trainer, notify: Callable[[str], None]
    ):
        self.store = store
        self.model = model
        self.sampler = sampler
        self.trainer = trainer
        self._notify = notify  # tells the user what was rebuilt or fallen back from

    # a round's files ----------------------------------------------------------

    def round_tensors(self, round_: int) -> dict[str, torch.Tensor]:
        """The round's initial noises and final latents, checked against their checksum; rebuilt when damaged."""
        try:
            return round_files.read_round_tensors(self.store.round_dir(round_))
        except HeroError as exc:
            self._notify(f"round {round_}'s {round_files.TENSORS} is missing or damaged ({exc}); rebuilding it from the round's seed")
        return self._rebuild_round_tensors(round_)

    def _rebuild_round_tensors(self, round_: int) -> dict[str, torch.Tensor]:
        """Sample the round again as it was sampled: its seeded noise, with the policy of the round before (exact on one device)."""
        self.model.load()
        initial = self.sampler.initial_noise(round_)
        kept = self.model.policy_round
        if kept != round_ - 1:
            self.model.load_policy(round_ - 1)
        try:
            trajectory = self.sampler.sample_trajectory(round_, initial, NO_PROGRESS)
        finally:
            if kept != round_ - 1:
                self.model.load_policy(kept)
        tensors = {"noise": initial.contiguous(), "final": trajectory.final_latents.cpu().contiguous()}
        round_files.replace_round_tensors(self.store.round_dir(round_), tensors)
        return tensors

    def repair_images(self, round_: int) -> None:
        """Decode the round's missing or damaged PNGs again from its stored final latents."""
        folder = self.store.round_dir(round_)
        broken = round_files.broken_images(folder, self.store.folder, self.store.images(round_))
        if not broken:
            return
        self.model.load()
        final = self.round_tensors(round_)["final"]
        images = decode_images(self.model.pipe.vae, final[[idx for idx, _, _ in broken]])
        round_files.replace_images(folder, [name for _, name, _ in broken], images)
        self._notify(
            f"round {round_}: {len(broken)} image(s) missing or damaged ({broken[0][2]}"
            f"{', ...' if len(broken) > 1 else ''}); decoded again from the stored latents"
        )

    # checkpoints ----------------------------------------------------------------

    def ensure_policy(self, target: int | None) -> None:
        """Bring the in-memory LoRA, encoder and optimizers to round ``target``'s checkpoint (None: the initial state)."""
        self.model.load()
        target = -1 if target is None else target
        if self.model.policy_round == target:
            return
        loaded = self._load_latest_whole(target)
        for round_ in range(loaded + 1, target + 1):
            self._notify(f"rebuilding checkpoint {round_:04d} from round {round_}'s stored labels")
            trajectory = self.sampler.trajectory_of(round_, NO_PROGRESS)
            self.trainer.learn(round_, trajectory, NO_PROGRESS, {})
            self.model.save_checkpoint(round_, NO_PROGRESS)

    def _load_latest_whole(self, target: int) -> int:
        """Load the checkpoint of round ``target``, or of the latest round before it whose checkpoint is whole.

        Returns the round loaded (-1 when none is: the initial state); the rounds after it need their checkpoints rebuilt.
        """
        for candidate in range(target, -1, -1):
            try:
                checkpoints.load(self.model.learner, self.store.checkpoint_dir(candidate))
            except CHECKPOINT_ERRORS as exc:
                self._notify(f"checkpoint {candidate:04d} is missing or damaged ({exc}); falling back to the previous one")
                continue
            self.model.policy_round = candidate
            return candidate
        self.model.load_policy(-1)
        return -1
