"""SDXL on the tiny SDXL-architecture pipeline: added conditioning, the loop, resume, export, sample, loading, refusals."""

import json

import pytest
import torch
from engine_support import run_rounds, safetensors_metadata, tuned_exports
from safetensors.torch import load_file, save_file
from sd_layouts import (
    a1111_compvis_name,
    comfyui_unet_lora_names,
    ldm_module_names,
    sdxl_pipeline_to_ldm,
)

from hero_engine.algorithm.policy import PolicySettings, policy_update
from hero_engine.algorithm.sampling import (
    DdimSchedule,
    encode_prompt,
    sample_trajectories,
)
from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.models import lora_export, model_configs, pipelines
from hero_engine.session.hero_session import HeroSession

RANK, ALPHA = 4, 16.0


@pytest.fixture
def sdxl_config(tiny_config):
    return tiny_config.replace(model="tiny-sdxl")


def _lora_policy(n: int = 4, steps: int = 4):
    """The tiny SDXL pipeline with a LoRA moved off zero, its schedule, embeddings and ``n`` sampled trajectories."""
    pipe = pipelines.build_tiny_sdxl_pipeline()
    torch.manual_seed(0)
    params = pipelines.add_lora(pipe.unet, 4, 4.0)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, steps)
    embeddings = encode_prompt(pipe, "a hand")
    noise = torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectories(pipe.unet, schedule, embeddings, noise, eta=1.0, guidance=5.0,
                                     generator=torch.Generator().manual_seed(2), chunk=3)
    return pipe, params, schedule, embeddings, trajectory


def _update(policy, embeddings, lr: float = 0.0, checkpointing: bool = False):
    pipe, params, schedule, _, trajectory = policy
    settings = PolicySettings(train_timesteps=4, policy_batch=4, rows_per_pass=5, ppo_epochs=1, clip_range=1e-4,
                              grad_clip=1e9, eta=1.0, guidance=5.0, checkpointing=checkpointing)
    return policy_update(pipe.unet, params, torch.optim.SGD(params, lr=lr), schedule, embeddings, trajectory,
                         torch.tensor([1.0, -1.0, 0.5, -0.5]), settings, torch.Generator().manual_seed(3))


def _first_ratio_error(policy, embeddings) -> float:
    return _update(policy, embeddings).first_ratio_error


def test_added_conditioning_is_the_same_in_sampling_and_the_policy_update():
    """Guards SDXL's added conditioning on both sides of PPO's ratio: text_embeds (text_encoder_2's pooled projection)
    and time_ids reach the UNet in sampling and in the policy's passes alike, stacked for guidance as the prompt
    embeddings are, so the first ratio is 1 (on a CPU in float32, to ~1e-6).

    The update is also run with other size ids and with the pooled embeddings of guidance swapped: both move the
    ratio far past the clip range, so a policy path that dropped, resized or misordered the added conditioning
    would fail the first assertion."""
    policy = _lora_policy()
    embeddings = policy[3]
    assert embeddings.pooled_cond.shape == (1, 48) and embeddings.time_ids.tolist() == [[64, 64, 0, 0, 64, 64]]
    assert embeddings.cond.shape == (1, 77, 80)  # both encoders' hidden states side by side
    assert _first_ratio_error(policy, embeddings) < 1e-5
    other_size = embeddings.for_size(96, 96)
    assert _first_ratio_error(policy, other_size) > 1e-2
    text = encode_prompt(policy[0], "a red hand")
    swapped = type(embeddings)(embeddings.cond, embeddings.uncond, text.pooled_cond, embeddings.pooled_uncond, embeddings.time_ids)
    assert _first_ratio_error(policy, swapped) > 1e-2


def test_gradient_checkpointing_learns_what_the_plain_update_learns():
    """Guards SDXL's checkpointed policy update: recomputing the activations (added conditioning included) in the
    backward pass moves the LoRA as the plain update does, to float32 rounding, and is off again afterwards."""
    moved = []
    for checkpointing in (False, True):
        policy = _lora_policy()
        before = [p.detach().clone() for p in policy[1]]
        stats = _update(policy, policy[3], lr=1.0, checkpointing=checkpointing)
        assert stats.checkpointing == checkpointing and not policy[0].unet.is_gradient_checkpointing
        moved.append(torch.cat([(p.detach() - b).flatten() for p, b in zip(policy[1], before)]))
    assert moved[0].abs().max() > 1e-4
    torch.testing.assert_close(moved[1], moved[0], rtol=1e-4, atol=1e-7)


def test_sdxl_memory_defaults_yield_to_given_settings():
    """Guards SDXL's memory defaults (config.SDXL_SCALE): a new SDXL session draws 4 images a UNet call unless
    --sample-batch was given; SD models keep the paper's 16."""
    from hero_tui.options import EngineOptions

    assert EngineOptions(given={"prompt": "hand", "model": "tiny-sdxl"}).config().sample_batch == 4
    assert EngineOptions(given={"prompt": "hand", "model": "tiny-sdxl", "sample_batch": 16}).config().sample_batch == 16
    assert EngineOptions(given={"prompt": "hand", "model": "tiny"}).config().sample_batch == 16
    assert HeroConfig(prompt="hand").for_model("x", (), "SDXL").sample_batch == 4


def test_loop_resume_and_family_on_sdxl(tmp_path, sdxl_config):
    """Guards the whole loop on SDXL: two rounds learn (the LoRA moves, first ratio 1), the family is saved with the
    session; reopened for a third round it equals three uninterrupted rounds bit for bit (resume exact)."""
    with HeroSession.create(tmp_path / "a", sdxl_config) as session:
        reports = run_rounds(session, 3)
        final_a = session.propose()
    assert all(r.metrics["policy_first_ratio_error"] < 1e-4 for r in reports)
    assert all(r.metrics["policy_checkpointing"] == 1.0 for r in reports)  # SDXL's memory default
    header = (tmp_path / "a" / "session.toml").read_text()
    assert 'model_family = "SDXL"' in header
    with HeroSession.create(tmp_path / "b", sdxl_config) as session:
        run_rounds(session, 2)
    with HeroSession.open(tmp_path / "b") as session:
        run_rounds(session, 1)
        final_b = session.propose()
    last = sorted((tmp_path / "a" / "checkpoints").iterdir())[-1].name
    lora_a = load_file(tmp_path / "a" / "checkpoints" / last / "lora" / "pytorch_lora_weights.safetensors")
    lora_b = load_file(tmp_path / "b" / "checkpoints" / last / "lora" / "pytorch_lora_weights.safetensors")
    assert lora_a.keys() == lora_b.keys() and all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    assert any(float(v.abs().max()) > 0 for k, v in lora_a.items() if "lora.up" in k or "lora_B" in k)
    for a, b in zip(final_a.images, final_b.images):
        assert a.path.read_bytes() == b.path.read_bytes()


def test_resolution_sets_latents_and_size_ids(tmp_path, sdxl_config):
    """Guards --resolution on SDXL: 96 px images come from 24x24 latents, and the UNet is told 96 px by its size ids."""
    with HeroSession.create(tmp_path / "s", sdxl_config.replace(resolution=96, batch_size=3, sample_batch=3)) as session:
        batch = session.propose()
        assert session._model.latent_shape() == (4, 24, 24)
        assert session._model.embeddings.time_ids.tolist() == [[96, 96, 0, 0, 96, 96]]
    from PIL import Image

    assert Image.open(batch.images[0].path).size == (96, 96)


def test_feedback_encoder_takes_sdxl_latents_at_1024_px():
    """Guards the feedback encoder on SDXL's 128x128 latents: its features keep their size whatever the latent size."""
    from hero_engine.algorithm.representation import FeedbackEncoder

    encoder = FeedbackEncoder()
    assert encoder.features(torch.randn(2, 4, 128, 128)).shape == encoder.features(torch.randn(2, 4, 64, 64)).shape


# export ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["attention", "all"])
def tuned(request, tmp_path_factory):
    """A tiny-SDXL session after one round with alpha 16 != rank 4, both exports, and the tuned UNet's output."""
    return tuned_exports(tmp_path_factory.mktemp("sdxl-export"), "tiny-sdxl", request.param, RANK, ALPHA, _unet_output)


def _unet_output(unet) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    context = torch.randn(2, 77, 80, generator=g)
    added = {"text_embeds": torch.randn(2, 48, generator=g), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    with torch.no_grad():
        return unet(x, torch.tensor([500, 20]), encoder_hidden_states=context, added_cond_kwargs=added).sample


def _loaded_output(path) -> torch.Tensor:
    pipe = pipelines.build_tiny_sdxl_pipeline()  # the session's base weights (seed 0), a StableDiffusionXLPipeline
    pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    return _unet_output(pipe.unet)


def test_both_sdxl_exports_load_into_stable_diffusion_xl_pipeline(tuned):
    """Guards the SDXL exports: StableDiffusionXLPipeline.load_lora_weights of the diffusers file and of the kohya
    file each give the tuned UNet's output (alpha 16 at rank 4 kept), which differs from the base's."""
    base = _unet_output(pipelines.build_tiny_sdxl_pipeline().unet)
    assert (tuned["output"] - base).abs().max() > 1e-3
    for kind in ("diffusers", "kohya"):
        torch.testing.assert_close(_loaded_output(tuned[kind]), tuned["output"], rtol=1e-5, atol=1e-5)
    alphas = {float(v) for k, v in load_file(tuned["kohya"]).items() if k.endswith(".alpha")}
    assert alphas == {ALPHA}


def test_sdxl_export_metadata_names_sdxl(tuned):
    """Guards what an SDXL export says of its base: family SDXL and kohya's sdxl_base_v1-0 (what AUTOMATIC1111 reads
    to offer it with SDXL checkpoints), in both files."""
    for kind in ("diffusers", "kohya"):
        meta = safetensors_metadata(tuned[kind])
        assert meta["hero.model_family"] == "SDXL" and meta["ss_base_model_version"] == "sdxl_base_v1-0"
        assert meta["ss_network_alpha"] == "16" and meta["hero.base_model"] == "tiny-sdxl"


def test_sdxl_kohya_keys_map_on_the_tiny_unet_under_comfyui_and_a1111_rules(tuned):
    """Guards the tiny SDXL kohya file against ComfyUI's rule and AUTOMATIC1111's regexes: every layer is found (the
    tiny UNet has SDXL's block numbering: three levels, two layers a block, attention in the lower two)."""
    state = load_file(tuned["kohya"])
    unet = pipelines.build_tiny_sdxl_pipeline().unet
    layers = {k.split(".")[0] for k in state}
    assert layers and layers <= comfyui_unet_lora_names(unet.state_dict())
    missing = sorted(layer for layer in layers if a1111_compvis_name(layer) not in ldm_module_names(unet))
    assert not missing, missing[:3]


def test_kohya_keys_map_under_comfyui_and_a1111_rules_at_sdxl_size():
    """Guards the kohya layout on SDXL 1.0's real UNet (the shipped config, built on the meta device): ComfyUI's rule
    and AUTOMATIC1111's regexes find every one of the LoRA's 560 layers (to_q, to_k, to_v, to_out.0 of the self- and
    cross-attention of 70 transformer blocks: SDXL's 2 and 10 a block at its lower levels), and the names land on SDXL's own block numbers (input_blocks 4
    to 8, middle_block 1, output_blocks 0 to 5)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model_configs.HERE / "sdxl-base" / "unet"))
    names = set(unet.state_dict())
    a1111_modules = ldm_module_names(unet)
    with torch.device("meta"):
        unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=pipelines.LORA_TARGETS))
    kohya = lora_export.kohya_state_dict(get_peft_model_state_dict(unet), ALPHA)
    layers = {k.split(".")[0] for k in kohya}
    assert len(layers) == 560
    assert layers <= comfyui_unet_lora_names(names)
    compvis = {a1111_compvis_name(layer) for layer in layers}
    assert compvis <= a1111_modules, sorted(compvis - a1111_modules)[:3]
    blocks = {name.split("_transformer_blocks")[0] for name in compvis}
    assert blocks == {f"diffusion_model_input_blocks_{i}_1" for i in (4, 5, 7, 8)} | {"diffusion_model_middle_block_1"} | {
        f"diffusion_model_output_blocks_{i}_1" for i in range(6)}


def test_sample_draws_with_the_tuned_sdxl_model(tuned, tmp_path):
    """Guards `hero-tui sample` on an SDXL session: it writes a grid of the tuned model's images."""
    from PIL import Image
    from typer.testing import CliRunner

    from hero_tui.cli import app

    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["sample", str(tuned["session"]), "-n", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] >= 2 * 64


# loading and refusing ------------------------------------------------------------------------------


def test_sdxl_single_file_loads_offline_with_the_shipped_tokenizers(tmp_path, monkeypatch):
    """Guards an SDXL single file (original SGM layout) loaded with no hub: the family is read from its tensor names,
    both text encoders (told apart by width), the UNet and the VAE come back identical, the second tokenizer pads with
    '!'; and hero's loader takes the shipped sdxl-base configs for such a file."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = pipelines.build_tiny_sdxl_pipeline()
    checkpoint = tmp_path / "model.safetensors"
    save_file(sdxl_pipeline_to_ldm(pipe), checkpoint)
    pipe.save_pretrained(tmp_path / "configs")
    for weights in (tmp_path / "configs").rglob("*.safetensors"):
        weights.unlink()
    assert model_configs.single_file_family(checkpoint) == "sdxl"
    assert model_configs.config_folder(checkpoint, "sdxl").name == "sdxl-base"
    assert model_configs.model_family(str(checkpoint)) == "SDXL"
    loaded = pipelines.load_single_file(checkpoint, config=tmp_path / "configs")
    assert type(loaded).__name__ == "StableDiffusionXLPipeline" and pipelines.model_family(loaded) == "SDXL"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want, got = getattr(pipe, part).state_dict(), getattr(loaded, part).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), part
    assert loaded.tokenizer_2.pad_token == "!" and loaded.tokenizer.pad_token == "<|endoftext|>"


def test_shipped_sdxl_configs_describe_sdxl_base():
    """Guards the sdxl-base configs: built on the meta device they have SDXL 1.0's published parameter counts (UNet,
    VAE, both text encoders), and the offline tokenizers are SD's vocabulary, the second padding with '!'."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = model_configs.HERE / "sdxl-base"
    with torch.device("meta"):
        parts = (
            UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
            CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")),
        )
    counts = tuple(sum(p.numel() for p in part.parameters()) for part in parts)
    assert counts == (2_567_463_684, 83_653_863, 123_060_480, 694_659_840)
    assert model_configs.tokenizer_for(folder, "tokenizer_2").pad_token_id == 0
    assert len(model_configs.tokenizer_for(folder)) == 49408


def test_sdxl_folder_loads_as_sdxl(tmp_path, monkeypatch):
    """Guards a local SDXL diffusers folder: accepted, loaded as StableDiffusionXLPipeline, its family told before
    loading; on the CPU the text encoders stay where the UNet is."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipelines.build_tiny_sdxl_pipeline().save_pretrained(tmp_path / "sdxl")
    assert model_configs.model_family(str(tmp_path / "sdxl")) == "SDXL"
    pipe = pipelines.load_pipeline(str(tmp_path / "sdxl"), pipelines.Runtime.resolve("cpu", "float32"))
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert not any(p.requires_grad for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2) for p in part.parameters())


@pytest.mark.parametrize("model", ["stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/sdxl-turbo"])
def test_sdxl_hub_ids_pass_and_are_known_as_sdxl(model, monkeypatch):
    """Guards SDXL hub ids: no longer refused, and known as SDXL by name where no model_index.json is in reach."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_configs.check_supported(model, online=False)
    assert model_configs.model_family(model, online=False) == "SDXL"


@pytest.mark.parametrize("cls, family", [("StableDiffusionXLImg2ImgPipeline", "SDXL refiner"),
                                         ("StableDiffusionXLInpaintPipeline", "SDXL inpainting"),
                                         ("KolorsPipeline", "Kolors")])
def test_sdxl_relatives_are_refused_in_one_line(cls, family, tmp_path):
    """Guards the refusal of SDXL's relatives hero cannot tune: one line that names them and what works."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    with pytest.raises(HeroError) as info:
        model_configs.check_supported(str(folder), online=False)
    assert f"is a {family} model" in str(info.value) and "SDXL base models" in str(info.value)
    assert "\n" not in str(info.value)


def test_doctor_names_the_family_and_says_whether_sdxl_fits_the_card(tmp_path):
    """Guards doctor's model and CUDA lines for SDXL: the model line names the family (or the refusal), and the VRAM
    line says SDXL's defaults are sized for a 24 GB card, with advice where less memory is free."""
    from hero_tui.doctor import check_model, vram_finding

    gib = 1024**3
    assert check_model("tiny-sdxl").text.endswith("(SDXL)") and check_model("tiny").text.endswith("(SD1.x)")
    refiner = tmp_path / "refiner"
    refiner.mkdir()
    (refiner / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline"}))
    assert "SDXL refiner" in check_model(str(refiner)).hint
    roomy = vram_finding("NVIDIA RTX 4090", 1, 23 * gib, 24 * gib, "SDXL")
    assert "24 GB card" in roomy.text and not roomy.hint
    assert "--resolution 768" in vram_finding("NVIDIA RTX 4070", 1, 11 * gib, 12 * gib, "SDXL").hint
    assert "SDXL" not in vram_finding("NVIDIA RTX 4070", 1, 11 * gib, 12 * gib, "SD1.x").text


def test_export_command_says_how_to_use_an_sdxl_lora_and_its_snippet_draws(tuned, tmp_path, monkeypatch):
    """Guards `hero-tui export` on an SDXL session: it names the LoRA SDXL for ComfyUI and AUTOMATIC1111/Forge, and
    its Python snippet loads the base (StableDiffusionXLPipeline for a hub id or folder) and the LoRA, and draws."""
    from PIL import Image
    from typer.testing import CliRunner

    from hero_tui import render
    from hero_tui.cli import app

    result = CliRunner().invoke(app, ["export", str(tuned["session"]), "--out", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 0, result.output
    assert "it is an SDXL LoRA" in result.output and "<lora:x.kohya:1>" in result.output
    snippet = result.output.split("Python, ready to run:\n", 1)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "snippet", "exec"), {})
    assert Image.open(tmp_path / "hero_sample.png").size == (64, 64)
    hub = render.lora_snippet(HeroConfig(prompt="a hand", model="stabilityai/stable-diffusion-xl-base-1.0"), tmp_path / "x.safetensors", "SDXL")
    assert "StableDiffusionXLPipeline.from_pretrained('stabilityai/stable-diffusion-xl-base-1.0')" in hub


def test_headless_run_on_tiny_sdxl_keeps_the_family_and_sdxl_defaults(tmp_path):
    """Guards `hero-tui run --model tiny-sdxl` end to end: two rounds learn, and the session keeps the family SDXL and
    SDXL's memory default (4 images a UNet call) that nothing given replaced."""
    from typer.testing import CliRunner

    from hero_engine.storage.store import SessionStore
    from hero_tui.cli import app

    folder = tmp_path / "s"
    result = CliRunner().invoke(app, ["run", "--prompt", "a red hand", "--model", "tiny-sdxl", "--batch", "6", "--steps", "4",
                                      "--train-timesteps", "2", "--encoder-epochs", "4", "--rounds", "2", "--session", str(folder)])
    assert result.exit_code == 0, result.output
    info, config = SessionStore.read_header(folder)
    assert info["model_family"] == "SDXL" and config.sample_batch == 4
    assert len(list((folder / "checkpoints").iterdir())) == 2


def _cache_hub_repo(cache, repo: str, files: dict[str, dict]) -> None:
    """``files`` as a hub repo's snapshot in the Hugging Face cache layout (what a finished download leaves)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    for name, content in files.items():
        path = root / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def test_cached_hub_ids_are_told_apart_by_their_files(tmp_path, monkeypatch):
    """Guards the family of a hub id from the cache, offline: an SD pipeline by its text encoder's width, SDXL by its
    pipeline class whatever its name, and a refiner refused though its name does not say so."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    sd = {"_class_name": "StableDiffusionPipeline"}
    _cache_hub_repo(tmp_path, "someone/anime-v1", {"model_index.json": sd, "text_encoder/config.json": {"hidden_size": 768}})
    _cache_hub_repo(tmp_path, "someone/anime-v2", {"model_index.json": sd, "text_encoder/config.json": {"hidden_size": 1024}})
    _cache_hub_repo(tmp_path, "someone/anime-big", {"model_index.json": {"_class_name": "StableDiffusionXLPipeline"}})
    _cache_hub_repo(tmp_path, "someone/anime-polish", {"model_index.json": {"_class_name": "StableDiffusionXLImg2ImgPipeline"}})
    assert [model_configs.known_family(f"someone/anime-{n}") for n in ("v1", "v2", "big")] == ["SD1.x", "SD2.x", "SDXL"]
    with pytest.raises(HeroError, match="is a SDXL refiner model"):
        model_configs.model_family("someone/anime-polish", online=False)


def test_sdxl_vae_decodes_in_float32_where_the_runtime_is_float16():
    """Guards SDXL's VAE against float16 overflow: with a float16 runtime the UNet and text encoders are float16 and
    the VAE (whose config asks to be upcast) float32, and decoding takes the VAE's precision; bfloat16 keeps it."""
    from hero_engine.algorithm.sampling import decode_images

    half = pipelines.load_pipeline("tiny-sdxl", pipelines.Runtime.resolve("cpu", "float16"))
    assert (half.unet.dtype, half.text_encoder_2.dtype, half.vae.dtype) == (torch.float16, torch.float16, torch.float32)
    assert decode_images(half.vae, torch.randn(1, 4, 16, 16))[0].size == (64, 64)
    assert pipelines.load_pipeline("tiny-sdxl", pipelines.Runtime.resolve("cpu", "bfloat16")).vae.dtype == torch.bfloat16
