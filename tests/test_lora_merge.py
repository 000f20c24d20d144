"""Sampling with the LoRA merged: the base weights come back bit for bit, and merged equals unmerged within the precision.

Faults planted by hand, each of which made a test here fail: restoring with peft's
``unmerge()`` instead of the saved copy (float32 and bfloat16), skipping the restore,
restoring only on a normal exit, copying the weights after merging, merging twice,
not clearing peft's record of merged adapters, merging while the adapters are
disabled, and sampling a bfloat16 round merged.
"""

import pytest
import torch
from engine_support import run_rounds

from hero_engine.algorithm.sampling import (
    DdimSchedule,
    ddim_step_with_logprob,
    encode_prompt,
    predict_noise,
    sample_trajectories,
)
from hero_engine.errors import StageCancelled
from hero_engine.models import lora_merge
from hero_engine.models.lora_merge import LoraMerge, adapted_layers
from hero_engine.models.pipelines import add_lora, build_tiny_pipeline, lora_state_dict
from hero_engine.session.hero_session import HeroSession

DTYPES = [torch.float32, torch.bfloat16]
TARGETS = ["attention", "all"]


def tiny_tuned_unet(dtype: torch.dtype, targets: str):
    """A tiny pipeline whose LoRA (on ``targets``) is moved well away from its zero start, so merging changes the weights."""
    pipe = build_tiny_pipeline(dtype)
    torch.manual_seed(0)
    params = add_lora(pipe.unet, 4, 4.0, targets)
    with torch.no_grad():
        for p in params:
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return pipe


def base_weights(unet) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in unet.named_parameters() if "lora_" not in name}


def assert_base_weights_equal(unet, before: dict[str, torch.Tensor]) -> None:
    after = base_weights(unet)
    assert after.keys() == before.keys()
    for name, weight in before.items():
        assert torch.equal(after[name], weight), name
    assert not any(layer.merged for layer in adapted_layers(unet))


def forward(pipe, seed: int = 1) -> torch.Tensor:
    """One guided UNet call on fixed latents: what every sampling step runs."""
    embeddings = encode_prompt(pipe, "a hand")
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return predict_noise(pipe.unet, latents, torch.full((2,), 501), embeddings.cond.expand(2, -1, -1),
                             embeddings.uncond.expand(2, -1, -1), 5.0)


def sample(pipe, steps: int = 4, on_progress=None):
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, steps)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectories(pipe.unet, schedule, encode_prompt(pipe, "a hand"), noise, eta=1.0, guidance=5.0,
                                     generator=torch.Generator().manual_seed(2), chunk=2, on_progress=on_progress)
    return schedule, trajectory


@pytest.mark.parametrize("targets", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_base_weights_are_restored_bit_for_bit(dtype, targets):
    """Two merged samplings (two rounds, the copy's buffers reused) leave every base weight exactly as it was, peft
    unmerged, and the unmerged UNet computing exactly what it did. Guards against restoring by subtraction (peft's
    unmerge, lossy in bfloat16), a skipped restore, and the copy taken after merging."""
    pipe = tiny_tuned_unet(dtype, targets)
    before, output_before = base_weights(pipe.unet), forward(pipe)
    merge = LoraMerge(pipe.unet)
    for _round in range(2):
        with merge.merged():
            assert all(layer.merged for layer in merge.layers)
            sample(pipe)
        assert_base_weights_equal(pipe.unet, before)
    assert torch.equal(forward(pipe), output_before)


@pytest.mark.parametrize("error", [StageCancelled("cancelled"), torch.OutOfMemoryError("out of memory")], ids=lambda error: type(error).__name__)
@pytest.mark.parametrize("dtype", DTYPES)
def test_base_weights_are_restored_after_an_error(dtype, error):
    """A cancel raised by the progress callback, or running out of memory, in the middle of a merged sampling
    propagates and still leaves the base weights exactly as they were. Guards a restore skipped on an exception."""
    pipe = tiny_tuned_unet(dtype, "all")
    before = base_weights(pipe.unet)

    def stop(done, total):
        if done >= total // 2:
            raise error

    with pytest.raises(type(error)), LoraMerge(pipe.unet).merged():
        sample(pipe, on_progress=stop)
    assert_base_weights_equal(pipe.unet, before)


@pytest.mark.parametrize("targets", TARGETS)
def test_merged_output_matches_unmerged_in_float32(targets):
    """In float32 the merged UNet's guided output equals the unmerged one to 1e-5. Guards merging the LoRA twice,
    merging with the wrong scaling, and merging only some of the adapted layers."""
    pipe = tiny_tuned_unet(torch.float32, targets)
    unmerged = forward(pipe)
    with LoraMerge(pipe.unet).merged():
        merged = forward(pipe)
    pipe.unet.disable_adapters()
    base = forward(pipe)
    assert float((unmerged - base).abs().max()) > 0.01  # the LoRA does change the output
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("targets", TARGETS)
def test_merged_output_in_bfloat16_is_as_close_to_float32_as_unmerged(targets):
    """In bfloat16 merged weights are rounded once more, so merged and unmerged differ by bfloat16's own error: the
    merged output is within 2.5x of the unmerged one's distance to the float32 output (measured 0.6-1.53x over six
    tiny pipelines, two latents each, at the newest and the lowest versions hero admits, whose random weights differ).
    Guards merging twice, or dropping the adapters without merging them, which move it by the LoRA's whole effect
    (12-26x the unmerged distance in the same measure)."""
    reference = forward(tiny_tuned_unet(torch.float32, targets))
    pipe = tiny_tuned_unet(torch.bfloat16, targets)
    unmerged_error = float((forward(pipe) - reference).abs().max())
    with LoraMerge(pipe.unet).merged():
        merged_error = float((forward(pipe) - reference).abs().max())
    pipe.unet.disable_adapters()
    lora_effect = float((forward(pipe) - reference).abs().max())
    assert merged_error <= 2.5 * unmerged_error < lora_effect / 2, (merged_error, unmerged_error, lora_effect)


def test_float32_merged_sampling_keeps_ppo_old_log_probs():
    """A trajectory sampled merged in float32, scored again by the unmerged UNet (what the policy update does), gives
    its stored log-probs to 1e-5, a tenth of PPO's clip range 1e-4 (measured 3e-6 on these 256-value latents, 7e-7 on
    1024). Guards the exactness that rounds sampled merged rely on."""
    pipe = tiny_tuned_unet(torch.float32, "all")
    with LoraMerge(pipe.unet).merged():
        schedule, trajectory = sample(pipe)
    embeddings = encode_prompt(pipe, "a hand")
    for i, t in enumerate(trajectory.timesteps):
        ts, x = torch.full((2,), int(t)), trajectory.latents[:, i]
        with torch.no_grad():
            eps = predict_noise(pipe.unet, x, ts, embeddings.cond.expand(2, -1, -1), embeddings.uncond.expand(2, -1, -1), 5.0)
        _, log_prob = ddim_step_with_logprob(schedule, eps, ts, x, 1.0, prev_sample=trajectory.latents[:, i + 1])
        torch.testing.assert_close(log_prob, trajectory.log_probs[:, i], rtol=0, atol=1e-5)


def test_peft_state_after_a_merged_sampling():
    """After a merged sampling peft knows nothing is merged: the exported LoRA is unchanged, disabling the adapters
    gives the base model exactly, and a nested or disabled-adapter merge merges nothing. Guards peft's merged record
    left set (its next disable would subtract the delta from the restored weights) and a merge on top of a merge."""
    pipe = tiny_tuned_unet(torch.bfloat16, "attention")
    exported, before = lora_state_dict(pipe.unet), base_weights(pipe.unet)
    merge = LoraMerge(pipe.unet)
    with merge.merged():
        merged_output = forward(pipe)
        with merge.merged():
            assert torch.equal(forward(pipe), merged_output)
    assert_base_weights_equal(pipe.unet, before)
    assert all(torch.equal(value, exported[key]) for key, value in lora_state_dict(pipe.unet).items())
    pipe.unet.disable_adapters()
    without_lora = forward(pipe)
    with merge.merged():
        assert torch.equal(forward(pipe), without_lora)
    assert_base_weights_equal(pipe.unet, before)
    pipe.unet.enable_adapters()
    with merge.merged():
        assert torch.equal(forward(pipe), merged_output)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_session_rounds_and_samples_leave_the_base_model_untouched(tmp_path, tiny_config, dtype, monkeypatch):
    """Two rounds and a sample of the tuned model leave the UNet's base weights equal to the untouched tiny model's,
    bit for bit. The rounds are sampled merged and the first PPO ratio stays within 1e-5 of 1: in float32 because
    merging moves the old log-probs by about 1e-6, in bfloat16 because the session recomputes the steps the update
    trains through its path first. Resuming stays exact: tests/test_hero_loop.py's test_resume_is_exact runs this
    merged path. Guards drift of the base weights over rounds, the merged path silently not taken, and bfloat16
    rounds trained on merged log-probs (faults planted: restore skipped; the update's plan drawn from another seed)."""
    restores, restore = [], lora_merge.restore_weights

    def counted_restore(*args):
        restores.append(args)
        restore(*args)

    monkeypatch.setattr(lora_merge, "restore_weights", counted_restore)
    untouched = base_weights(build_tiny_pipeline(getattr(torch, dtype)).unet)
    with HeroSession.create(tmp_path / "s", tiny_config, dtype=dtype) as session:
        reports = run_rounds(session, 2)
        rounds_merged = len(restores)
        session.sample(None, 2)
        unet = session._model.pipe.unet
    assert {name.replace(".base_layer", ""): w for name, w in base_weights(unet).items()}.keys() == untouched.keys()
    for name, weight in base_weights(unet).items():
        assert torch.equal(weight, untouched[name.replace(".base_layer", "")]), name
    assert rounds_merged == 6  # rounds 0, 1 and 2, a chunk of 1 and one of 5 each
    assert len(restores) == rounds_merged + 1
    assert all(report.metrics["policy_first_ratio_error"] < 1e-5 for report in reports)
    if dtype == "bfloat16":  # round 0's LoRA starts at zero, so merging it changes nothing there
        assert [report.metrics["old_log_prob_recomputed"] for report in reports] == [0.0, 1.0]
