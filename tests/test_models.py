"""Model loading: the tiny model, local folders, and one-line errors for what cannot load."""

import pytest
import torch

from hero_engine.errors import HeroError
from hero_engine.models.pipelines import Runtime, build_tiny_pipeline, load_pipeline


def test_runtime_defaults_to_cpu_float32_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA machine")
    assert Runtime.resolve() == Runtime(torch.device("cpu"), torch.float32)
    assert Runtime.resolve("cpu", "bfloat16").dtype == torch.bfloat16
    with pytest.raises(HeroError, match="no CUDA device"):
        Runtime.resolve("cuda")
    with pytest.raises(HeroError, match="unknown dtype"):
        Runtime.resolve("cpu", "float8")


def test_local_diffusers_folder_loads_offline(tmp_path):
    build_tiny_pipeline().save_pretrained(tmp_path / "pipe")
    pipe = load_pipeline(str(tmp_path / "pipe"), Runtime.resolve("cpu", "float32"))
    assert pipe.unet.config.sample_size == 16
    assert not any(p.requires_grad for p in pipe.unet.parameters())


@pytest.mark.parametrize(
    "model, message",
    [
        ("/no/such/model", "does not exist"),
        ("./missing.safetensors", "does not exist"),
        ("some-user/some-model-that-is-not-cached", "offline"),
    ],
)
def test_unloadable_models_get_one_line_errors(model, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeroError, match=message) as info:
        load_pipeline(model, Runtime.resolve("cpu", "float32"))
    assert "\n" not in str(info.value)


def test_folder_without_model_index_and_wrong_file_type(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeroError, match="model_index.json"):
        load_pipeline(str(tmp_path / "empty"), Runtime.resolve("cpu", "float32"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(HeroError, match="not a .safetensors or .ckpt"):
        load_pipeline(str(tmp_path / "weights.bin"), Runtime.resolve("cpu", "float32"))
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(HeroError, match="could not load"):
        load_pipeline(str(tmp_path / "broken.safetensors"), Runtime.resolve("cpu", "float32"))


# every tensor on the runtime device -------------------------------------------------------------


def test_feedback_tensors_read_from_disk_reach_the_runtime_device():
    """Guards issue 10's crash when the previous best is kept (its latent read from disk, on the CPU,
    concatenated with the round's latents on the GPU). gather_feedback is the one place feedback crosses
    to the runtime device: asked for the "meta" device, every tensor it returns is there, the kept best included.
    """
    from hero_engine.algorithm.learner import gather_feedback

    final = torch.randn(4, 4, 8, 8)
    labels = ["good", "bad", "good", None]
    earlier = (torch.randn(3, 4, 8, 8), ["good", None, "bad"])
    for best_index, kept in ((0, None), (None, torch.randn(4, 8, 8))):
        feedback = gather_feedback(final, labels, best_index, kept, torch.device("meta"), earlier)
        tensors = {name: value for name, value in vars(feedback).items() if isinstance(value, torch.Tensor)}
        assert set(tensors) == {"final", "best_latent", "good", "earlier_good", "earlier_bad"}
        assert all(t.device.type == "meta" for t in tensors.values()), {n: t.device for n, t in tensors.items()}


def test_the_learner_sees_only_feedback_gathered_for_the_runtime_device(tmp_path, tiny_config, monkeypatch):
    """Guards that the session routes the kept previous best (read from disk) through gather_feedback, with the
    runtime's device, and hands the learner exactly what gather_feedback returned (so nothing bypasses the move)."""
    from hero_engine.algorithm.learner import Learner
    from hero_engine.evaluation.evaluators import get_evaluator, label_batch
    from hero_engine.session import trainer as trainer_module
    from hero_engine.session.hero_session import HeroSession

    calls, seen = [], []
    real_gather, real_learn = trainer_module.gather_feedback, Learner.learn

    def gather(final, labels, best_index, kept, device, earlier=None):
        result = real_gather(final, labels, best_index, kept, device, earlier)
        calls.append((best_index, kept, device, result))
        return result

    def learn(self, feedback, *args, **kwargs):
        seen.append(feedback)
        return real_learn(self, feedback, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "gather_feedback", gather)
    monkeypatch.setattr(Learner, "learn", learn)
    with HeroSession.create(tmp_path / "s", tiny_config.replace(encoder_rounds=2)) as session:
        label_batch(session, get_evaluator("redness"))
        session.submit()
        session.update()
        batch = session.propose()
        session.choose_best(batch.previous_best.id)  # keep round 0's best: its latent comes from disk, and round 0's latents too
        session.label(batch.images[0].id, True)
        session.submit()
        session.update(sample_next=False)
        device = session.runtime.device
    best_index, kept, gathered_on, result = calls[-1]
    assert best_index is None and kept is not None and gathered_on == device
    assert [id(f) for f in seen] == [id(c[3]) for c in calls]
    assert calls[0][3].earlier_good is None and len(calls[-1][3].earlier_good) + len(calls[-1][3].earlier_bad) == tiny_config.batch_size


# the DDIM step against diffusers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"prediction_type": "v_prediction"},
        {"prediction_type": "sample"},
        {"prediction_type": "v_prediction", "clip_sample": True, "clip_sample_range": 1.5},
        {"prediction_type": "epsilon", "thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 2.0},
        {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": True},
    ],
    ids=["epsilon", "v_prediction", "sample", "v-clip", "thresholding", "v-zero-snr-trailing"],
)
def test_ddim_step_matches_diffusers(changes):
    """Guards hero's own DDIM step (it takes one timestep per sample) against DDIMScheduler.step with the same
    variance_noise, for epsilon, v-prediction (SD2.x 768) and sample prediction, clipping and dynamic thresholding,
    at every step of a 20-step schedule; the log-prob of diffusers' sample is the Gaussian log-density under hero's mean."""
    from diffusers import DDIMScheduler

    from hero_engine.algorithm.sampling import (
        DdimSchedule,
        ddim_step_with_logprob,
        gaussian_log_prob,
    )
    from hero_engine.models.pipelines import SD15_SCHEDULER_CONFIG

    config = {**SD15_SCHEDULER_CONFIG, **changes}
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(20)
    schedule = DdimSchedule.from_scheduler_config(config, 20)
    assert torch.equal(schedule.timesteps, scheduler.timesteps)
    g = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps:
        sample, output, noise = (torch.randn(2, 4, 8, 8, generator=g) * 2 for _ in range(3))
        step = scheduler.step(output, t, sample, eta=1.0, variance_noise=noise)
        expected = step.prev_sample
        if expected.isnan().any():
            # Zero terminal SNR: at the first step alpha_t = 0, so sigma^2 = 1 - alpha_prev and the direction's
            # coefficient is sqrt(0). diffusers' float32 rounding of sqrt(sigma^2)^2 makes it sqrt(-tiny) = NaN on
            # some CPUs; hero clamps it at 0. The reference is then diffusers' own x0 and sigma without that term.
            assert changes.get("rescale_betas_zero_snr") and t == scheduler.timesteps[0]
            prev_t = int(scheduler.timesteps[1])
            sigma = scheduler._get_variance(int(t), prev_t).sqrt()
            expected = scheduler.alphas_cumprod[prev_t].sqrt() * step.pred_original_sample + sigma * noise
        ours, log_prob = ddim_step_with_logprob(schedule, output, torch.full((2,), int(t)), sample, 1.0, noise=noise)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        mean, _ = ddim_step_with_logprob(schedule, output, torch.full((2,), int(t)), sample, 1.0, noise=torch.zeros_like(noise))
        std = ((expected - mean) / noise).flatten(1).median(dim=1).values.reshape(2, 1, 1, 1)
        torch.testing.assert_close(log_prob, gaussian_log_prob(expected, mean, std), rtol=1e-4, atol=1e-4)


def test_v_prediction_model_runs_a_round(tmp_path, tiny_config):
    """Guards a v-prediction model (as SD2.x 768) through a whole round: sampling and training share one step,
    so the first PPO ratio is 1, and the round's rewards are finite."""
    from hero_engine.evaluation.evaluators import get_evaluator, label_batch
    from hero_engine.session.hero_session import HeroSession

    pipe = build_tiny_pipeline()
    pipe.scheduler.register_to_config(prediction_type="v_prediction")
    pipe.save_pretrained(tmp_path / "vpred")
    with HeroSession.create(tmp_path / "s", tiny_config.replace(model=str(tmp_path / "vpred"))) as session:
        assert session.propose() and session._model.schedule.prediction_type == "v_prediction"
        label_batch(session, get_evaluator("redness"))
        session.submit()
        report = session.update(sample_next=False)
    assert report.metrics["policy_first_ratio_error"] < 1e-4
    assert torch.isfinite(torch.tensor(report.mean_reward))


# single-file checkpoints, offline --------------------------------------------------------------


def _sd_shaped_tiny_pipeline(family: str):
    """SD's block layout (4 blocks, 2 layers each) at tiny widths; SD2's linear projections and OpenCLIP-style encoder."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from hero_engine.models.model_configs import clip_tokenizer
    from hero_engine.models.pipelines import SD15_SCHEDULER_CONFIG

    sd2 = family == "sd2"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 32, 64, 64), layers_per_block=2, cross_attention_dim=32,
        attention_head_dim=[2, 2, 4, 4] if sd2 else 8, use_linear_projection=sd2, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, norm_num_groups=8, sample_size=128,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="gelu" if sd2 else "quick_gelu",
    ))
    scheduler = DDIMScheduler.from_config({**SD15_SCHEDULER_CONFIG, "prediction_type": "v_prediction" if sd2 else "epsilon"})
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer("!" if sd2 else "<|endoftext|>"), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_single_file_checkpoint_loads_offline(family, tmp_path, monkeypatch):
    """Guards loading an original-layout single file with no hub (the issue: LocalEntryNotFoundError and advice
    pointing back at the file). An SD-shaped tiny pipeline, written in the original layout, is read back by hero's
    loader (family from its tensor names, the shipped tokenizer, a local config folder) into identical weights."""
    from safetensors.torch import save_file
    from sd_layouts import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm

    from hero_engine.models import model_configs, pipelines

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = _sd_shaped_tiny_pipeline(family)
    text = open_clip_to_ldm(pipe.text_encoder) if family == "sd2" else clip_to_ldm(pipe.text_encoder)
    checkpoint = tmp_path / "model.safetensors"
    save_file({**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **text}, checkpoint)
    pipe.save_pretrained(tmp_path / "configs")
    for weights in (tmp_path / "configs").rglob("*.safetensors"):
        weights.unlink()  # only the configs, as in hero_engine/models/model_configs
    assert model_configs.single_file_family(checkpoint) == family
    loaded = pipelines.load_single_file(checkpoint, config=tmp_path / "configs")
    for part in ("unet", "vae", "text_encoder"):
        want, got = getattr(pipe, part).state_dict(), getattr(loaded, part).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), part
    assert loaded.scheduler.config.prediction_type == ("v_prediction" if family == "sd2" else "epsilon")
    assert loaded.tokenizer.pad_token == ("!" if family == "sd2" else "<|endoftext|>")


def test_shipped_configs_describe_sd15_and_sd2(tmp_path):
    """Guards the configs shipped for single files: built on the meta device they have SD1.5's and SD2.x's published
    parameter counts (UNet, VAE, text encoder), and an SD2 file takes the v-prediction 768 config unless a .yaml
    beside it says otherwise."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from hero_engine.models.model_configs import HERE, config_folder

    expected = {"sd15": (859_520_964, 83_653_863, 123_060_480), "sd2-v": (865_910_724, 83_653_863, 340_387_840),
                "sd2-base": (865_910_724, 83_653_863, 340_387_840)}
    for family, counts in expected.items():
        with torch.device("meta"):
            parts = (
                UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(HERE / family / "unet")),
                AutoencoderKL.from_config(AutoencoderKL.load_config(HERE / family / "vae")),
                CLIPTextModel(CLIPTextConfig.from_pretrained(HERE / family / "text_encoder")),
            )
        assert tuple(sum(p.numel() for p in part.parameters()) for part in parts) == counts, family
    checkpoint = tmp_path / "sd21.safetensors"
    assert config_folder(checkpoint, "sd2").name == "sd2-v" and config_folder(checkpoint, "sd1").name == "sd15"
    checkpoint.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: \"eps\"\n")
    assert config_folder(checkpoint, "sd2").name == "sd2-base"
    checkpoint.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: \"v\"\n")
    assert config_folder(checkpoint, "sd2").name == "sd2-v"


def test_clip_tokenizer_from_the_shipped_merges():
    """Guards the offline CLIP tokenizer: SD's 49,408 tokens and the ids its hub tokenizer gives."""
    from hero_engine.models.model_configs import clip_tokenizer

    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of").input_ids == [49406, 320, 1125, 539, 49407]
    assert clip_tokenizer("!").pad_token_id == 0


# refused families ------------------------------------------------------------------------------


def _fake_single_file(path, names):
    from safetensors.torch import save_file

    save_file({name: torch.zeros(1) for name in names}, path)
    return path


@pytest.mark.parametrize(
    "kind, family",
    [
        ("refiner-folder", "SDXL refiner"), ("sd3-folder", "SD3"), ("flux-folder", "Flux"),
        ("refiner-file", "SDXL refiner"), ("sd3-file", "SD3"), ("flux-file", "Flux"), ("edm-file", "Playground v2.5 (EDM)"),
        ("stabilityai/stable-diffusion-xl-refiner-1.0", "SDXL refiner"), ("playgroundai/playground-v2.5-1024px-aesthetic", "Playground v2.5 (EDM)"),
        ("stabilityai/stable-diffusion-3.5-large", "SD3"), ("black-forest-labs/FLUX.1-dev", "Flux"),
    ],
)
def test_other_families_are_refused_before_a_session_exists(kind, family, tmp_path, tiny_config, monkeypatch):
    """Guards the refusal of SDXL refiners, Playground v2.5 (EDM), SD3 and Flux (an unsupported folder loaded, then
    crashed in sampling; online a hub id would download gigabytes first): one line naming the supported families,
    and no session folder."""
    import json

    from hero_engine.errors import HeroError
    from hero_engine.session.hero_session import HeroSession

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    classes = {"refiner": "StableDiffusionXLImg2ImgPipeline", "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}
    keys = {
        "refiner": ["conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias", "model.diffusion_model.input_blocks.0.0.weight"],
        "edm": ["edm_mean", "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias", "model.diffusion_model.input_blocks.0.0.weight"],
        "sd3": ["model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias"],
        "flux": ["double_blocks.0.img_attn.norm.key_norm.scale"],
    }
    name, _, where = kind.partition("-")
    if where == "folder":
        model = tmp_path / "model"
        model.mkdir()
        (model / "model_index.json").write_text(json.dumps({"_class_name": classes[name]}))
    elif where == "file":
        model = _fake_single_file(tmp_path / "model.safetensors", keys[name])
    else:
        model = kind
    with pytest.raises(HeroError) as info:
        HeroSession.create(tmp_path / "session", tiny_config.replace(model=str(model)))
    message = str(info.value)
    assert f"is a {family} model" in message and "1.x and 2.x, and SDXL" in message and "\n" not in message
    assert not (tmp_path / "session").exists()


def test_sd_models_pass_the_family_check(tmp_path):
    """Guards against refusing what hero supports: SD1.x/SD2.x files, SD folders, SD hub ids, the built-in models."""
    from hero_engine.models.model_configs import check_supported

    sd1 = _fake_single_file(tmp_path / "sd1.safetensors", ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"])
    sd2 = _fake_single_file(tmp_path / "sd2.safetensors", ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.token_embedding.weight"])
    build_tiny_pipeline().save_pretrained(tmp_path / "folder")
    for model in (str(sd1), str(sd2), str(tmp_path / "folder"), "stable-diffusion-v1-5/stable-diffusion-v1-5",
                  "stabilityai/stable-diffusion-2-1", "demo", "tiny", "auto"):
        check_supported(model, online=False)


# smaller points of issue 10 ----------------------------------------------------------------------


def test_demo_weights_load_with_from_pretrained_and_no_dtype():
    """Guards the promise (README, docs/demo-model.md) that the demo model is a plain diffusers pipeline: from_pretrained with no dtype gives
    one precision for every part (it gave a float16 text encoder and a float32 UNet: "mat1 and mat2 ...")."""
    from pathlib import Path

    from diffusers import StableDiffusionPipeline

    import hero_engine

    folder = Path(hero_engine.__file__).parent / "demo" / "weights"
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.float32}
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a hand", num_inference_steps=2, output_type="pt").images.shape == (1, 3, 64, 64)


def test_vae_decodes_in_chunks_of_sample_batch(tmp_path, tiny_config):
    """Guards --sample-batch as the VAE's chunk too (it always decoded 8 at a time, whatever the setting): each of the
    round's chunks (a short first one, then sample_batch at a time) is decoded as it is drawn."""
    from hero_engine.session.hero_session import HeroSession

    with HeroSession.create(tmp_path / "s", tiny_config.replace(sample_batch=4)) as session:
        session._model.load()
        sizes, decode = [], session._model.pipe.vae.decode

        def counting_decode(z, *args, **kwargs):
            sizes.append(z.shape[0])
            return decode(z, *args, **kwargs)

        session._model.pipe.vae.decode = counting_decode
        session.propose()
    assert sizes == [1, 4, 1]


def test_out_of_memory_message_suggests_only_memory_settings(tmp_path, tiny_config):
    """Guards the out-of-memory advice: float16 is no longer a remedy to suggest (bfloat16 is the CUDA default)."""
    from hero_engine.errors import OutOfMemory
    from hero_engine.session.hero_session import HeroSession

    def run_out():
        raise torch.OutOfMemoryError("CUDA out of memory")

    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        with pytest.raises(OutOfMemory) as info:
            session._guard("policy", run_out)
    assert "--sample-batch" in str(info.value) and "--train-batch" in str(info.value) and "float16" not in str(info.value)


def test_start_refuses_an_sdxl_refiner_before_creating_the_session(tmp_path, monkeypatch):
    """Guards `hero-tui start` (which creates the session without the engine): an SDXL refiner is one line, exit 2,
    and no session folder is left behind."""
    import json

    from typer.testing import CliRunner

    from hero_tui.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refiner = tmp_path / "refiner"
    refiner.mkdir()
    (refiner / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline"}))
    folder = tmp_path / "session"
    result = CliRunner().invoke(app, ["start", "--prompt", "a hand", "--model", str(refiner), "--session", str(folder)])
    assert result.exit_code == 2, result.output
    assert "SDXL refiner" in result.output and "1.x and 2.x, and SDXL" in result.output
    assert not folder.exists()
