"""Test helpers: Stable Diffusion's original (LDM) single-file layout, and how front ends name LoRA layers.

Nothing here is used by hero itself; the tests use it to make single-file
checkpoints (diffusers can read that layout but not write it) and to check an
exported LoRA against the key rules of ComfyUI and AUTOMATIC1111.
"""

from __future__ import annotations

import re

import torch

# diffusers -> original layout -------------------------------------------------------------
# The inverse of diffusers' own reader (diffusers/loaders/single_file_utils.py:
# convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint), in the
# shape of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py, generalised to any
# layers_per_block. A round trip through from_single_file (tests/test_models.py) checks it.

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def unet_ldm_name(key: str, layers_per_block: int, up_attention_blocks: set[int]) -> str:
    """A diffusers UNet2DConditionModel weight name in the original layout (without ``model.diffusion_model.``)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = {**DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]}
    if key in fixed:
        return fixed[key]
    per = layers_per_block + 1
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        b, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * per + j}.0.{_resnet(rest)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.0.{_resnet(m[3])}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        b = int(m[1])
        return f"output_blocks.{b * per + layers_per_block}.{2 if b in up_attention_blocks else 1}.conv.{m[2]}"
    raise KeyError(key)


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    cfg = unet.config
    attn_up = {i for i, t in enumerate(cfg.up_block_types) if "CrossAttn" in t}
    return {
        "model.diffusion_model." + unet_ldm_name(k, cfg.layers_per_block, attn_up): v
        for k, v in unet.state_dict().items()
    }


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n_up = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        if key in fixed:
            name = fixed[key]
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            name = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            name = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            name = f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            name = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            name = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            rest = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
            part, _, leaf = m[2].rpartition(".")
            name = f"{m[1]}.mid.attn_1.{rest[part]}.{leaf}"
            if value.ndim == 2:  # the original uses 1x1 convolutions
                value = value[:, :, None, None]
        else:
            raise KeyError(key)
        out["first_stage_model." + name] = value
    return out


def clip_to_ldm(text_encoder, prefix: str = "cond_stage_model.transformer.") -> dict[str, torch.Tensor]:
    """SD1.x's CLIP text encoder under ``cond_stage_model.transformer.text_model.`` (SDXL's first: ``prefix``
    ``conditioner.embedders.0.transformer.``)."""
    return {
        prefix + "text_model." + k.removeprefix("text_model."): v
        for k, v in text_encoder.state_dict().items()
    }


def pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    return {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **clip_to_ldm(pipe.text_encoder)}


def sdxl_pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    """An SDXL pipeline in the original (SGM) single-file layout: both text encoders under ``conditioner.embedders.``."""
    return {
        **unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae),
        **clip_to_ldm(pipe.text_encoder, "conditioner.embedders.0.transformer."),
        **open_clip_to_ldm(pipe.text_encoder_2, "conditioner.embedders.1.model."),
    }


# how front ends find a LoRA's layers --------------------------------------------------------


def comfyui_unet_lora_names(unet_weight_names) -> set[str]:
    """The kohya-style names ComfyUI maps to UNet weights.

    Source: ComfyUI comfy/lora.py, model_lora_keys_unet: for every diffusers UNet
    weight name k (from comfy.utils.unet_to_diffusers), ``"lora_unet_" +
    k[:-len(".weight")].replace(".", "_")`` maps to that weight; the loader then
    reads ``<name>.lora_up.weight``, ``<name>.lora_down.weight`` and ``<name>.alpha``.
    """
    return {"lora_unet_" + k[: -len(".weight")].replace(".", "_") for k in unet_weight_names if k.endswith(".weight")}


_A1111_RESNET_SUFFIX = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
                        "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"}


def a1111_compvis_name(kohya_layer: str) -> str:
    """AUTOMATIC1111's name for a kohya UNet layer, to look up among the model's modules.

    Source: stable-diffusion-webui extensions-builtin/Lora/networks.py,
    convert_diffusers_name_to_compvis (the regexes, in order), matched against
    network_layer_mapping: every module name of the SD1.x/SD2.x model with '.'
    replaced by '_' (``diffusion_model_input_blocks_1_1_...``). The block
    numbering assumes SD's two layers per block.
    """
    def sub(kind: str, name: str) -> str:
        return _A1111_RESNET_SUFFIX.get(name, name) if kind == "resnets" else name

    if m := re.fullmatch(r"lora_unet_conv_in(.*)", kohya_layer):
        return f"diffusion_model_input_blocks_0_0{m[1]}"
    if m := re.fullmatch(r"lora_unet_conv_out(.*)", kohya_layer):
        return f"diffusion_model_out_2{m[1]}"
    if m := re.fullmatch(r"lora_unet_time_embedding_linear_(\d+)(.*)", kohya_layer):
        return f"diffusion_model_time_embed_{int(m[1]) * 2 - 2}{m[2]}"
    if m := re.fullmatch(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", kohya_layer):
        return f"diffusion_model_input_blocks_{1 + int(m[1]) * 3 + int(m[3])}_{1 if m[2] == 'attentions' else 0}_{sub(m[2], m[4])}"
    if m := re.fullmatch(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)", kohya_layer):
        return f"diffusion_model_middle_block_{1 if m[1] == 'attentions' else int(m[2]) * 2}_{sub(m[1], m[3])}"
    if m := re.fullmatch(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", kohya_layer):
        return f"diffusion_model_output_blocks_{int(m[1]) * 3 + int(m[3])}_{1 if m[2] == 'attentions' else 0}_{sub(m[2], m[4])}"
    if m := re.fullmatch(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv", kohya_layer):
        return f"diffusion_model_input_blocks_{3 + int(m[1]) * 3}_0_op"
    if m := re.fullmatch(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv", kohya_layer):
        return f"diffusion_model_output_blocks_{2 + int(m[1]) * 3}_{2 if int(m[1]) > 0 else 1}_conv"
    return kohya_layer


def ldm_module_names(unet) -> set[str]:
    """The original-layout module names of ``unet`` as A1111 indexes them ('.' -> '_')."""
    cfg = unet.config
    attn_up = {i for i, t in enumerate(cfg.up_block_types) if "CrossAttn" in t}
    names = set()
    for key in unet.state_dict():
        module = unet_ldm_name(key, cfg.layers_per_block, attn_up).rsplit(".", 1)[0]
        names.add(("diffusion_model." + module).replace(".", "_"))
    return names


def open_clip_to_ldm(text_encoder, prefix: str = "cond_stage_model.model.") -> dict[str, torch.Tensor]:
    """SD2.x's OpenCLIP text encoder under ``cond_stage_model.model.`` (q, k, v packed into in_proj); SDXL's second,
    with its text projection, under ``prefix`` ``conditioner.embedders.1.model.``.

    The inverse of diffusers' convert_open_clip_checkpoint (DIFFUSERS_TO_LDM_MAPPING["openclip"]).
    """
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
    }
    if "text_projection.weight" in state:  # the original stores it transposed, as a plain matrix
        out[prefix + "text_projection"] = state.pop("text_projection.weight").T.contiguous()
    for i in range(text_encoder.config.num_hidden_layers):
        layer, block = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[block + f"attn.in_proj_{kind}"] = torch.cat([state.pop(layer + f"self_attn.{p}_proj.{kind}") for p in "qkv"])
            out[block + f"attn.out_proj.{kind}"] = state.pop(layer + f"self_attn.out_proj.{kind}")
            out[block + f"ln_1.{kind}"] = state.pop(layer + f"layer_norm1.{kind}")
            out[block + f"ln_2.{kind}"] = state.pop(layer + f"layer_norm2.{kind}")
            out[block + f"mlp.c_fc.{kind}"] = state.pop(layer + f"mlp.fc1.{kind}")
            out[block + f"mlp.c_proj.{kind}"] = state.pop(layer + f"mlp.fc2.{kind}")
    state = {k: v for k, v in state.items() if "position_ids" not in k}
    assert not state, f"unmapped text encoder weights: {sorted(state)}"
    return out
