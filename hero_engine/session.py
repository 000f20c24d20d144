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
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hero_engine import checkpoints, models, noise, round_files
from hero_engine import export as lora_export
from hero_engine.config import AUTO_MODEL, DEFAULT_HUB_MODEL, MEMORY_FIELDS, HeroConfig
from hero_engine.errors import HeroError, OutOfMemory, StageCancelled
from hero_engine.learner import Learner, gather_feedback
from hero_engine.representation import FeedbackEncoder
from hero_engine.sampling import DdimSchedule, Trajectory, decode_images, encode_prompt, sample_trajectories
from hero_engine.store import SessionLock, SessionStore, publish_folder, write_failure

log = logging.getLogger(__name__)

STAGES = ("sampling", "representation", "policy", "saving")
ProgressFn = Callable[[str, int, int], None]

# Purposes of the seeded generators (see _generator).
_NOISE, _STEPS, _ENCODER, _POLICY, _INIT, _SAMPLE = range(6)


@dataclass(frozen=True)
class ImageInfo:
    id: int
    round: int
    idx: int
    path: Path
    label: str | None  # 'good', 'bad' or None while unlabeled
    is_best: bool


@dataclass(frozen=True)
class Batch:
    round: int
    prompt: str
    images: list[ImageInfo]
    best_id: int | None  # the best chosen so far in this round
    previous_best: ImageInfo | None  # the best after the previous round (may be kept)
    submitted: bool


@dataclass
class RoundReport:
    round: int
    good: int
    bad: int
    labels_total: int
    mean_reward: float
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class _Stop:
    """Wraps a progress callback: reports (stage, done, total) and raises StageCancelled when asked to stop."""

    def __init__(self, on_progress: ProgressFn | None, should_stop: Callable[[], bool] | None):
        self.on_progress = on_progress
        self.should_stop = should_stop

    def stage(self, name: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if self.should_stop and self.should_stop():
                raise StageCancelled(f"stopped during {name}; the session is saved as it was before this stage")
            if self.on_progress:
                self.on_progress(name, done, total)

        return report


class HeroSession:
    """One person's HERO session, stored in a folder and owned by one process at a time."""

    def __init__(self, store: SessionStore, config: HeroConfig, runtime: models.Runtime, lock: SessionLock):
        self.store = store
        self.config = config
        self.runtime = runtime
        self._lock = lock
        self.notices: list[str] = []  # things the user should hear about (e.g. a checkpoint fallback)
        self._pipe = None
        self._policy_round: int | None = None  # round whose checkpoint the in-memory state equals (-1 = initial)
        self._trajectory: tuple[int, Trajectory] | None = None
        self._loaded_pipe = None  # the pipeline create() loaded before the folder existed
        if config.model == AUTO_MODEL:
            self._choose_model()

    # opening ----------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, config: HeroConfig, device: str | None = None, dtype: str | None = None) -> HeroSession:
        config.validate()
        runtime = models.Runtime.resolve(device, dtype)
        folder = Path(folder)
        SessionStore.check_new(folder)
        model = cls._auto_model(runtime) if config.model == AUTO_MODEL else config.model
        config = config.for_model(model)
        config.validate()
        # The model is loaded before the folder exists: one that cannot be found or loaded leaves no
        # dead session behind (which would become the "most recent" one).
        pipe = models.load_pipeline(model, runtime)
        folder.mkdir(parents=True, exist_ok=True)
        lock = SessionLock(folder)
        lock.acquire()
        try:
            store = SessionStore.create(folder, config)
        except BaseException:
            lock.release()
            raise
        session = cls(store, config, runtime, lock)
        session._loaded_pipe = pipe
        return session

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
        runtime = models.Runtime.resolve(device, dtype)
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

    def propose(self, on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None) -> Batch:
        """The current round's batch, sampling it first if it does not exist yet. Idempotent."""
        round_ = self.current_round
        if self.store.round(round_) is None:
            stop = _Stop(on_progress, should_stop)
            self._guard("sampling", lambda: self._sample_round(round_, stop))
        else:
            self._guard("sampling", lambda: self._repair_images(round_))
        return self.batch(round_)

    def batch(self, round_: int) -> Batch:
        row = self.store.round(round_)
        if row is None:
            raise HeroError(f"round {round_} has no images yet")
        prev = self.store.round(round_ - 1) if round_ > 0 else None
        previous_best = self._info(prev.best_image_id) if prev and prev.best_image_id else None
        return Batch(
            round=round_,
            prompt=self.config.prompt,
            images=[self._info_from_row(r) for r in self.store.images(round_)],
            best_id=row.best_image_id,
            previous_best=previous_best,
            submitted=row.submitted_at is not None,
        )

    def label(self, image_id: int, good: bool | None) -> None:
        """Mark an image of the open round good (True), bad (False), or unlabeled (None)."""
        image = self._open_round_image(image_id)
        row = self.store.round(image.round)
        if good is not True and row.best_image_id == image_id:
            raise HeroError(f"image {image.idx} is the best; choose another best before marking it not good")
        self.store.set_label(image_id, None if good is None else ("good" if good else "bad"))

    def choose_best(self, image_id: int | None) -> None:
        """Choose the best: an image of the open round, or (after round 0) the previous best, to keep it.

        None clears the round's choice (an undo); the image keeps its good label.
        """
        round_ = self.current_round
        row = self.store.round(round_)
        if row is None or row.submitted_at is not None:
            raise HeroError(f"round {round_} is not open for feedback")
        if image_id is None:
            self.store.set_best(round_, None)
            return
        prev = self.store.round(round_ - 1) if round_ > 0 else None
        if prev is not None and prev.best_image_id == image_id:
            self.store.set_best(round_, image_id)
            return
        image = self._open_round_image(image_id)
        if image.label != "good":
            self.store.set_label(image_id, "good")  # the best always counts as good
        self.store.set_best(round_, image_id)

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
        row = self.store.round(round_)
        images = self.store.images(round_)
        problem = None
        if row.best_image_id is None:
            problem = "choose the best image first"
        else:
            good = [i for i in images if i.label == "good" and i.id != row.best_image_id]
            bad = [i for i in images if i.label != "good" and i.id != row.best_image_id]
            if not good:
                problem = "mark at least one good image besides the best"
            elif not bad:
                problem = "leave at least one image not good: HERO learns from the contrast"
        if problem and raise_error:
            raise HeroError(f"round {round_} cannot be submitted yet: {problem}")
        return problem

    def update(
        self, on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None, sample_next: bool = True
    ) -> RoundReport:
        """Learn from the submitted round, checkpoint, and sample the next round's batch.

        With ``sample_next=False`` the next batch is left to the next ``propose()`` (for a caller that stops here).
        """
        round_ = self.current_round
        row = self.store.round(round_)
        if row is None or row.submitted_at is None:
            raise HeroError(f"round {round_} has not been submitted yet")
        stop = _Stop(on_progress, should_stop)
        seconds: dict[str, float] = {}
        self._guard("loading", self._ensure_policy)
        started = time.perf_counter()
        trajectory = self._guard("sampling", lambda: self._trajectory_of(round_, stop))
        seconds["replay"] = time.perf_counter() - started
        try:
            metrics = self._guard("learning", lambda: self._learn(round_, trajectory, stop, seconds))
            started = time.perf_counter()
            self._guard("saving", lambda: self._save_checkpoint(round_, stop))
            seconds["saving"] = time.perf_counter() - started
        except BaseException:
            self._policy_round = None  # in-memory weights are part-trained: reload before the next use
            raise
        # The round's metrics are stored with its checkpoint, so a kill during the next sampling keeps them.
        self.store.put_metrics(round_, {**metrics, **{f"seconds_{k}": v for k, v in seconds.items()}})
        self.store.mark_updated(round_)
        self._trajectory = None
        if sample_next:
            started = time.perf_counter()
            self._guard("sampling", lambda: self._sample_round(round_ + 1, stop))
            seconds["sampling"] = time.perf_counter() - started
            self.store.put_metrics(round_, {"seconds_sampling": seconds["sampling"]})
        metrics.update({f"seconds_{k}": v for k, v in seconds.items()})
        return RoundReport(
            round=round_,
            good=int(metrics["good"]),
            bad=int(metrics["bad"]),
            labels_total=self.store.label_count(),
            mean_reward=metrics["reward_mean"],
            seconds=seconds,
            metrics=metrics,
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
        lora_export.export_paths(Path(path), format)  # an unknown format fails before any work
        round_ = self.latest_checkpoint()
        if round_ is None:
            raise HeroError("nothing to export yet: finish at least one round (label, submit, update)")
        try:
            checkpoints.verify(self.store.checkpoint_dir(round_))
        except HeroError:
            self._policy_round = None  # whatever is in memory: reload, fall back to an earlier checkpoint and rebuild this one
            self._ensure_policy()
        checkpoints.read_lora(self.store.checkpoint_dir(round_))  # checksum again, and refuses non-finite weights
        source = self.store.checkpoint_dir(round_) / "lora" / models.LORA_WEIGHT_NAME
        cfg = self.config
        info = lora_export.LoraInfo(rank=cfg.lora_rank, alpha=cfg.lora_alpha, base_model=cfg.model, prompt=cfg.prompt, round=round_, targets=cfg.lora_targets)
        try:
            return lora_export.export_lora(source, Path(path), format, info)
        except HeroError:
            raise
        except Exception as exc:  # OSError, or safetensors' own error type, for a place that cannot be written
            for target in lora_export.export_paths(Path(path), format).values():
                with contextlib.suppress(OSError):
                    target.with_name(f".{target.name}.tmp").unlink()
            raise HeroError(f"cannot write the LoRA to {path} ({write_failure(exc)}): choose another --out") from None

    def sample(self, prompt: str | None, n: int, use_refined_noise: bool = False, seed: int | None = None) -> list:
        """``n`` images from the tuned model, from plain noise or from noise refined around the good images."""
        if n < 1:
            raise HeroError("ask for at least one image")
        self._ensure_policy()
        prompt = prompt or self.config.prompt
        seed = self.config.seed if seed is None else seed
        gen = self._generator(-1, _SAMPLE, seed)
        shape = self._latent_shape()
        if use_refined_noise:
            last = self.latest_checkpoint()
            if last is None:
                raise HeroError("refined noise needs at least one finished round")
            initial = self._guided_noise(last, n, gen)
        else:
            initial = noise.plain_noise(n, shape, gen)
        embeddings = encode_prompt(self._pipe, prompt, self.config.negative_prompt)
        traj = sample_trajectories(
            self._pipe.unet, self._schedule, embeddings, initial,
            eta=self.config.eta, guidance=self.config.guidance, generator=gen, chunk=self.config.sample_batch,
        )
        return decode_images(self._pipe.vae, traj.final_latents, chunk=self.config.sample_batch)

    # internals: model and policy state --------------------------------------

    def _load_model(self) -> None:
        if self._pipe is not None:
            return
        cfg = self.config
        log.info("loading model %s on %s (%s)", cfg.model, self.runtime.device, self.runtime.dtype)
        pipe, self._loaded_pipe = self._loaded_pipe or models.load_pipeline(cfg.model, self.runtime), None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._seed(-1, _INIT))
            params = models.add_lora(pipe.unet, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
            encoder = FeedbackEncoder(latent_channels=pipe.unet.config.in_channels, embed_dim=cfg.embed_dim).to(self.runtime.device)
        self._learner = Learner(pipe.unet, params, encoder, cfg)
        self._schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, cfg.steps)
        self._embeddings = encode_prompt(pipe, cfg.prompt, cfg.negative_prompt)
        self._vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self._pipe = pipe

    @staticmethod
    def _auto_model(runtime: models.Runtime) -> str:
        return DEFAULT_HUB_MODEL if runtime.device.type == "cuda" else "demo"

    def _choose_model(self) -> None:
        """Resolve --model auto once, and save the choice so the session keeps its model wherever it resumes."""
        on_cuda = self.runtime.device.type == "cuda"
        model = self._auto_model(self.runtime)
        self.config = self.config.replace(model=model).for_model(model)  # before any round: its defaults still apply
        self.store.write_config(self.config)
        if not on_cuda:
            self.notices.append(
                "no CUDA device: using the built-in demo model (small, trained on drawings); "
                "pass --model with a hub id, a diffusers folder or a .safetensors file for a real checkpoint"
            )

    def _ensure_policy(self) -> None:
        """Bring the in-memory LoRA, encoder and optimizers to the last finished round's checkpoint."""
        self._load_model()
        target = self.latest_checkpoint()
        target = -1 if target is None else target
        if self._policy_round == target:
            return
        loaded = -1
        for candidate in range(target, -1, -1):
            try:
                checkpoints.load(self._learner, self.store.checkpoint_dir(candidate))
                loaded = candidate
                break
            except (HeroError, OSError, RuntimeError, ValueError, KeyError) as exc:
                message = f"checkpoint {candidate:04d} is missing or damaged ({exc}); falling back to the previous one"
                log.warning(message)
                self.notices.append(message)
        if loaded == -1:
            self._learner.reset()
        self._policy_round = loaded
        for round_ in range(loaded + 1, target + 1):
            message = f"rebuilding checkpoint {round_:04d} from round {round_}'s stored labels"
            log.warning(message)
            self.notices.append(message)
            trajectory = self._trajectory_of(round_, _Stop(None, None))
            self._learn(round_, trajectory, _Stop(None, None), {})
            self._save_checkpoint(round_, _Stop(None, None))
            self._policy_round = round_

    def _save_checkpoint(self, round_: int, stop: _Stop) -> None:
        progress = stop.stage("saving")
        progress(0, 2)
        tmp = self.store.temp_dir("checkpoints")
        checkpoints.write(self._learner, tmp, round_)
        progress(1, 2)
        publish_folder(tmp, self.store.checkpoint_dir(round_))
        self._policy_round = round_
        progress(2, 2)

    # internals: sampling ----------------------------------------------------

    def _latent_shape(self) -> tuple[int, int, int]:
        unet = self._pipe.unet
        side = self.config.resolution // self._vae_scale if self.config.resolution else unet.config.sample_size
        return (unet.config.in_channels, side, side)

    def _initial_noise(self, round_: int) -> torch.Tensor:
        gen = self._generator(round_, _NOISE)
        n = self.config.batch_size
        if round_ == 0 or not self.config.guided_noise:
            return noise.plain_noise(n, self._latent_shape(), gen)
        return self._guided_noise(round_ - 1, n, gen)

    def _guided_noise(self, source_round: int, n: int, gen: torch.Generator) -> torch.Tensor:
        """Noise around the best and good images of ``source_round``."""
        row = self.store.round(source_round)
        best = self.store.image(row.best_image_id)
        good_idx = [i.idx for i in self.store.images(source_round) if i.label == "good"]
        noises = self._round_tensors(source_round)["noise"]
        best_noise = (noises if best.round == source_round else self._round_tensors(best.round)["noise"])[best.idx]
        return noise.feedback_guided_noise(
            best_noise, noises[good_idx], n, eps=self.config.noise_eps, best_ratio=self.config.best_ratio, generator=gen
        )

    def _sample_trajectory(self, round_: int, initial: torch.Tensor, stop: _Stop) -> Trajectory:
        return sample_trajectories(
            self._pipe.unet, self._schedule, self._embeddings, initial,
            eta=self.config.eta, guidance=self.config.guidance, generator=self._generator(round_, _STEPS),
            chunk=self.config.sample_batch, on_progress=stop.stage("sampling"),
        )

    def _sample_round(self, round_: int, stop: _Stop) -> None:
        self._ensure_policy()
        initial = self._initial_noise(round_)
        trajectory = self._sample_trajectory(round_, initial, stop)
        images = decode_images(self._pipe.vae, trajectory.final_latents, chunk=self.config.sample_batch)
        paths = round_files.publish_round(self.store, round_, images, initial, trajectory.final_latents)
        self.store.add_round(round_, paths)
        self._trajectory = (round_, trajectory)
        log.info("round %d sampled: %d images", round_, len(images))

    def _trajectory_of(self, round_: int, stop: _Stop) -> Trajectory:
        """The round's trajectory: kept from sampling, or re-sampled from its stored noise (same seed, same policy)."""
        if self._trajectory is not None and self._trajectory[0] == round_:
            return self._trajectory[1]
        self._ensure_policy_at(round_ - 1)
        stored_tensors = self._round_tensors(round_)
        trajectory = self._sample_trajectory(round_, stored_tensors["noise"], stop)
        stored = stored_tensors["final"]
        drift = float((trajectory.final_latents.cpu() - stored).abs().max())
        if drift > 1e-3:
            log.warning("re-sampled round %d differs from its stored latents by %.2e (different device or precision?)", round_, drift)
        self._trajectory = (round_, trajectory)
        return trajectory

    def _ensure_policy_at(self, round_: int) -> None:
        if self._policy_round != round_:
            raise HeroError(f"internal state is at round {self._policy_round}, expected {round_}")

    def _round_tensors(self, round_: int) -> dict[str, torch.Tensor]:
        """The round's initial noises and final latents, checked against their checksum; rebuilt when damaged."""
        try:
            return round_files.read_round_tensors(self.store.round_dir(round_))
        except HeroError as exc:
            self._notice(f"round {round_}'s {round_files.TENSORS} is missing or damaged ({exc}); rebuilding it from the round's seed")
        return self._rebuild_round_tensors(round_)

    def _rebuild_round_tensors(self, round_: int) -> dict[str, torch.Tensor]:
        """Sample the round again as it was sampled: its seeded noise, with the policy of the round before (exact on one device)."""
        self._load_model()
        initial = self._initial_noise(round_)
        kept = self._policy_round
        if kept != round_ - 1:
            self._load_policy(round_ - 1)
        try:
            trajectory = self._sample_trajectory(round_, initial, _Stop(None, None))
        finally:
            if kept != round_ - 1:
                self._load_policy(kept)
        tensors = {"noise": initial.contiguous(), "final": trajectory.final_latents.cpu().contiguous()}
        round_files.replace_round_tensors(self.store.round_dir(round_), tensors)
        return tensors

    def _load_policy(self, round_: int | None) -> None:
        """Load round ``round_``'s checkpoint (-1: the initial state; None: nothing, reload before the next use)."""
        if round_ is None:
            pass
        elif round_ == -1:
            self._learner.reset()
        else:
            checkpoints.load(self._learner, self.store.checkpoint_dir(round_))
        self._policy_round = round_

    def _repair_images(self, round_: int) -> None:
        """Decode the round's missing or damaged PNGs again from its stored final latents."""
        folder = self.store.round_dir(round_)
        broken = round_files.broken_images(folder, self.folder, self.store.images(round_))
        if not broken:
            return
        self._load_model()
        final = self._round_tensors(round_)["final"]
        images = decode_images(self._pipe.vae, final[[idx for idx, _, _ in broken]])
        round_files.replace_images(folder, [name for _, name, _ in broken], images)
        self._notice(
            f"round {round_}: {len(broken)} image(s) missing or damaged ({broken[0][2]}"
            f"{', ...' if len(broken) > 1 else ''}); decoded again from the stored latents"
        )

    def _notice(self, message: str) -> None:
        log.warning(message)
        self.notices.append(message)

    # internals: learning ----------------------------------------------------

    def _learn(self, round_: int, trajectory: Trajectory, stop: _Stop, seconds: dict[str, float]) -> dict[str, float]:
        """Representation learning, rewards and the policy update for one submitted round."""
        row = self.store.round(round_)
        images = self.store.images(round_)
        best = self.store.image(row.best_image_id)
        kept = None if best.round == round_ else self._round_tensors(best.round)["final"][best.idx]
        feedback = gather_feedback(
            trajectory.final_latents, [i.label for i in images], best.idx if best.round == round_ else None, kept, self.runtime.device
        )
        metrics, stage_seconds = self._learner.learn(
            feedback, trajectory, self._schedule, self._embeddings,
            encoder_generator=self._generator(round_, _ENCODER), policy_generator=self._generator(round_, _POLICY),
            on_encoder_progress=stop.stage("representation"), on_policy_progress=stop.stage("policy"),
        )
        seconds.update(stage_seconds)
        return metrics

    # internals: helpers ------------------------------------------------------

    def _seed(self, round_: int, purpose: int, seed: int | None = None) -> int:
        base = self.config.seed if seed is None else seed
        return (base * 1_000_003 + (round_ + 1) * 1_009 + purpose) % (2**63)

    def _generator(self, round_: int, purpose: int, seed: int | None = None) -> torch.Generator:
        return torch.Generator().manual_seed(self._seed(round_, purpose, seed))

    def _guard(self, stage: str, work: Callable):
        """Run a stage; turn out-of-memory into a one-line error that says the session is intact."""
        try:
            return work()
        except torch.OutOfMemoryError:
            self._policy_round = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemory(
                f"out of memory during {stage}; the session is intact. Continue it with a lower --sample-batch "
                "or --train-batch (they change memory use, not the results)"
            ) from None
        except RuntimeError as exc:
            if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
                self._policy_round = None
                raise OutOfMemory(f"out of memory during {stage}; the session is intact ({str(exc).splitlines()[0][:120]})") from None
            raise

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

    def _info_from_row(self, row) -> ImageInfo:
        return ImageInfo(row.id, row.round, row.idx, self.folder / row.path, row.label, row.is_best)

    def _info(self, image_id: int) -> ImageInfo | None:
        row = self.store.image(image_id)
        return self._info_from_row(row) if row else None

