"""The demo model's parts: an SD1.5-shaped pipeline (VAE x4, CLIP text encoder, cross-attention UNet), small."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hero_engine.evaluation.world import SIZE


@dataclass(frozen=True)
class DemoSize:
    """Channel counts of the demo model; ``tiny`` is for the training smoke test."""

    vae_channels: tuple[int, ...] = (16, 32, 64)
    unet_channels: tuple[int, ...] = (32, 64, 128)
    text_width: int = 128
    text_layers: int = 3

    @classmethod
    def tiny(cls) -> DemoSize:
        return cls(vae_channels=(8, 16, 16), unet_channels=(16, 32, 32), text_width=32, text_layers=1)


def build_vae(size: DemoSize):
    from diffusers import AutoencoderKL

    n = len(size.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=size.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=SIZE,
    )


def build_text_encoder(size: DemoSize, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=size.text_width,
            intermediate_size=size.text_width * 4,
            num_hidden_layers=size.text_layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def build_unet(size: DemoSize, latent_side: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=latent_side,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=size.unet_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=size.text_width,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def assemble_pipeline(vae, text_encoder, tokenizer, unet):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from hero_engine.models.pipelines import SD15_SCHEDULER_CONFIG

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
