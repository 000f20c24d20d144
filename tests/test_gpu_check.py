"""``tests/benchmarks/gpu_check.py``, run by hand on a GPU machine, kept runnable: its help, its one-line refusal
without CUDA, and a CPU run of the whole script on the tiny model that prints every figure it reports."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_runs_without_a_gpu():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "--memory-cap-gib" in result.stdout and "--model" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_it_fails_with_one_line():
    result = _run()
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("no CUDA device is visible")


def test_a_cpu_run_on_the_tiny_model_prints_every_figure():
    """The script end to end on the CPU: two rounds, each with its stage seconds, whole round, first images, the
    update's first ratio error and clip fraction; each round's old log-probs aligned first; batch sizes and precision.
    Fails if the script falls behind the session's API or a figure it reports goes missing."""
    result = _run("--device", "cpu", "--model", "tiny", "--batch", "8", "--steps", "2", "--encoder-epochs", "2", "--train-timesteps", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    header = next(line for line in out.splitlines() if line.lstrip().startswith("round kept best"))
    for column in ("whole round", "first images", "ratio error", "clipped"):
        assert column in header
    rows = [line.split() for line in out.splitlines() if line.split()[:2] in (["0", "no"], ["1", "yes"])]
    assert len(rows) == 2 and all(float(row[-2]) < 1e-4 and row[-1] == "0.0%" for row in rows)
    assert all(float(row[-3]) < float(row[-4]) for row in rows), out  # the first images come before the whole round is done
    assert "round 0: stored old log-probs off the update's path by" in out
    assert "round 1: stored old log-probs off the update's path by" in out
    assert "sample_batch 16, train_batch 0 (policy passes sized from free memory)" in out
    assert "round 1: policy passes of up to 8 rows (trajectory x timestep), gradient checkpointing off" in out
    assert "targets (docs/performance.md)" in out and "CPU: first images" in out


def test_the_sdxl_mode_runs_on_the_cpu_with_the_tiny_sdxl_model():
    """``--sdxl`` end to end on the CPU with tiny-sdxl: SDXL's memory defaults (4 images a UNet call, gradient
    checkpointing), where the text encoders wait and the VAE's precision, the first ratio error per round, and SDXL's
    targets. Fails if the script's SDXL path falls behind the engine (the gradient check without added conditioning
    would fail in the UNet)."""
    result = _run("--sdxl", "--model", "tiny-sdxl", "--device", "cpu", "--batch", "8", "--steps", "2", "--encoder-epochs", "2",
                  "--train-timesteps", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "model family SDXL; 64x64 px; text encoders on cpu, cpu after encoding; VAE in torch.float32" in out
    assert "sample_batch 4, train_batch 0" in out and "precision: frozen model torch.float32" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:2] in (["0", "no"], ["1", "yes"])]
    assert len(rows) == 2 and all(float(row[-2]) < 1e-4 for row in rows)
    assert "round 1: policy passes of up to 8 rows (trajectory x timestep), gradient checkpointing on" in out
    assert "LoRA gradient, torch.float32 vs float32 on the same device: cosine 1.00000" in out
    assert "SDXL at 64 images, 50 steps, 1024 px on one H100" in out


def test_the_sdxl_architecture_builder_writes_a_folder_hero_loads_as_sdxl(tmp_path, monkeypatch):
    """gpu_check --sdxl's model: built from a config folder (here tiny-sdxl's, standing for the shipped sdxl-base), saved
    with random weights, and loaded by hero as an SDXL pipeline with every part's shape."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    from bench_engine import build_sdxl_architecture

    from hero_engine.models import pipelines

    tiny = pipelines.build_tiny_sdxl_pipeline()
    tiny.save_pretrained(tmp_path / "configs")
    folder = build_sdxl_architecture(tmp_path / "sdxl", configs=tmp_path / "configs")
    loaded = pipelines.load_pipeline(str(folder), pipelines.Runtime.resolve("cpu", "float32"))
    assert pipelines.model_family(loaded) == "SDXL"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want = {k: v.shape for k, v in getattr(tiny, part).state_dict().items()}
        assert {k: v.shape for k, v in getattr(loaded, part).state_dict().items()} == want, part


def test_wheels_that_do_not_install_end_in_one_line(tmp_path, monkeypatch):
    """Guards the install step's failure on a GPU machine without an index: pip's own error, then one line that says
    what could not be installed and from where, and a non-zero exit, not a traceback."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import gpu_check

    monkeypatch.setattr(gpu_check, "NEEDED", {"hero_no_such_module": "hero-no-such-package"})
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "unrelated-1.0-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        gpu_check.ensure_packages(wheels)
    assert str(exit_.value) == f"pip could not install hero-no-such-package from {wheels} (its error above): add the wheels it names"
