"""Models and formats: loading Stable Diffusion pipelines, their single-file configs, the LoRA on the UNet, merging it, and exporting it."""
