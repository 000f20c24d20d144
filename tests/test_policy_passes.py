"""The policy update's passes: however its rows are cut into UNet passes, the gradient is the same.

The reference below is the update written the plainest way: one UNet pass per
trajectory per trained timestep, each loss scaled by 1 / (trajectories x
timesteps) of its optimizer step. The update under test gathers (trajectory,
timestep) rows and runs many per pass, with the pass size fixed, chosen from
(simulated) free memory, or with gradient checkpointing. Faults planted by hand
that made these tests fail: each pass's loss weighted alike or by its
trajectories instead of by its share of the step's rows, x_prev read at the
step itself instead of the next, the trajectory indices tiled instead of
repeated per timestep (rows pair a trajectory with another's step and
advantage), a retry after running out of memory that kept the failed pass's
partial gradient, and the first pass's statistics taken from the last.
"""

import pytest
import torch
from engine_support import tiny_policy

from hero_engine.algorithm import pass_size
from hero_engine.algorithm.pass_size import PassSizer
from hero_engine.algorithm.policy import PolicySettings, policy_update, ppo_clip_loss
from hero_engine.algorithm.sampling import ddim_step_with_logprob, predict_noise

N, STEPS, TRAIN_TIMESTEPS, POLICY_BATCH = 5, 4, 3, 3  # groups of 9 and 6 rows
CLIP_RANGE = 2e-3


@pytest.fixture(scope="module")
def moved_policy():
    """A tiny policy whose LoRA moved after sampling, so the ratios are off 1 and some rows are clipped.

    The UNet and its LoRA are float64 (the DDIM step stays float32, as always): in float32 the UNet's
    own rounding differs with the batch size, by 5e-6 to 1e-5 of the gradient's norm for the same rows
    run twice or four times in one call, which would hide a small fault behind a loose tolerance.
    """
    pipe, params, schedule, embeddings, trajectory = tiny_policy(N, lora_spread=0.05, steps=STEPS, dtype=torch.float64)
    with torch.no_grad():
        for i, p in enumerate(params):
            p.data = p.data.double()
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(100 + i), dtype=torch.float64))
    advantages = torch.tensor([1.0, -0.5, 0.25, -2.0, 0.75])
    return pipe, params, schedule, embeddings, trajectory, advantages


def _settings(rows_per_pass: int) -> PolicySettings:
    return PolicySettings(train_timesteps=TRAIN_TIMESTEPS, policy_batch=POLICY_BATCH, rows_per_pass=rows_per_pass,
                          ppo_epochs=2, clip_range=CLIP_RANGE, grad_clip=1e9, eta=1.0, guidance=5.0)


def _reference_gradients(pipe, params, schedule, embeddings, trajectory, advantages) -> list[torch.Tensor]:
    """Each optimizer step's gradient, one trajectory at one timestep per UNet pass, randomness drawn as the update draws it."""
    generator = torch.Generator().manual_seed(3)
    cond, uncond = embeddings.expand(1)
    gradients = []
    pipe.unet.train()
    for _epoch in range(2):
        order = torch.randperm(N, generator=generator)
        chosen = torch.stack([torch.randperm(STEPS, generator=generator)[:TRAIN_TIMESTEPS] for _ in range(N)])
        for start in range(0, N, POLICY_BATCH):
            members = order[start : start + POLICY_BATCH]
            for p in params:
                p.grad = None
            for sample in members.tolist():
                for index in chosen[sample].tolist():
                    x_t = trajectory.latents[sample : sample + 1, index]
                    t = trajectory.timesteps[index].reshape(1)
                    eps = predict_noise(pipe.unet, x_t, t, cond, uncond, 5.0)
                    _, log_prob = ddim_step_with_logprob(schedule, eps, t, x_t, 1.0, prev_sample=trajectory.latents[sample : sample + 1, index + 1])
                    loss, _ = ppo_clip_loss(log_prob, trajectory.log_probs[sample : sample + 1, index], advantages[sample : sample + 1], CLIP_RANGE)
                    (loss / (len(members) * TRAIN_TIMESTEPS)).backward()
            gradients.append(_flat_gradient(params))
    pipe.unet.eval()
    return gradients


def _flat_gradient(params) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten() for p in params])


class _GradientRecorder(torch.optim.Optimizer):
    """An optimizer that changes nothing and keeps the gradient of every step."""

    def __init__(self, params):
        super().__init__(params, {})
        self.gradients = []

    def step(self, closure=None):
        self.gradients.append(_flat_gradient([p for g in self.param_groups for p in g["params"]]))


class _SimulatedMemory:
    """Free memory for ``fit`` rows, or ``fit_checkpointed`` once the UNet checkpoints (the allocator's counters, simulated)."""

    ROW = 2**20

    def __init__(self, unet, fit: int, fit_checkpointed: int):
        self.unet, self.fit, self.fit_checkpointed = unet, fit, fit_checkpointed
        self.checkpointed_passes = 0

    def start_pass(self) -> None:
        self.checkpointed_passes += bool(self.unet.is_gradient_checkpointing)

    def pass_peak(self) -> int:
        return self.ROW

    def available(self) -> int:
        fit = self.fit_checkpointed if self.unet.is_gradient_checkpointing else self.fit
        return int(fit * self.ROW / pass_size.MEMORY_SHARE) + 1


def _update(moved_policy, rows_per_pass: int, sizer_for=None):
    pipe, params, schedule, embeddings, trajectory, advantages = moved_policy
    recorder = _GradientRecorder(params)
    passes = []
    sizer = sizer_for(pipe.unet) if sizer_for else None
    stats = policy_update(pipe.unet, params, recorder, schedule, embeddings, trajectory, advantages, _settings(rows_per_pass),
                          torch.Generator().manual_seed(3), on_progress=lambda done, total: passes.append(done), pass_sizer=sizer)
    return recorder.gradients, stats, passes


def _assert_same_gradients(ours, reference):
    assert len(ours) == len(reference) == 4  # 2 epochs x 2 optimizer steps
    for got, expected in zip(ours, reference):
        assert float(expected.norm()) > 0
        assert float((got - expected).norm() / expected.norm()) < 1e-6


@pytest.fixture(scope="module")
def reference(moved_policy):
    return _reference_gradients(*moved_policy)


@pytest.mark.parametrize("rows_per_pass", [1, 2, 4, 9, 100])
def test_gradient_is_the_reference_whatever_the_rows_per_pass(moved_policy, reference, rows_per_pass):
    """Each optimizer step's accumulated LoRA gradient equals the one-trajectory-one-timestep reference (relative 1e-6).

    Pass sizes of 2 and 4 cut a trajectory's timesteps across passes and leave a short last pass in a
    step; 9 is a whole step of 3 trajectories x 3 timesteps, 100 more than any step holds. Guards the
    scaling of each pass's mean loss by its share of the step's rows, the rows' (trajectory, step,
    x_prev, old log-prob, advantage) pairing, and the randomness drawn exactly as before.
    """
    ours, stats, passes = _update(moved_policy, rows_per_pass)
    _assert_same_gradients(ours, reference)
    assert passes[-1] == 2 * N * TRAIN_TIMESTEPS
    assert stats.optimizer_steps == 4


def test_statistics_do_not_depend_on_the_pass_size(moved_policy):
    """loss, approx_kl and clip_fraction are means over every trained row, so any pass size gives them alike;
    first_ratio_error is the max |ratio - 1| over the first pass (its first row when passes hold one).

    The moved LoRA clips some rows and not others, so a clip fraction of 0 or 1 would show a broken count.
    """
    _, one, _ = _update(moved_policy, 1)
    _, many, _ = _update(moved_policy, 4)
    for name in ("loss", "approx_kl", "clip_fraction"):
        assert getattr(many, name) == pytest.approx(getattr(one, name), rel=1e-5), name
    assert 0 < one.clip_fraction < 1
    assert one.approx_kl > 0
    pipe, params, schedule, embeddings, trajectory, advantages = moved_policy
    generator = torch.Generator().manual_seed(3)
    order = torch.randperm(N, generator=generator)
    chosen = torch.stack([torch.randperm(STEPS, generator=generator)[:TRAIN_TIMESTEPS] for _ in range(N)])
    sample, index = int(order[0]), int(chosen[order[0], 0])
    cond, uncond = embeddings.expand(1)
    with torch.no_grad():
        x_t = trajectory.latents[sample : sample + 1, index]
        t = trajectory.timesteps[index].reshape(1)
        eps = predict_noise(pipe.unet, x_t, t, cond, uncond, 5.0)
        _, log_prob = ddim_step_with_logprob(schedule, eps, t, x_t, 1.0, prev_sample=trajectory.latents[sample : sample + 1, index + 1])
    first_row_error = float((torch.exp(log_prob - trajectory.log_probs[sample, index]) - 1).abs())
    assert one.first_ratio_error == pytest.approx(first_row_error, rel=1e-4)
    assert many.first_ratio_error >= one.first_ratio_error


def test_passes_sized_from_free_memory_turn_on_checkpointing_and_keep_the_gradient(moved_policy, reference):
    """Auto pass size (simulated CUDA memory): a one-row pass is measured; when fewer than SMALLEST_USEFUL_ROWS fit,
    gradient checkpointing goes on and a row is measured again; the passes then take what fits (here 5 rows).

    The gradient is still the reference's (checkpointing recomputes activations through peft's LoRA on a frozen
    base without changing it), the passes grow after the measurements, and checkpointing is off again afterwards.
    """
    pipe = moved_policy[0]
    memories = []

    def sizer_for(unet):
        memories.append(_SimulatedMemory(unet, fit=2, fit_checkpointed=5))
        return PassSizer(pass_size.AUTO, unet, POLICY_BATCH * TRAIN_TIMESTEPS, 64, memory=memories[-1])

    ours, _, passes = _update(moved_policy, pass_size.AUTO, sizer_for)
    _assert_same_gradients(ours, reference)
    assert passes[0] == 0  # the update's start is reported before its first pass
    sizes = [b - a for a, b in zip(passes, passes[1:])]
    assert sizes[:6] == [1, 1, 5, 2, 5, 1]  # step 1's 9 rows: measured, measured again with checkpointing, then 5 a pass
    assert memories[0].checkpointed_passes == 1  # the second measurement; later passes read no counters
    assert not pipe.unet.is_gradient_checkpointing


def _run_out_of_memory(grad):
    raise torch.OutOfMemoryError("simulated")


def test_a_first_pass_out_of_memory_runs_again_with_checkpointing(moved_policy, reference):
    """Auto pass size: when even one row runs out of memory, the first pass runs again with gradient checkpointing
    from no gradient, and the update's gradient is the reference's.

    The simulated failure comes midway through the backward pass, after the up blocks' LoRA gradients were
    accumulated, so a retry that kept them would count them twice. A fixed pass size never retries: its
    out-of-memory error reaches the caller (the session's out-of-memory message).
    """
    unet = moved_policy[0].unet

    def fail_in_backward_without_checkpointing(module, args):
        if not unet.is_gradient_checkpointing and torch.is_grad_enabled():
            args[0].register_hook(_run_out_of_memory)

    hook = unet.mid_block.register_forward_pre_hook(fail_in_backward_without_checkpointing)
    try:
        def sizer_for(unet):
            return PassSizer(pass_size.AUTO, unet, POLICY_BATCH * TRAIN_TIMESTEPS, 64, memory=_SimulatedMemory(unet, fit=0, fit_checkpointed=4))

        ours, _, passes = _update(moved_policy, pass_size.AUTO, sizer_for)
        _assert_same_gradients(ours, reference)
        assert passes[:4] == [0, 1, 5, 9]  # the start, then the retried pass of one row, then 4 a pass
        assert not unet.is_gradient_checkpointing
        with pytest.raises(torch.OutOfMemoryError):
            _update(moved_policy, 3)
    finally:
        hook.remove()


def test_rows_that_fit_leave_a_share_of_the_free_memory():
    """The pass size from memory: MEMORY_SHARE of what is free, in whole rows; a row of no measured size counts as 1 byte."""
    assert pass_size.rows_that_fit(10 * 2**30, 2**30) == int(10 * pass_size.MEMORY_SHARE)
    assert pass_size.rows_that_fit(2**30, 2**31) == 0
    assert pass_size.rows_that_fit(100, 0) == int(100 * pass_size.MEMORY_SHARE)


def test_auto_off_cuda_takes_rows_by_latent_size():
    """train_batch 0 off CUDA: no measuring; 2 rows of SD1.5 at 512 px (64 x 64 latents), more of smaller latents,
    at least 1 of larger ones. A number is taken as it is; no pass runs past its optimizer step's rows."""
    class CpuUnet:
        device = torch.device("cpu")

    assert [pass_size.cpu_rows(side * side) for side in (64, 16, 128)] == [2, 32, 1]
    auto = PassSizer(pass_size.AUTO, CpuUnet(), 40, 64 * 64)
    assert auto.memory is None
    assert [auto.next_rows(left) for left in (40, 1)] == [2, 1]
    assert PassSizer(7, CpuUnet(), 40, 64 * 64).next_rows(40) == 7
