"""The scripts under tests/benchmarks/, run by hand and by no other test, kept runnable on a CPU-only machine.

Every script's ``--help`` and every research subcommand's (each file found there and each
module of research_commands/, so a new one is covered without being named here), then one
tiny run of those with settings small enough for seconds. Not run here: the scripts that
run a model at its own defaults (bench_policy.py, bench_demo_session.py,
bench_round_latency.py, bench_time_left.py: a minute and more on a CPU, even on the tiny model),
``research.py sweep-demo-settings`` (an untuned and a tuned session per variant: half a
minute at the least), bench_tui_bytes.py (half a minute of waiting for the app to go
quiet), and gpu_check.py, which tests/test_gpu_check.py runs on the CPU.

Every command runs in a subprocess with the environment set here: one torch thread, HOME
and the XDG folders in a temporary folder, the Hugging Face hub offline, a plain terminal,
no PYTHONPATH (tests/benchmarks/harness.py puts the checkout on sys.path).
"""

import json
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parent / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "harness.py")
RESEARCH = sorted(info.name.replace("_", "-") for info in pkgutil.iter_modules([str(BENCHMARKS / "research_commands")]))
HELPS = [(script,) for script in SCRIPTS] + [("research.py", command) for command in RESEARCH]


def _environment(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state"), "XDG_DATA_HOME": str(home / "data"),
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run(folder: Path, script: str, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """``python tests/benchmarks/SCRIPT ARGS`` in ``folder``, which is also its HOME."""
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=folder, env=_environment(folder), check=False)


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """Every ``--help`` of HELPS, one per core at a time: each is mostly imports (torch, hero_engine), seconds of one core."""
    folder = tmp_path_factory.mktemp("helps")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(HELPS, pool.map(lambda argv: _run(folder, *argv, "--help"), HELPS)))


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_help_runs_on_a_cpu(helps, argv):
    """The script (or research subcommand) imports everything it uses and parses its options before it touches a GPU
    or loads a model: ``--help`` exits 0 and prints its usage. An import the engine no longer has fails here."""
    result = helps[argv]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"usage: {' '.join(argv)} "), result.stdout


def test_research_help_lists_every_subcommand(helps):
    """``research.py --help`` names every module of research_commands/ as a subcommand, with its summary."""
    usage = helps[("research.py",)].stdout
    assert all(f"\n    {command} " in usage or f"\n    {command}\n" in usage for command in RESEARCH), usage


def test_research_reports_options_that_do_not_go_together_as_argparse_does(tmp_path):
    """A subcommand's ``UsageError`` ends the run as a bad option does: its usage, the message, exit status 2."""
    result = _run(tmp_path, "research.py", "representation", "--rounds", "2", "--pool-size", "32")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: research.py representation")
    assert "error: --pool-size must hold the labeled rounds twice over (at least 64)" in result.stderr


def test_reward_bound_trains_one_round_on_the_judges_rewards(tmp_path):
    """``research.py reward-bound`` for one round of 8 on ``hand``: the session's learner takes the judge's rewards
    through its ``rewards_override`` (the script stops if an update did not use them), the rewards follow the judge's
    score exactly, and the figures are printed and written to ``--out``."""
    out = tmp_path / "bound.json"
    result = _run(tmp_path, "research.py", "reward-bound", "--tasks", "hand", "--seeds", "0", "--budget", "8",
                  "--batch", "8", "--eval-images", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hand       seed 0 judge's score: plain " in result.stdout
    assert "hand (score)                             gain " in result.stdout and "over 1 seed(s)" in result.stdout
    [row] = json.loads(out.read_text())
    assert row["task"] == "hand" and row["reward"] == "score" and row["rank_correlation"] == 1.0
    assert 0 <= row["untuned"] <= 1 and 0 <= row["tuned"] <= 1


QUICK = {
    "step-gradients, SD1.5's schedule": (("research.py", "step-gradients", "--schedule", "sd15", "--steps", "3"),
                                         "sd15 schedule, 3 steps, eta 1.0"),
    "noise-influence": (("research.py", "noise-influence", "--tasks", "hand", "--noises", "2", "--draws", "2", "--steps", "2"),
                        "2 initial noises x 2 step-noise draws"),
    "supervised-bound": (("research.py", "supervised-bound", "--task", "hand", "--pool", "8", "--steps", "1",
                          "--eval-images", "4", "--eval-every", "1"), "after 1 steps: held-out success"),
    "representation": (("research.py", "representation", "--task", "counting", "--trials", "1", "--rounds", "1",
                        "--pool-size", "32"), "defaults                 success "),
    "bench_engine, tiny model": (("bench_engine.py", "--batch", "4", "--steps", "2", "--rounds", "1", "--encoder-epochs", "2"),
                                 "peak RSS"),
    "bench_tui_latency": (("bench_tui_latency.py", "--presses", "2", "--burn", "0", "--batch", "4"),
                          "key-to-screen latency over 2 presses"),
    "bench_app_round, tiny model": (("bench_app_round.py", "--model", "tiny", "--rounds", "1", "--batch", "4", "--steps", "2",
                                     "--train-timesteps", "2", "--encoder-epochs", "2"), " mean "),
}


@pytest.mark.parametrize("name", QUICK)
def test_quick_run(tmp_path, name):
    """One tiny run of a script or research subcommand gets to its last figures: it still fits the engine's API."""
    argv, expected = QUICK[name]
    result = _run(tmp_path, *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout, result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_unet_profile_refuses_a_cpu_machine_in_one_line(tmp_path):
    """Without CUDA the profile stops at once with one line, after its options (so ``--help`` works anywhere)."""
    result = _run(tmp_path, "gpu_unet_profile.py")
    assert result.returncode == 1
    assert result.stderr == "no CUDA device is visible: this profile is for a GPU\n"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_unet_profile_runs_on_a_gpu(tmp_path):
    """The whole profile on the GPU: every timing row, through torch.compile's."""
    result = _run(tmp_path, "gpu_unet_profile.py", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "forward+backward, batch  16" in result.stdout and "compiling and the timed calls" in result.stdout
