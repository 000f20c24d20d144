"""The built-in demo model: its architecture, tokenizer, training script, weights and caption report (its world and judge are in hero_engine.evaluation).

    from hero_engine.demo import load_pipeline
    pipe = load_pipeline()                      # the demo base, a diffusers StableDiffusionPipeline
    pipe.load_lora_weights("exports", weight_name="lora.safetensors")
"""

from __future__ import annotations


def load_pipeline(dtype=None):
    """The demo model as a diffusers ``StableDiffusionPipeline`` (float32 unless ``dtype`` says otherwise), offline."""
    import torch
    from diffusers import StableDiffusionPipeline

    from hero_engine.models.pipelines import DEMO_WEIGHTS

    return StableDiffusionPipeline.from_pretrained(
        str(DEMO_WEIGHTS), dtype=dtype or torch.float32, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
