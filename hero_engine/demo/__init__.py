"""The built-in demo model: its architecture, tokenizer, training script, weights and caption report (its world and judge are in hero_engine.evaluation).

    from hero_engine.demo import load_pipeline
    pipe = load_pipeline()                      # the demo base, a diffusers StableDiffusionPipeline
    pipe.load_lora_weights("exports", weight_name="lora.safetensors")
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"  # a diffusers pipeline folder


def load_pipeline(dtype=None):
    """The demo model as a diffusers ``StableDiffusionPipeline`` (float32 unless ``dtype`` says otherwise), offline."""
    import torch
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        str(WEIGHTS), dtype=dtype or torch.float32, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
