"""The exported LoRA: diffusers and kohya files that reproduce the tuned UNet, keys every front end maps, metadata."""

import pytest
import torch
from engine_support import safetensors_metadata, tuned_exports
from safetensors.torch import load_file
from sd_layouts import a1111_compvis_name, comfyui_unet_lora_names, ldm_module_names

from hero_engine.models import lora_export
from hero_engine.models.pipelines import (
    LORA_TARGET_MODULES,
    LORA_TARGETS,
    build_tiny_pipeline,
)

RANK, ALPHA = 4, 16.0


@pytest.fixture(scope="module", params=["attention", "all"])
def tuned(request, tmp_path_factory):
    """A tiny-model session after one round with alpha 16 != rank 4, its exports, and its tuned UNet's output.

    Once with the LoRA on the attention projections (the paper's), once on all layers
    (convolutions included: what the demo model uses).
    """
    return tuned_exports(tmp_path_factory.mktemp("export"), "tiny", request.param, RANK, ALPHA, unet_output)


def unet_output(unet) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    context = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([500, 20]), encoder_hidden_states=context).sample


def loaded_output(path=None, state=None) -> torch.Tensor:
    pipe = build_tiny_pipeline()  # the same base weights the session started from (seed 0)
    if state is not None:
        pipe.load_lora_weights(state)
    else:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    return unet_output(pipe.unet)


def test_both_formats_are_written_side_by_side(tuned):
    """Guards the default format (both) and its file names: X.safetensors (diffusers) and X.kohya.safetensors."""
    assert tuned["diffusers"].name == "hand.safetensors" and tuned["kohya"].name == "hand.kohya.safetensors"
    assert lora_export.DEFAULT_FORMAT == "both"
    paths = lora_export.export_paths(tuned["diffusers"].parent, "both")
    assert [p.name for p in paths.values()] == ["pytorch_lora_weights.safetensors", "pytorch_lora_weights.kohya.safetensors"]


def test_diffusers_file_keeps_alpha_and_reproduces_the_tuned_unet(tuned):
    """Guards the alpha of the diffusers file (the issue: alpha 16 at rank 4 was lost, diffusers assumed alpha = rank).

    load_lora_weights of the exported file gives the tuned UNet's output; the same
    weights read as alpha = rank do not, so the check sees a lost alpha.
    """
    base = unet_output(build_tiny_pipeline().unet)
    assert (tuned["output"] - base).abs().max() > 1e-3  # the LoRA has an effect to reproduce
    torch.testing.assert_close(loaded_output(tuned["diffusers"]), tuned["output"], rtol=1e-5, atol=1e-5)
    alpha_lost = loaded_output(state=load_file(tuned["diffusers"]))  # tensors only: no adapter metadata
    assert (alpha_lost - tuned["output"]).abs().max() > 1e-3


def test_kohya_file_reproduces_the_tuned_unet_with_its_alpha(tuned):
    """Guards the kohya file: diffusers reads it (with each layer's .alpha) into the tuned UNet; every alpha is 16."""
    torch.testing.assert_close(loaded_output(tuned["kohya"]), tuned["output"], rtol=1e-5, atol=1e-5)
    state = load_file(tuned["kohya"])
    alphas = {k: float(v) for k, v in state.items() if k.endswith(".alpha")}
    assert alphas and set(alphas.values()) == {ALPHA}


def test_kohya_keys_map_under_comfyui_rules(tuned):
    """Guards the kohya layout against ComfyUI's key rules (the issue: 0 of 56 layers matched, nothing applied).

    Every layer has lora_down, lora_up and alpha under a name ComfyUI maps to a UNet weight.
    """
    state = load_file(tuned["kohya"])
    unet = build_tiny_pipeline().unet
    mapped = comfyui_unet_lora_names(unet.state_dict())
    layers = {k.split(".")[0] for k in state}
    assert layers and layers <= mapped
    for layer in layers:
        assert {f"{layer}.lora_down.weight", f"{layer}.lora_up.weight", f"{layer}.alpha"} <= set(state)
    targets = tuple(f".{t}" for t in LORA_TARGET_MODULES[tuned["targets"]])
    assert len(layers) == sum(1 for n, _ in unet.named_modules() if n.endswith(targets))


def test_kohya_keys_map_under_comfyui_and_a1111_rules_at_sd15_size():
    """Guards the kohya layout on SD1.5's real UNet shape (built on the meta device: no memory, no weights).

    ComfyUI's rule and AUTOMATIC1111's regexes (which assume SD's block numbering)
    both find every one of the LoRA's 128 layers (to_q, to_k, to_v, to_out.0 of 32 attentions).
    """
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from hero_engine.models.model_configs import HERE

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(HERE / "sd15" / "unet"))
    names = set(unet.state_dict())
    a1111_modules = ldm_module_names(unet)
    with torch.device("meta"):
        unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=LORA_TARGETS))
    kohya = lora_export.kohya_state_dict(get_peft_model_state_dict(unet), ALPHA)
    layers = {k.split(".")[0] for k in kohya}
    assert len(layers) == 128
    assert layers <= comfyui_unet_lora_names(names)
    missing = sorted(layer for layer in layers if a1111_compvis_name(layer) not in a1111_modules)
    assert not missing, missing[:3]


def test_metadata_says_rank_alpha_base_model_prompt_and_round(tuned):
    """Guards what an exported file says about itself, in both formats."""
    for kind in ("diffusers", "kohya"):
        meta = safetensors_metadata(tuned[kind])
        assert meta["hero.rank"] == "4" and meta["hero.alpha"] == "16"
        assert meta["hero.base_model"] == "tiny" and meta["hero.prompt"] == "a red hand" and meta["hero.round"] == "0"
        assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "16"
    assert "lora_alpha" in safetensors_metadata(tuned["diffusers"])["lora_adapter_metadata"]


def test_cli_export_format_option(tuned, tmp_path):
    """Guards `hero-tui export --format`: kohya alone writes one file; an unknown format is a one-line error."""
    from typer.testing import CliRunner

    from hero_tui.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tuned["session"]), "--format", "kohya", "--out", str(tmp_path / "k.safetensors")])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["k.safetensors"]
    assert all(k.startswith("lora_unet_") for k in load_file(tmp_path / "k.safetensors"))
    assert "ComfyUI" in result.output
    bad = runner.invoke(app, ["export", str(tuned["session"]), "--format", "ckpt"])
    assert bad.exit_code != 0
