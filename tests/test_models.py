"""Model loading: the tiny model, local folders, and one-line errors for what cannot load."""

import pytest
import torch

from hero_engine.errors import HeroError
from hero_engine.models import Runtime, build_tiny_pipeline, load_pipeline


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
