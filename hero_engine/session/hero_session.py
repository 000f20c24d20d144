"""HeroSession: the HERO round loop as one object that any front end drives.

    session = HeroSession.create(folder, HeroConfig(prompt="hand"))
    batch = session.propose()                 # this round's images (sampled on first call)
    session.label(image_id, good=True)        # persisted at once
    session.choose_best(image_id)
    session.submit()                          # closes the round's feedback
    report = session.update(on_progress)      # learn, checkpoint, sample the next round

Every random draw comes from a generator seeded by (seed, round, purpose), and a
checkpoint holds the LoRA, the encoder and both optimizers, so a session
reopened in a new process continues exactly as an uninterrupted one would.

The session keeps the round API and the order of its steps. ``TunedModel`` holds
the model and which checkpoint it is at, ``RoundSampler`` samples rounds and keeps
their files whole, and ``Trainer`` learns submitted rounds (lost checkpoints again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path

from hero_engine import cpu_threads
from hero_engine.algorithm import noise, old_log_probs, seeds
from hero_engine.algorithm.learner import policy_settings
from hero_engine.algorithm.policy import planned_steps, training_plan
from hero_engine.config import AUTO_MODEL, DEFAULT_HUB_MODEL, MEMORY_FIELDS, HeroConfig
from hero_engine.errors import HeroError
from hero_engine.feedback_rules import FeedbackChange, label_of, submit_problem
from hero_engine.models import lora_export, model_configs, pipelines, weights_variant
from hero_engine.session import checkpoints, round_files
from hero_engine.session.memory_guard import guard
from hero_engine.session.progress import STAGES, ProgressFn, StageProgress
from hero_engine.session.recovery import Recovery
from hero_engine.session.round_sampler import RoundSampler
from hero_engine.session.round_types import Batch, ImageInfo, RoundReport
from hero_engine.session.trainer import Trainer
from hero_engine.session.tuned_model import TunedModel
from hero_engine.storage.integrity import (
    CHOOSE_ANOTHER_OUT,
    check_output_folder,
    write_failure,
)
from hero_engine.storage.labels import read_round_feedback, record_feedback
from hero_engine.storage.lock import SessionLock
from hero_engine.storage.store import SessionStore, given_settings

__all__ = ["STAGES", "Batch", "HeroSession", "ImageInfo", "ImagesStored", "ProgressFn", "RoundReport"]  # what front ends import

ImagesStored = Callable[[int, list[ImageInfo], int], None]  # (round, a chunk's new images, the round's size)

log = logging.getLogger(__name__)


class HeroSession:
    """One person's HERO session, stored in a folder and owned by one process at a time."""

    def __init__(self, store: SessionStore, config: HeroConfig, runtime: pipelines.Runtime, lock: SessionLock, pipe=None):
        """``pipe``: the pipeline create() loaded before the folder existed (else loaded on first use)."""
        self.store = store
        self.config = config
        self.runtime = runtime
        self._lock = lock
        self.notices: list[str] = []  # things the user should hear about (e.g. a checkpoint fallback)
        if config.model == AUTO_MODEL:
            self._choose_model()
        self._model = TunedModel(self.config, runtime, store, pipe)
        round_tensors = self._round_tensors  # the sampler and the trainer read stored rounds through the recovery
        self._sampler = RoundSampler(self.config, store, self._model, round_tensors)
        self._trainer = Trainer(store, self._model, round_tensors)
        self._recovery = Recovery(store, self._model, self._sampler, self._trainer, self._notice)
        self._aligned = None  # the kept trajectory whose old log-probs were last checked against the update's path

    # opening ----------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, config: HeroConfig, device: str | None = None, dtype: str | None = None,
               given: Collection[str] = (), on_progress: ProgressFn | None = None) -> HeroSession:
        """Create a session; ``given`` names the settings the person set, which the model's own defaults never replace.
        ``on_progress`` hears the model's loading (and a hub model's download) as the "loading" stage."""
        config.validate()
        runtime = pipelines.Runtime.resolve(device, dtype)
        folder = Path(folder)
        SessionStore.check_new(folder)
        cpu_threads.use_cpu_threads()
        model = cls._auto_model(runtime) if config.model == AUTO_MODEL else config.model
        # The model is loaded before the folder exists: one that cannot be found or loaded leaves no
        # dead session behind (which would become the "most recent" one).
        progress = StageProgress(on_progress, None)
        report = progress.stage("loading")
        report(0, 1)
        variant = weights_variant.choose(model, runtime.half_precision)
        pipe = pipelines.load_pipeline(model, runtime, progress.downloaded, variant)
        report(1, 1)
        config = config.for_model(model, given, pipelines.model_family(pipe))
        config.validate()
        folder.mkdir(parents=True, exist_ok=True)
        lock = SessionLock(folder)
        lock.acquire()
        try:
            store = SessionStore.create(folder, config, weights_variant=variant)
        except BaseException:
            lock.release()
            raise
        return cls(store, config, runtime, lock, pipe)

    @classmethod
    def open(
        cls, folder: Path, device: str | None = None, dtype: str | None = None, memory: dict | None = None
    ) -> HeroSession:
        """Open a stored session; ``memory`` may change the settings in MEMORY_FIELDS for this process."""
        folder = Path(folder)
        _, config = SessionStore.read_header(folder)
        fixed = sorted(set(memory or {}) - MEMORY_FIELDS)
        if fixed:
            raise HeroError(f"a session keeps its settings; only {', '.join(sorted(MEMORY_FIELDS))} may change when continuing")
        config = config.replace(**(memory or {}))
        config.validate()
        runtime = pipelines.Runtime.resolve(device, dtype)
        cpu_threads.use_cpu_threads()
        lock = SessionLock(folder)
        lock.acquire()
        try:
            store = SessionStore(folder)
            store.remove_stale_temp()
        except BaseException:
            lock.release()
            raise
        return cls(store, config, runtime, lock)

    def close(self) -> None:
        self.store.close()
        self._lock.release()

    def __enter__(self) -> HeroSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def folder(self) -> Path:
        return self.store.folder

    # the round API ----------------------------------------------------------

    @property
    def current_round(self) -> int:
        rounds = self.store.rounds()
        if not rounds:
            return 0
        last = rounds[-1]
        return last.round + 1 if last.updated_at is not None else last.round

    def propose(
        self, on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
        on_images: ImagesStored | None = None,
    ) -> Batch:
        """The current round's batch, sampling it first if it is not all there yet. Idempotent.

        ``on_images(round, images, size)`` gets each chunk of images as it is stored, so a front end can show
        them while the rest are drawn; a round stopped part-way continues, and its stored images come first.
        """
        round_ = self.current_round
        if self._needs_sampling(round_):
            progress = StageProgress(on_progress, should_stop)
            self._guard("sampling", lambda: self._sample_round(round_, progress, on_images))
        else:
            self._guard("sampling", lambda: self._recovery.repair_images(round_))
        return self.batch(round_)

    def batch(self, round_: int) -> Batch:
        row = self.store.round(round_)
        if row is None:
            raise HeroError(f"round {round_} has no images yet")
        images = [ImageInfo.from_row(r, self.folder) for r in self.store.images(round_)]
        return Batch(
            round=round_,
            prompt=self.config.prompt,
            images=images,
            best_id=row.best_image_id,
            previous_best=self.previous_best(round_),
            submitted=row.submitted_at is not None,
            size=row.size if row.size is not None else len(images),
        )

    def previous_best(self, round_: int) -> ImageInfo | None:
        """The best after the round before ``round_`` (None in round 0)."""
        prev = self.store.round(round_ - 1) if round_ > 0 else None
        best_row = self.store.image(prev.best_image_id) if prev and prev.best_image_id else None
        return ImageInfo.from_row(best_row, self.folder) if best_row else None

    def label(self, image_id: int, good: bool | None) -> None:
        """Mark an image of the open round good (True), bad (False), or unlabeled (None), under HERO's rules."""
        image = self._open_round_image(image_id)
        record_feedback(self.store, image.round, [FeedbackChange("label", image_id, label_of(good))])

    def choose_best(self, image_id: int | None) -> None:
        """Choose the best: an image of the open round, or (after round 0) the previous best, to keep it.

        None clears the round's choice (an undo); the image keeps its good label.
        """
        record_feedback(self.store, self.current_round, [FeedbackChange("best", image_id)])

    def submit(self) -> None:
        """Close the open round's feedback; unlabeled images count as bad."""
        round_ = self.current_round
        row = self.store.round(round_)
        if row is None:
            raise HeroError("there is no batch to submit yet")
        if row.submitted_at is not None:
            return
        self.feedback_problem(round_, raise_error=True)
        self.store.submit_round(round_)
        log.info("round %d submitted", round_)

    def feedback_problem(self, round_: int, raise_error: bool = False) -> str | None:
        """Why the round's feedback is not yet enough for HERO, or None when it is."""
        problem = submit_problem(read_round_feedback(self.store, round_), coming=self.store.images_coming(round_),
                                 size=self.store.round(round_).size)
        if problem and raise_error:
            raise HeroError(f"round {round_} cannot be submitted yet: {problem}")
        return problem

    def update(
        self, on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None, sample_next: bool = True,
        on_images: ImagesStored | None = None,
    ) -> RoundReport:
        """Learn from the submitted round, checkpoint, and sample the next round's batch (its chunks go to ``on_images``).

        With ``sample_next=False`` the next batch is left to the next ``propose()`` (for a caller that reports the
        learning before the next images come, or stops here).
        """
        round_ = self.current_round
        row = self.store.round(round_)
        if row is None or row.submitted_at is None:
            raise HeroError(f"round {round_} has not been submitted yet")
        progress = StageProgress(on_progress, should_stop)
        seconds: dict[str, float] = {}
        cpu_threads.use_cpu_threads()  # chosen again: what else runs may have changed while the person labelled
        self._load_model(progress)
        self._guard("loading", self._ensure_policy)
        started = time.perf_counter()
        replays = self._sampler.kept_trajectory(round_) is None  # a round this process did not draw (resumed)
        trajectory = self._guard("sampling", lambda: self._sampler.trajectory_of(round_, progress))
        if replays:
            seconds["replay"] = time.perf_counter() - started
        if old_log_probs.aligns(self.runtime) and trajectory is not self._aligned:
            started = time.perf_counter()  # not done while the person labelled (a resumed round, or a quick submit)
            self.align_old_log_probs(should_stop)
            trajectory = self._sampler.kept_trajectory(round_)
            seconds["aligning"] = time.perf_counter() - started
        try:
            metrics, rewards = self._guard("learning", lambda: self._trainer.learn(round_, trajectory, progress, seconds))
            started = time.perf_counter()
            self._guard("saving", lambda: self._model.save_checkpoint(round_, progress))
            seconds["saving"] = time.perf_counter() - started
        except BaseException:
            self._model.forget_policy()  # in-memory weights are part-trained: reload before the next use
            raise
        # The round's metrics are stored with its checkpoint, so a kill during the next sampling keeps them.
        self.store.put_metrics(round_, {**metrics, **{f"seconds_{k}": v for k, v in seconds.items()}})
        stored = self.store.metrics().get(round_, {})
        metrics.update({name: stored[name] for name in old_log_probs.METRICS if name in stored})  # aligned while labeling
        self.store.mark_updated(round_)
        trajectory = None
        self._sampler.release()  # the learned round's latents leave memory before the next are drawn
        if sample_next:
            seconds.update(self._guard("sampling", lambda: self._sample_round(round_ + 1, progress, on_images)))
        metrics.update({f"seconds_{k}": v for k, v in seconds.items()})
        return RoundReport(
            round=round_,
            good=int(metrics["good"]),
            bad=int(metrics["bad"]),
            labels_total=self.store.label_count(),
            mean_reward=metrics["reward_mean"],
            seconds=seconds,
            metrics=metrics,
            rewards=rewards,
        )

    # export and free sampling -----------------------------------------------

    def latest_checkpoint(self) -> int | None:
        updated = [r.round for r in self.store.rounds() if r.updated_at is not None]
        return updated[-1] if updated else None

    def export(self, path: Path, format: str = lora_export.DEFAULT_FORMAT) -> Path:
        """Write the tuned LoRA (``lora_export.FORMATS``; default both diffusers and kohya); return the first file written.

        ``path`` is a .safetensors file or a folder; ``export_files`` returns every file.
        """
        return self.export_files(path, format)[0]

    def export_files(self, path: Path, format: str = lora_export.DEFAULT_FORMAT) -> list[Path]:
        round_ = self.latest_checkpoint()
        if round_ is None:
            raise HeroError("nothing to export yet: finish at least one round (label, submit, update)")
        check_export_target(Path(path), format)  # an unknown format or a place it cannot be written fails before any work
        try:
            checkpoints.verify(self.store.checkpoint_dir(round_))
        except HeroError:
            self._model.forget_policy()  # whatever is in memory: reload, fall back to an earlier checkpoint and rebuild this one
            self._ensure_policy()
        checkpoints.read_lora(self.store.checkpoint_dir(round_))  # checksum again, and refuses non-finite weights
        source = self.store.checkpoint_dir(round_) / "lora" / pipelines.LORA_WEIGHT_NAME
        cfg = self.config
        family = self.store.model_family()
        info = lora_export.LoraInfo(rank=cfg.lora_rank, alpha=cfg.lora_alpha, base_model=cfg.model, prompt=cfg.prompt,
                                    round=round_, targets=cfg.lora_targets, family=family)
        try:
            return lora_export.export_lora(source, Path(path), format, info)
        except HeroError:
            raise
        except Exception as exc:  # OSError, or safetensors' own error type, for a place that cannot be written
            for target in lora_export.export_paths(Path(path), format).values():
                with contextlib.suppress(OSError):
                    target.with_name(f".{target.name}.tmp").unlink()
            raise HeroError(f"cannot write the LoRA to {path} ({write_failure(exc)}): {CHOOSE_ANOTHER_OUT}") from None

    def model_family(self) -> str:
        """What the session's model is (model_configs.FAMILIES): as recorded at its first load, else as its files or
        name tell without loading it; '' where neither tells."""
        return self.store.model_family() or model_configs.known_family(self.config.model) or ""

    def sample(self, prompt: str | None, n: int, use_refined_noise: bool = False, seed: int | None = None,
               base_model: bool = False, on_progress: ProgressFn | None = None) -> list:
        """``n`` images from the tuned model, from plain noise or from noise refined around the good images.

        With ``base_model`` the base model draws them, the LoRA switched off: the same ``seed`` gives it the
        same initial noise and step noise as the tuned model, so the two can be compared image by image.
        ``on_progress`` hears the model's loading (and download), then "sampling" in image-steps: 0, then
        after each denoising step, up to ``n`` times the steps.
        """
        if n < 1:
            raise HeroError("ask for at least one image")
        progress = StageProgress(on_progress, None)
        self._load_model(progress)
        drawn = progress.stage("sampling")
        drawn(0, n * self._steps())
        return self._draw(prompt, n, use_refined_noise, seed, base_model, drawn)

    def _steps(self) -> int:
        """Denoising steps an image takes: what the sampling's progress counts, an image's steps at a time."""
        return len(self._model.schedule.timesteps)

    def _draw(self, prompt: str | None, n: int, use_refined_noise: bool, seed: int | None, base_model: bool,
              on_progress: Callable[[int, int], None] | None = None) -> list:
        self._ensure_policy()
        prompt = prompt or self.config.prompt
        seed = self.config.seed if seed is None else seed
        gen = seeds.generator(seed, -1, seeds.SAMPLE)
        shape = self._model.latent_shape()
        if use_refined_noise:
            last = self.latest_checkpoint()
            if last is None:
                raise HeroError("refined noise needs at least one finished round")
            initial = self._sampler.guided_noise(last, n, gen)
        else:
            initial = noise.plain_noise(n, shape, gen)
        return self._model.sample_images(prompt, initial, gen, base=base_model, on_progress=on_progress)

    def sample_against_base(self, n: int, seed: int | None = None, on_progress: ProgressFn | None = None,
                            should_stop: Callable[[], bool] | None = None) -> tuple[int, list, list]:
        """``n`` images from the tuned model and ``n`` from the base model, pair by pair from the same noise:
        (the round whose LoRA drew the tuned ones, tuned images, base images). ``on_progress`` hears the model's
        loading, then "sampling" in image-steps, the tuned model's then the base model's, up to twice ``n`` times
        the steps; ``should_stop`` is asked at each step (StageCancelled)."""
        round_ = self.latest_checkpoint()
        if round_ is None:
            raise HeroError("no round has been learned from yet, so the LoRA still draws what the base model draws")
        if n < 1:
            raise HeroError("ask for at least one image")
        seed = self.config.seed if seed is None else seed
        progress = StageProgress(on_progress, should_stop)
        self._load_model(progress)
        drawn = progress.stage("sampling")
        half = n * self._steps()
        drawn(0, 2 * half)
        tuned = self._draw(None, n, False, seed, base_model=False, on_progress=lambda done, _: drawn(done, 2 * half))
        base = self._draw(None, n, False, seed, base_model=True, on_progress=lambda done, _: drawn(half + done, 2 * half))
        return round_, tuned, base

    # idle time: while the person labels ---------------------------------------

    def replay_open_round(self, should_stop: Callable[[], bool] | None = None) -> bool:
        """Draw the open round's steps again from its stored noise, loading the model first; for idle time.

        The update learns from the steps that drew a round, which only the process that drew it
        holds: a round drawn by an earlier process (a resumed session's) is replayed before its
        update, a whole round's sampling time, unless it was replayed while the person labeled.
        False when there is nothing to replay (the steps are kept, or the round is not all stored).
        A stop raises StageCancelled, and the update replays the round then.
        """
        round_ = self.current_round
        if self._needs_sampling(round_) or self._sampler.kept_trajectory(round_) is not None:
            return False
        progress = StageProgress(None, should_stop)  # nobody is shown this work: the person is labeling
        self._load_model(progress)
        self._guard("loading", self._ensure_policy)
        self._guard("sampling", lambda: self._sampler.trajectory_of(round_, progress))
        log.info("round %d replayed from its stored noise while it was labeled", round_)
        return True

    # the old log-probs of PPO's ratio ------------------------------------------

    def align_old_log_probs(self, should_stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
        """Bring the open round's stored log-probs to the policy update's path when they drift from it; for idle time.

        Sampling and the update run the UNet in other modes and batch shapes; in half
        precision their log-probs may differ by more than the clip range, and the update
        would then clip every sample; and rounds are drawn with the LoRA merged into the weights,
        which moves them too. The update's plan (which stored steps it trains) is drawn from its
        own seed; the mismatch is measured on a few of those steps, and above a tenth of the clip
        range each of them is recomputed through the update's path. The round's metrics get the
        mismatch before and after. None when no trajectory of the open round is kept, or when it
        was aligned already. ``update`` aligns a round not aligned before where
        ``old_log_probs.aligns`` says the precision needs it.
        """
        round_ = self.current_round
        trajectory = self._sampler.kept_trajectory(round_)
        if trajectory is None or trajectory is self._aligned:
            return None
        self._guard("loading", self._ensure_policy)  # the policy the round was sampled with
        model, settings, cfg = self._model, policy_settings(self.config), self.config
        parts = (model.pipe.unet, model.schedule, model.embeddings)
        n, steps = trajectory.log_probs.shape
        # The update's own plan, drawn from its own seed: the stored steps it will read, and only those.
        plan = training_plan(seeds.generator(cfg.seed, round_, seeds.POLICY), n, steps, cfg.train_timesteps, cfg.ppo_epochs)
        trained = planned_steps(plan)

        def mismatch(trajectory) -> float:
            generator = seeds.generator(cfg.seed, round_, seeds.ALIGN)  # the same steps before and after
            return old_log_probs.log_prob_mismatch(*parts, trajectory, settings, generator, among=trained)

        before = self._guard("aligning", lambda: mismatch(trajectory))
        after, recomputed = before, before > cfg.clip_range / 10
        if recomputed:
            on_pass = StageProgress(None, should_stop).stage("aligning")
            fresh = self._guard("aligning", lambda: old_log_probs.recompute_log_probs(*parts, trajectory, settings, on_pass, trained))
            trajectory = dataclasses.replace(trajectory, log_probs=fresh)
            self._sampler.keep(round_, trajectory)
            after = self._guard("aligning", lambda: mismatch(trajectory))
            log.info("round %d: old log-probs off the update's path by %.2e; the %d steps it trains recomputed (now %.2e)",
                     round_, before, trained.shape[1], after)
        metrics = dict(zip(old_log_probs.METRICS, (before, after, float(recomputed))))
        self.store.put_metrics(round_, metrics)
        self._aligned = trajectory
        return metrics

    # internals ----------------------------------------------------------------

    @staticmethod
    def _auto_model(runtime: pipelines.Runtime) -> str:
        return DEFAULT_HUB_MODEL if runtime.device.type == "cuda" else "demo"

    def _choose_model(self) -> None:
        """Resolve --model auto once, and save the choice so the session keeps its model wherever it resumes."""
        on_cuda = self.runtime.device.type == "cuda"
        model = self._auto_model(self.runtime)
        info, _ = SessionStore.read_header(self.store.folder)
        self.config = self.config.replace(model=model).for_model(model, given_settings(info), model_configs.known_family(model))  # before any round: its defaults still apply
        self.store.write_config(self.config)
        if not on_cuda:
            self.notices.append(
                "no CUDA device: using the built-in demo model (small, trained on drawings); "
                "pass --model with a hub id, a diffusers folder or a .safetensors file for a real checkpoint"
            )

    def _load_model(self, progress: StageProgress) -> None:
        """Load the model if this process has not yet, as the "loading" stage: a stop asked meanwhile is named after it."""
        if self._model.pipe is not None:
            return
        report = progress.stage("loading")
        report(0, 1)
        self._guard("loading", partial(self._model.load, progress.downloaded))
        report(1, 1)

    def _ensure_policy(self) -> None:
        """Bring the in-memory LoRA, encoder and optimizers to the last finished round's checkpoint."""
        self._recovery.ensure_policy(self.latest_checkpoint())

    def _round_tensors(self, round_: int):
        return self._recovery.round_tensors(round_)

    def _needs_sampling(self, round_: int) -> bool:
        """The round is not stored yet, or not all of it: images still to draw, or its chunks still to join."""
        if self.store.round(round_) is None or self.store.images_coming(round_):
            return True
        folder = self.store.round_dir(round_)
        return not round_files.is_finished(folder) and any(folder.glob(round_files.CHUNK_PATTERN))

    def _sample_round(self, round_: int, progress: StageProgress, on_images: ImagesStored | None = None) -> dict[str, float]:
        """Sample (or finish) the round; its seconds, to the first new images and in all, go to the learned round's metrics."""
        self._load_model(progress)
        self._ensure_policy()
        started = time.perf_counter()
        fresh = self.store.round(round_) is None
        seconds: dict[str, float] = {}
        size = self.config.batch_size

        def stored(rows) -> None:
            seconds.setdefault("first_images", time.perf_counter() - started)
            if on_images:
                on_images(round_, [ImageInfo.from_row(row, self.folder) for row in rows], size)

        self._sampler.sample_round(round_, progress, stored)
        seconds["sampling"] = time.perf_counter() - started
        if fresh and round_ > 0:  # a round continued after a stop has no whole figure
            self.store.put_metrics(round_ - 1, {f"seconds_{k}": v for k, v in seconds.items()})
        return seconds

    def _guard(self, stage: str, work: Callable):
        """Run a stage; out of memory becomes a one-line error, and the in-memory policy is reloaded before its next use."""
        return guard(stage, work, self._model.forget_policy)

    def _notice(self, message: str) -> None:
        log.warning(message)
        self.notices.append(message)

    def _open_round_image(self, image_id: int):
        image = self.store.image(image_id)
        round_ = self.current_round
        if image is None:
            raise HeroError(f"there is no image with id {image_id}")
        if image.round != round_:
            raise HeroError(f"image {image_id} belongs to round {image.round}, not to the open round {round_}")
        row = self.store.round(round_)
        if row.submitted_at is not None:
            raise HeroError(f"round {round_} is already submitted")
        return image


def check_export_target(target: Path, format: str) -> None:
    """Refuse, with one line, a LoRA export whose files cannot be written where ``target`` puts them."""
    if target.suffix != ".safetensors" and target.exists() and not target.is_dir():
        raise HeroError(f"{target} is a file: give --out a name ending in .safetensors, or a folder")
    for file in lora_export.export_paths(target, format).values():
        if file.is_dir():
            raise HeroError(f"{file} is a folder: give --out another file name ending in .safetensors")
        check_output_folder(file.parent, "the LoRA", file)
