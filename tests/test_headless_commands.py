"""The headless commands (run, sessions, export, sample, bench) on the real engine: engine options, one-line errors."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from fake_hub import TINY_REPO, serving_the_tiny_model
from typer.testing import CliRunner

from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.storage.lock import SessionLock
from hero_engine.storage.store import SessionStore
from hero_tui.cli import app
from hero_tui.options import EngineOptions, engine_options

PROMPT = "a red hand"
TINY = ["--model", "tiny", "--batch", "6", "--steps", "6", "--train-timesteps", "3", "--encoder-epochs", "8", "--encoder-triplets", "8"]

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def labels(folder: Path, round_: int) -> list:
    db = sqlite3.connect(folder / "hero.db")
    try:
        return [label for (label,) in db.execute("SELECT label FROM images WHERE round = ? ORDER BY idx", (round_,))]
    finally:
        db.close()


def round_row(folder: Path, round_: int) -> tuple:
    db = sqlite3.connect(folder / "hero.db")
    try:
        return db.execute("SELECT submitted_at, updated_at FROM rounds WHERE round = ?", (round_,)).fetchone()
    finally:
        db.close()


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """A session after two headless rounds (round 2 sampled, not labeled), and the output of that run."""
    folder = tmp_path_factory.mktemp("sessions") / "base"
    result = invoke("run", "--prompt", PROMPT, *TINY, "--rounds", "2", "--session", folder)
    assert result.exit_code == 0, result.output
    return folder, result


@pytest.fixture
def session_copy(two_rounds, tmp_path) -> Path:
    folder = tmp_path / "session"
    shutil.copytree(two_rounds[0], folder)
    return folder


# the package boundary and the console script -------------------------------------


def test_cli_imports_without_torch():
    code = "import hero_tui.cli, sys; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_runs_ablations_in_the_default_folder(tmp_path, monkeypatch):
    script = shutil.which("hero-tui", path=os.path.dirname(sys.executable)) or shutil.which("hero-tui")
    assert script, "the hero-tui console script is not installed (pip install -e .)"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    args = ["run", "--prompt", PROMPT, *TINY, "--plain-noise", "--reward", "binary"]
    done = subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\s+0\s+6\s", done.stdout, re.M), done.stdout
    [folder] = (tmp_path / "hero" / "sessions").iterdir()
    assert folder.name.endswith("-a-red-hand")
    _, config = SessionStore.read_header(folder)
    assert config.guided_noise is False and config.reward == "binary"

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    listing = invoke("sessions")
    assert listing.exit_code == 0 and str(folder) in listing.stdout


# happy paths ---------------------------------------------------------------------


def test_run_prints_a_row_per_round_and_records_evaluator_scores(two_rounds):
    folder, result = two_rounds
    assert "seconds per stage" in result.stdout
    assert "evaluator: mean score of the round's images by 'redness', which prefers redder images" in " ".join(result.stdout.split())
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)%\s+(\d+)%\s+(-?[\d.]+)\s", result.stdout, re.M)
    assert [(r[0], r[1]) for r in rows] == [("0", "6"), ("1", "12")]
    db = sqlite3.connect(folder / "hero.db")
    scores = db.execute("SELECT round, value FROM metrics WHERE name = 'evaluator_score' ORDER BY round").fetchall()
    agreement = db.execute("SELECT value FROM metrics WHERE name = 'reward_label_agreement' ORDER BY round").fetchall()
    unseen = db.execute("SELECT value FROM metrics WHERE name = 'reward_label_agreement_unseen' ORDER BY round").fetchall()
    db.close()
    assert [r for r, _ in scores] == [0, 1]
    assert [float(r[6]) for r in rows] == pytest.approx([v for _, v in scores], abs=1e-4)
    assert [int(r[4]) for r in rows] == [round(100 * v) for (v,) in agreement]
    assert [int(r[5]) for r in rows] == [round(100 * v) for (v,) in unseen]


def test_the_tests_remember_sessions_in_a_home_of_their_own():
    """Guards the user's files from a test run (tests/conftest.py): the sessions tests make are remembered, and
    their settings read, in the tests' own home, so `hero-tui resume` on the user's machine never reopens one."""
    import pwd

    from hero_tui import recent_sessions

    home = Path(os.environ["HOME"])
    assert home != Path(pwd.getpwuid(os.getuid()).pw_dir).resolve() and home.name.startswith("hero-tests-home-")
    assert recent_sessions.registry_path().is_relative_to(home)


def test_sessions_lists_prompt_model_rounds_and_labels(two_rounds):
    folder, _ = two_rounds
    result = invoke("sessions", folder.parent)
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if str(folder) in line]
    assert row.split()[:6] == ["a", "red", "hand", "tiny", "2", "12"]
    assert "no sessions" in invoke("sessions", folder.parent / "empty").stdout
    assert_one_line_error(invoke("sessions", folder / "session.toml"), "session.toml is a file: give a folder")


def test_export_writes_a_diffusers_lora(two_rounds, tmp_path):
    from diffusers import StableDiffusionPipeline

    result = invoke("export", two_rounds[0], "--out", tmp_path / "hand.safetensors")
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "hand.safetensors") in result.stdout
    state, _ = StableDiffusionPipeline.lora_state_dict(str(tmp_path), weight_name="hand.safetensors")
    assert state and all(key.startswith("unet.") for key in state)
    umask = os.umask(0o022)
    os.umask(umask)
    for written in (tmp_path / "hand.safetensors", tmp_path / "hand.kohya.safetensors"):  # readable as the umask allows
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask, oct(written.stat().st_mode)


def test_sample_writes_one_png_grid(two_rounds, tmp_path):
    from PIL import Image

    folder = two_rounds[0]
    result = invoke("sample", folder, "-n", "3", "--refined-noise", "--seed", "5", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    width, height = Image.open(folder / "rounds" / "0000" / "000.png").size
    assert Image.open(tmp_path / "grid.png").size == (2 * width, 2 * height)  # 3 images in a 2x2 grid


def test_continuing_with_a_truncated_checkpoint_falls_back_and_succeeds(session_copy):
    lora = session_copy / "checkpoints" / "0001" / "lora" / "pytorch_lora_weights.safetensors"
    lora.write_bytes(lora.read_bytes()[:100])
    # options equal to the stored ones are accepted when continuing
    result = invoke("run", "--session", session_copy, "--prompt", PROMPT, "--batch", "6")
    assert result.exit_code == 0, result.output
    assert "notice: checkpoint 0001 is missing or damaged" in result.stderr
    assert "rebuilding checkpoint 0001" in result.stderr
    assert re.search(r"^\s+2\s+18\s", result.stdout, re.M), result.stdout
    assert (session_copy / "checkpoints" / "0002" / "meta.json").is_file()


# engine options --------------------------------------------------------------------


def test_engine_options_merge_config_file_and_command_line(tmp_path):
    probe = typer.Typer()

    @probe.command()
    @engine_options
    def show(engine: EngineOptions, name: str = "x") -> None:
        print(json.dumps({"given": engine.given, "device": engine.device, "name": name}))

    (tmp_path / "hero.toml").write_text("[config]\nsteps = 7\nbatch_size = 9\n")
    args = ["--config", str(tmp_path / "hero.toml"), "--steps", "9", "--plain-noise", "--reward", "binary", "--device", "cpu", "--name", "y"]
    shown = json.loads(runner.invoke(probe, args).stdout)
    assert shown == {"given": {"steps": 9, "batch_size": 9, "guided_noise": False, "reward": "binary"}, "device": "cpu", "name": "y"}
    assert EngineOptions(shown["given"]).config() == HeroConfig(steps=9, batch_size=9, guided_noise=False, reward="binary")
    assert json.loads(runner.invoke(probe, []).stdout)["given"] == {}


# bad input: one line on stderr, a non-zero exit, nothing lost ------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--prompt", "  "], "the prompt is empty"),
        (["--prompt", PROMPT, "--batch", "2"], "batch size 2 is too small"),
        (["--prompt", PROMPT, "--evaluator", "nope"], "unknown evaluator 'nope'"),
        (["--prompt", PROMPT, "--reward", "nope"], "unknown reward 'nope'"),
        (["--prompt", PROMPT, "--lora-targets", "convs"], "unknown LoRA targets 'convs'"),
        (["--prompt", PROMPT, "--config", "missing.toml"], "config file missing.toml does not exist"),
        (["--prompt", PROMPT, "--weight-decay", "-5"], "--weight-decay must be a finite number >= 0"),
        (["--prompt", PROMPT, "--eta", "inf"], "--eta must be a finite number > 0 and <= 1"),
        (["--prompt", PROMPT, "--lora-alpha", "nan"], "--lora-alpha must be a finite number > 0"),
        (["--prompt", PROMPT, "--noise-eps", "1.5"], "--noise-eps must be a finite number >= 0 and <= 1"),
        (["--prompt", PROMPT, "--model", "/no/such/model.safetensors"], "does not exist"),
        (["--prompt", PROMPT, "--device", "tpu"], "unknown device 'tpu'"),
        (["--prompt", PROMPT, "--dtype", "float8"], "unknown dtype 'float8'"),
    ],
)
def test_run_rejects_bad_options_before_creating_anything(tmp_path, options, fragment):
    """Guards that every setting is checked before the session folder exists (issue 11: dead sessions)."""
    result = invoke("run", *TINY, *options, "--session", tmp_path / "s")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "s").exists()


def test_a_model_that_cannot_load_leaves_no_session_behind(tmp_path, monkeypatch):
    """Guards the model's resolution before the folder exists: a bad --model must not become the most recent session."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    fake = tmp_path / "fake-model"
    fake.mkdir()
    (fake / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')  # looks like SD1.5, does not load
    for model in (str(fake), str(tmp_path / "missing")):
        result = invoke("run", "--prompt", PROMPT, *TINY, "--model", model)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert "Traceback" not in result.output
    root = tmp_path / "data" / "hero" / "sessions"
    assert not root.exists() or not any(root.iterdir())
    assert_one_line_error(invoke("start", "--prompt", PROMPT, "--model", str(tmp_path / "missing"), "--session", tmp_path / "t"), "does not exist")
    assert not (tmp_path / "t").exists()


def test_a_pipeline_folder_missing_a_parts_weights_is_one_line_naming_the_folder(tmp_path):
    """Guards a diffusers folder whose UNet lost its weights, in a user's shell (no verbosity set): one line that names
    the folder and what it must hold (not the hub id's advice), with none of diffusers' own error lines before it,
    and no session folder."""
    from hero_engine.models.pipelines import build_tiny_pipeline

    folder = tmp_path / "pipeline"
    build_tiny_pipeline().save_pretrained(folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    env = {name: value for name, value in os.environ.items() if not name.endswith("_VERBOSITY")}
    done = subprocess.run([sys.executable, "-m", "hero_tui", "run", "--prompt", PROMPT, "--model", str(folder),
                           "--session", str(tmp_path / "s"), "--batch", "4"], capture_output=True, text=True, env=env,
                          timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: could not load model '{folder}'") and "complete diffusers pipeline folder" in lines[0]
    assert "hub id" not in lines[0]
    assert not (tmp_path / "s").exists()


def test_a_pipeline_folder_saved_in_fp16_only_is_loaded_from_its_fp16_files(tmp_path):
    """Guards a local diffusers folder that ``save_pretrained(variant="fp16")`` wrote (no default weight files): a
    float32 session loads it, records the variant, and continues from the same files."""
    import torch

    from hero_engine.models.pipelines import build_tiny_pipeline

    folder = tmp_path / "pipeline"
    build_tiny_pipeline(torch.float16).save_pretrained(folder, variant="fp16")
    result = invoke("run", "--prompt", PROMPT, *TINY[2:], "--model", folder, "--session", tmp_path / "s", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert 'weights_variant = "fp16"' in (tmp_path / "s" / "session.toml").read_text()
    result = invoke("run", "--session", tmp_path / "s", "--device", "cpu")
    assert result.exit_code == 0, result.output


@pytest.fixture
def failing_hub(tmp_path):
    """A local hub that answers every request with 503, the requests it got, and the environment that points at it
    (an empty Hugging Face cache, HOME in tmp_path, no HF_* setting inherited)."""
    import http.server
    import threading

    asked: list[str] = []

    class Failing(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            asked.append(f"{self.command} {self.path}")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = answer

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}", HF_HOME=str(tmp_path / "hf"), HOME=str(tmp_path))
    yield asked, env
    server.shutdown()


def test_a_hub_that_does_not_answer_is_one_line_without_the_downloads_retries(tmp_path, failing_hub):
    """Guards the order of the new-session checks and the hub's verbosity: an uncached hub id while the hub fails is
    refused after one request (the model_index.json download, with its retries, is never tried) with one line, and no
    session folder."""
    asked, env = failing_hub
    done = subprocess.run([sys.executable, "-m", "hero_tui", "run", "--prompt", PROMPT, "--model", "someone/not-cached",
                           "--session", str(tmp_path / "s")], env=env, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "the hub cannot be reached" in lines[0], lines[0]
    assert asked and not any("model_index.json" in request for request in asked), asked
    assert not (tmp_path / "s").exists()


def test_a_download_that_fills_the_disk_is_one_line_naming_the_cache_and_hf_home(tmp_path, small_disk, monkeypatch):
    """Guards a full disk during a hub model's first download (the Hugging Face cache on a 4 MiB disk, a hub on
    localhost): one line that says so, names the cache and HF_HOME, with no warning of huggingface_hub's around it,
    and no session folder left."""
    (small_disk / "taken").write_bytes(b"\0" * (3 * 2**20))  # 1 MiB left: huggingface_hub warns before the UNet
    with serving_the_tiny_model(tmp_path, monkeypatch):
        monkeypatch.setenv("HF_HUB_CACHE", str(small_disk / "hub"))
        done = subprocess.run([sys.executable, "-m", "hero_tui", "run", "--prompt", PROMPT, "--model", TINY_REPO,
                               "--session", str(tmp_path / "s"), "--batch", "4"], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    expected = f"error: no space left on device to download {TINY_REPO} into the Hugging Face cache {small_disk / 'hub'} ("
    assert lines[0].startswith(expected) and lines[0].endswith("or set HF_HOME to a folder on a larger disk"), lines[0]
    assert not (tmp_path / "s").exists()


def test_the_commands_progress_bar_counts_a_downloads_bytes_without_a_total():
    """Guards the commands' progress line for a model's download, which has no total (`run` on a new session, or
    continuing one whose hub model is not cached here): it says the bytes come so far instead of "3000000/0"."""
    import io

    from rich.console import Console

    from hero_tui import render

    output = io.StringIO()
    with render.stage_progress(Console(file=output, force_terminal=True, width=100)) as report:
        report("loading", 0, 1)
        report("downloading", 3_000_000, 0)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.getvalue())
    assert "downloading" in shown and "3 MB so far" in shown and "/0" not in shown, shown


def test_the_commands_progress_bar_draws_every_stage_however_brief():
    """Guards the commands' progress line for stages shorter than its refresh (the sampling of a few images on a GPU,
    a model loaded from the cache): each stage is drawn when it starts, not only the one running at the next tick."""
    import io

    from rich.console import Console

    from hero_tui import render

    output = io.StringIO()
    with render.stage_progress(Console(file=output, force_terminal=True, width=100)) as report:
        for stage, total in (("loading", 1), ("sampling", 2)):
            report(stage, 0, total)
            report(stage, total, total)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.getvalue())
    assert "loading the model" in shown and re.search(r"sampling .* 0% ", shown), shown


def test_the_commands_progress_line_says_the_share_done_and_the_time_left(monkeypatch):
    """Guards what `run`, `sample` and `report` show while the engine works: the stage as the app names it, the
    share done rather than the engine's raw count (image-steps), and the time left: from the stage's pace once it is
    under way, and from its first report when it ran before in the same command (a `run`'s earlier rounds)."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from hero_tui import render

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(render, "time", SimpleNamespace(monotonic=lambda: clock.now))  # the estimate's clock only

    def last_line(reports) -> str:
        """The line as it stood after the last of ``reports`` (when, done of 400), each at its time."""
        output = io.StringIO()
        with render.stage_progress(Console(file=output, force_terminal=True, width=120)) as report:
            for when, done in reports:
                clock.now = when
                report("report", done, 400)
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.getvalue())
        return [line for line in re.split(r"[\r\n]", shown) if line.strip()][-1]

    under_way = last_line([(0.0, 0), (2.0, 20), (10.0, 100)])  # the first step warms up; then 20% in 8 s
    assert under_way.strip().startswith("drawing the report's images") and "/400" not in under_way, under_way
    assert "25%, about 30 s left" in under_way, under_way
    again = last_line([(0.0, 0), (40.0, 400), (40.0, 0)])  # done in 40 s, then from the start again
    assert "0%, about 40 s left" in again, again


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_new_headless_session_tells_its_models_download(tmp_path, monkeypatch, dtype):
    """Guards the first download of a hub model by `hero-tui run` (a hub on localhost): the new session's loading,
    which runs before its folder is made, reports the bytes come so far as the app's does, inside "loading", of a
    total told from the start that the download ends on exactly: the files diffusers picks, the default ones in
    float32 and the fp16 variant's in bfloat16."""
    import ast

    code = ("import sys; from hero_engine.drivers import headless; from hero_engine.config import HeroConfig\n"
            "told = []\n"
            "config = HeroConfig(prompt='a hand', model=sys.argv[2])\n"
            "with headless.open_session(sys.argv[1], config, 'cpu', sys.argv[3], on_progress=lambda *event: told.append(event)):\n"
            "    print(told)\n")
    with serving_the_tiny_model(tmp_path, monkeypatch, delay=1.0, half_variant=True) as hub:
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s"), TINY_REPO, dtype], capture_output=True,
                              text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    told = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert told[0] == ("loading", 0, 1) and told[-1] == ("loading", 1, 1), told
    downloaded = [done for stage, done, total in told if stage == "downloading"]
    assert len(downloaded) >= 2 and downloaded == sorted(downloaded), told
    totals = {total for stage, done, total in told if stage == "downloading"}
    assert totals == {downloaded[-1]}, told
    assert any(name.endswith(".fp16.safetensors") for name in hub.downloaded) == (dtype == "bfloat16"), hub.downloaded


def in_a_terminal(*args: str) -> tuple[int, str]:
    """`hero-tui ARGS` with a pseudo-terminal for its output, as a person runs it: its exit status and all it showed."""
    import pty
    import threading

    terminal, side = pty.openpty()
    command = subprocess.Popen([sys.executable, "-m", "hero_tui", *args], stdin=subprocess.DEVNULL, stdout=side, stderr=side,
                               env={**os.environ, "COLUMNS": "120"})
    os.close(side)
    shown = bytearray()

    def read() -> None:  # as the terminal would, so that a full pty never stops the command
        try:
            while chunk := os.read(terminal, 65536):
                shown.extend(chunk)
        except OSError:  # EIO: the command has exited and all it wrote is read
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        returncode = command.wait(timeout=240)
    finally:
        command.kill()
        reader.join(timeout=10)
        os.close(terminal)
    return returncode, shown.decode(errors="replace")


def test_run_in_a_terminal_shows_its_own_download_line_and_no_hub_bars(tmp_path, monkeypatch):
    """Guards what `hero-tui run` shows in a terminal while a hub model downloads (a hub on localhost): its own
    progress line with the bytes so far, and none of huggingface_hub's per-file bars."""
    with serving_the_tiny_model(tmp_path, monkeypatch, delay=1.0):
        for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):  # as a user's shell
            monkeypatch.delenv(name)
        returncode, text = in_a_terminal("run", "--prompt", PROMPT, "--model", TINY_REPO, "--session", str(tmp_path / "s"),
                                         "--batch", "4", "--steps", "2", "--train-timesteps", "1", "--device", "cpu")
    assert returncode == 0, text[-2000:]
    assert re.search(r"downloading .* \d+ [kMG]B of 4 MB", text), text[-2000:]
    assert "model_index.json: 100%" not in text and "it/s]" not in text, text[-2000:]


def test_sample_and_report_show_the_models_download_and_their_sampling(tmp_path, monkeypatch):
    """Guards the progress line of `hero-tui sample` and `report` on a session whose hub model this machine has not
    got yet (a session moved here, or the cache cleared; a hub on localhost): the download with its bytes so far,
    then the images being drawn, where they used to show nothing until the file was written."""
    folder = tmp_path / "s"
    with serving_the_tiny_model(tmp_path, monkeypatch, delay=1.0):
        returncode, text = in_a_terminal("run", "--prompt", PROMPT, *TINY[2:], "--model", TINY_REPO, "--rounds", "1",
                                         "--session", str(folder))  # a child process: the hub's address is read at import
        assert returncode == 0, text[-2000:]
        shutil.rmtree(os.environ["HF_HUB_CACHE"])
        returncode, text = in_a_terminal("sample", str(folder), "-n", "2", "--out", str(tmp_path / "grid.png"))
        assert returncode == 0, text[-2000:]
        assert re.search(r"downloading .* \d+ [kMG]B of 4 MB", text) and re.search(r"sampling .* 0% ", text), text[-2000:]
        assert (tmp_path / "grid.png").is_file()
        returncode, text = in_a_terminal("report", str(folder), "--samples", "2", "--out", str(tmp_path / "r.html"))
        assert returncode == 0, text[-2000:]
        assert re.search(r"sampling .* 0% ", text), text[-2000:]  # 2 images of 6 steps, the tuned and the base model's


def test_the_sessions_sampling_tells_its_loading_then_its_images(session_copy):
    """Guards the progress ``HeroSession.sample`` and ``sample_against_base`` report (what `sample` and `report` show,
    and the app's metrics screen while it draws the report): the model's loading once a process, then the image-steps
    denoised after every step, counted over both sets for the comparison."""
    from hero_engine.session.hero_session import HeroSession

    told = []
    with HeroSession.open(session_copy) as session:
        steps = session.config.steps
        session.sample(None, 3, on_progress=lambda *event: told.append(event))
        assert told == [("loading", 0, 1), ("loading", 1, 1)] + [("sampling", 3 * k, 3 * steps) for k in range(steps + 1)]
        told.clear()
        session.sample_against_base(2, on_progress=lambda *event: told.append(event))
        assert told == [("sampling", 2 * k, 4 * steps) for k in range(2 * steps + 1)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_engine_refuses_an_uncached_hub_model_without_the_downloads_retries(tmp_path, failing_hub, dtype):
    """Guards the engine's load of a hub id that is not cached (a session made while it was, or --model auto on a CUDA
    machine): a request or two, never a download (in half precision, one asks whether the fp16 files exist), then
    the one-line problem, instead of a minute of download retries."""
    asked, env = failing_hub
    SessionStore.create(tmp_path / "s", HeroConfig(prompt=PROMPT, model="someone/not-cached")).close()
    code = ("import sys; from hero_engine.session.hero_session import HeroSession; from hero_engine.errors import HeroError\n"
            "try:\n    with HeroSession.open(sys.argv[1], device='cpu', dtype=sys.argv[2]) as session: session.propose()\n"
            "except HeroError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s"), dtype], env=env, capture_output=True, text=True,
                          timeout=300)
    assert "someone/not-cached is not in the local cache and the hub cannot be reached" in done.stdout, done.stdout + done.stderr
    about_the_model = [request for request in asked if "someone/not-cached" in request]  # not huggingface_hub's own
    assert 1 <= len(about_the_model) <= 2, asked
    assert not any(request.startswith("GET") and "resolve" in request for request in asked), asked


def test_auto_on_a_cuda_machine_without_sd15_in_reach_is_refused_before_the_session(tmp_path, monkeypatch):
    """Guards `--model auto` on a CUDA machine (the driver and torch's answer are stood in for; this machine has no
    GPU): SD1.5 neither cached nor reachable is one line before a session folder is made, not an error in the app."""
    import huggingface_hub.constants

    from hero_tui import cli

    monkeypatch.setattr(cli, "NVIDIA_DRIVER", tmp_path)  # a path that exists: the driver is there
    monkeypatch.setattr(cli, "_cuda_visible", lambda: True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_one_line_error(invoke("run", "--prompt", PROMPT, "--session", tmp_path / "s"),
                          "--model auto takes stable-diffusion-v1-5/stable-diffusion-v1-5 on a CUDA machine, and model")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--eval-every", "0"], "--eval-every must be at least 1"),
        (["--tasks", "hand,nope"], "unknown evaluator 'nope'"),
        (["--methods", "hero,dpo"], "unknown method(s) dpo"),
        (["--target", "1.5"], "--target is a success rate"),
        (["--budget", "40"], "--budget 40 is not a whole number of rounds of --batch 16: give 32 or 48"),
        (["--budget", "4"], "--budget 4 is not a whole number of rounds of --batch 16: give 16"),
    ],
)
def test_bench_rejects_bad_settings_before_running(tmp_path, options, fragment):
    result = invoke("bench", "--quick", "--model", "tiny", *options, "--out", tmp_path / "bench")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "bench").exists()


def test_bench_refuses_a_results_folder_it_cannot_write_before_running(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("bench", "--quick", "--model", "tiny", "--out", blocker / "bench")
    assert_one_line_error(result, f"cannot write the results to {blocker / 'bench' / 'results.json'} ({blocker} is a file)")


def test_a_folder_that_is_not_a_session(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(invoke("run", "--prompt", PROMPT, *TINY, "--session", tmp_path), "not empty and not a session")
    assert_one_line_error(invoke("export", tmp_path), "is not a hero session")
    assert_one_line_error(invoke("sample", tmp_path / "missing"), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_session_of_a_newer_format(tmp_path):
    SessionStore.create(tmp_path / "s", HeroConfig(prompt=PROMPT, model="tiny")).close()
    header = tmp_path / "s" / "session.toml"
    header.write_text(header.read_text().replace("format_version = 1", "format_version = 99"))
    assert_one_line_error(invoke("run", "--session", tmp_path / "s"), "newer hero")


def test_a_session_locked_by_another_process(tmp_path):
    SessionStore.create(tmp_path / "s", HeroConfig(prompt=PROMPT, model="tiny")).close()
    lock = SessionLock(tmp_path / "s")
    lock.acquire()
    try:
        assert_one_line_error(invoke("run", "--session", tmp_path / "s"), "is in use")
    finally:
        lock.release()


def test_continuing_with_conflicting_options(session_copy):
    result = invoke("run", "--session", session_copy, "--prompt", "a blue hand", "--batch", "8")
    assert_one_line_error(result, "--batch 8 (the session has 6)")
    assert "--prompt 'a blue hand'" in result.stderr


def test_out_of_memory_leaves_the_round_to_update_again(session_copy, monkeypatch):
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("hero_engine.algorithm.learner.policy_update", out_of_memory)
    assert_one_line_error(invoke("run", "--session", session_copy), "out of memory during learning; the session is intact")
    assert labels(session_copy, 2).count(None) == 0 and round_row(session_copy, 2)[1] is None

    monkeypatch.undo()
    result = invoke("run", "--session", session_copy)
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s+2\s+18\s", result.stdout, re.M), result.stdout
    assert round_row(session_copy, 2)[1] is not None


def test_ctrl_c_during_a_stage_keeps_the_labels(session_copy, monkeypatch):
    from hero_engine.session.hero_session import HeroSession

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hero_engine.algorithm.learner.policy_update", interrupt)
    result = invoke("run", "--session", session_copy)
    assert result.exit_code == 130, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("interrupted") and "saved" in line and f"hero-tui run --session {session_copy}" in line
    assert "Traceback" not in result.output
    assert labels(session_copy, 2).count(None) == 0
    with HeroSession.open(session_copy) as session:  # the lock was released; the labeled round waits for its update
        assert session.current_round == 2 and session.batch(2).submitted


# faults: one line, a non-zero exit, and the session opens again once the cause is gone ---


def test_export_to_an_unwritable_path(two_rounds, tmp_path):
    """Guards export's write: /proc cannot hold files; one line, exit 2, and the session exports fine afterwards."""
    assert_one_line_error(invoke("export", two_rounds[0], "--out", "/proc/x.safetensors"), "cannot write the LoRA to /proc/x.safetensors")
    result = invoke("export", two_rounds[0], "--out", tmp_path / "ok.safetensors")
    assert result.exit_code == 0, result.output


def test_export_refuses_a_place_it_cannot_write_before_any_work(two_rounds, tmp_path):
    """Guards the export's check of --out: a file where the LoRA's folder would go, a folder named like the file, and a
    folder under a file each get one line naming the place, and nothing is made there."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "taken.safetensors").mkdir()
    assert_one_line_error(invoke("export", two_rounds[0], "--out", blocker), f"{blocker} is a file")
    assert_one_line_error(invoke("export", two_rounds[0], "--out", tmp_path / "taken.safetensors"), "taken.safetensors is a folder")
    assert_one_line_error(invoke("export", two_rounds[0], "--out", blocker / "hand.safetensors"),
                          f"cannot write the LoRA to {blocker / 'hand.safetensors'} ({blocker} is a file)")
    assert blocker.read_text() == "not a folder" and not any((tmp_path / "taken.safetensors").iterdir())


def test_sample_refuses_an_output_it_cannot_write_before_drawing(two_rounds, tmp_path):
    """Guards sample's check of --out, before the model loads: a name Pillow has no format for, no extension, a folder,
    a folder under a file, /proc; one line each, and nothing written. A good name after them draws (the lock was let go)."""
    from PIL import Image

    from hero_engine.drivers import headless
    from hero_engine.session.hero_session import HeroSession

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folder = two_rounds[0]
    refused = {
        tmp_path / "grid.jpgx": "'.jpgx' is no image format Pillow writes",
        tmp_path / "grid": "the name has no image extension",
        tmp_path: f"{tmp_path} is a folder",
        blocker / "grid.png": f"({blocker} is a file)",
        Path("/proc/grid.png"): "cannot write the samples to /proc/grid.png",
    }
    for out, fragment in refused.items():
        assert_one_line_error(invoke("sample", folder, "-n", "2", "--out", out), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    with HeroSession.open(folder) as session:
        with pytest.raises(HeroError, match="no image format"):
            headless.sample_grid(session, 2, out=tmp_path / "grid.jpgx")
        assert session._model.pipe is None  # refused before the model was loaded
    result = invoke("sample", folder, "-n", "2", "--out", tmp_path / "grid.jpg")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "grid.jpg").format == "JPEG"


def test_a_lost_database_is_refused_and_the_rounds_on_disk_stay(session_copy):
    """Guards the store's open: with hero.db emptied or deleted, continuing or exporting the session used to start it
    over at round 0, drawing over the rounds and checkpoints on disk. Now one line says the database was lost (resume
    says it before the app opens), every file on disk stays as it was, and no new hero.db is made."""
    def files() -> dict[str, bytes]:
        return {str(path.relative_to(session_copy)): path.read_bytes()
                for kind in ("rounds", "checkpoints") for path in sorted((session_copy / kind).rglob("*")) if path.is_file()}

    for db in session_copy.glob("hero.db*"):
        db.unlink()
    before = files()
    assert any(name.startswith("checkpoints/") for name in before)
    for command in (["run", "--session", session_copy], ["export", session_copy, "--out", session_copy / "x.safetensors"],
                    ["resume", session_copy]):
        assert_one_line_error(invoke(*command), "hero.db is missing or empty but rounds/ holds 3 and checkpoints/ holds 2")
    assert not (session_copy / "hero.db").exists()
    (session_copy / "hero.db").write_bytes(b"")
    assert_one_line_error(invoke("run", "--session", session_copy), "the labels' database was lost")
    assert files() == before and (session_copy / "hero.db").stat().st_size == 0


def test_a_read_only_session_folder(session_copy, monkeypatch):
    """Guards the lock and the database against a folder that cannot be written (the issue's traceback at .lock)."""
    import builtins

    import hero_engine.storage.lock as lock_module

    if os.geteuid() == 0:  # root writes through permission bits: refuse the lock file the way a read-only mount does
        def refuse(path, *args, **kwargs):
            if Path(path).name == ".lock":
                raise PermissionError(13, "Permission denied", str(path))
            return builtins.open(path, *args, **kwargs)

        monkeypatch.setattr(lock_module, "open", refuse, raising=False)
    else:
        session_copy.chmod(0o555)
        (session_copy / ".lock").unlink(missing_ok=True)
    for args in (["run", "--session", session_copy], ["export", session_copy], ["sample", session_copy]):
        assert_one_line_error(invoke(*args), "cannot open session")
    monkeypatch.undo()
    session_copy.chmod(0o755)
    result = invoke("run", "--session", session_copy)
    assert result.exit_code == 0, result.output


def test_disk_full_while_saving_a_checkpoint(session_copy, monkeypatch):
    """Guards the saving stage under a full disk: one line, no temp folder left, the round is learned again afterwards."""
    import errno

    import torch

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", full)
    assert_one_line_error(invoke("run", "--session", session_copy), "could not save checkpoint 0002 (no space left on device)")
    assert sorted(p.name for p in (session_copy / "checkpoints").iterdir()) == ["0000", "0001"]
    monkeypatch.undo()
    result = invoke("run", "--session", session_copy)
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s+2\s+18\s", result.stdout, re.M), result.stdout


def test_unexpected_errors_are_one_line_with_the_traceback_in_a_log(session_copy, monkeypatch, tmp_path):
    """Guards the last net in HeroGroup: an error no command expected is one line naming the log that holds its traceback."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "state"))

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("hero_engine.algorithm.learner.policy_update", broken)
    result = invoke("run", "--session", session_copy)
    assert_one_line_error(result, "ZeroDivisionError: a bug (details in ")
    log_file = Path(result.stderr.split("(details in ", 1)[1].rstrip().rstrip(")"))
    assert "Traceback" in log_file.read_text() and "ZeroDivisionError" in log_file.read_text()


def test_continuing_after_damage_that_keeps_the_size(session_copy):
    """Guards run against the issue's damaged encoder (first 8 bytes) and a deleted PNG: notices, then the rounds go on."""
    encoder = session_copy / "checkpoints" / "0001" / "encoder.safetensors"
    raw = bytearray(encoder.read_bytes())
    raw[:8] = b"\xff" * 8
    encoder.write_bytes(bytes(raw))
    (session_copy / "rounds" / "0002" / "001.png").unlink()
    result = invoke("run", "--session", session_copy)
    assert result.exit_code == 0, result.output
    assert "notice: checkpoint 0001 is missing or damaged" in result.stderr
    assert "decoded again from the stored latents" in result.stderr
    assert (session_copy / "rounds" / "0002" / "001.png").is_file()
    assert re.search(r"^\s+2\s+18\s", result.stdout, re.M), result.stdout


def test_sessions_lists_unreadable_sessions_and_shortens_long_prompts(tmp_path):
    """Guards `sessions`: a session it cannot read is listed with the reason, and a 10,000-character prompt is cut."""
    SessionStore.create(tmp_path / "long", HeroConfig(prompt="hand " * 2000, model="tiny")).close()
    SessionStore.create(tmp_path / "control", HeroConfig(prompt="a\x1b[31mred", model="tiny")).close()
    SessionStore.create(tmp_path / "damaged", HeroConfig(prompt=PROMPT, model="tiny")).close()
    (tmp_path / "damaged" / "session.toml").write_text("[session\nformat_version = 1")
    SessionStore.create(tmp_path / "version", HeroConfig(prompt=PROMPT, model="tiny")).close()
    header = tmp_path / "version" / "session.toml"
    header.write_text(header.read_text().replace("format_version = 1", "format_version = 0"))
    result = invoke("sessions", tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [damaged] = [line for line in lines if str(tmp_path / "damaged") in line]
    [version] = [line for line in lines if str(tmp_path / "version") in line]
    assert "cannot be read" in damaged and "is damaged" in damaged
    assert "cannot be read" in version and "format_version 0" in version
    [long] = [line for line in lines if str(tmp_path / "long") in line]
    assert "…" in long and len(long) < 400
    assert "\x1b" not in result.stdout and "a\\x1b[31mred" in result.stdout


def test_export_prints_python_that_loads_the_base_and_the_lora(tmp_path, monkeypatch):
    """Guards the snippet `export` prints: run as it is, it loads the session's base (here the demo model,
    through the public hero_engine.demo.load_pipeline) and the exported LoRA, and draws the prompt."""
    folder = tmp_path / "demo-session"
    result = invoke("run", "--prompt", "a flower", "--model", "demo", "--batch", "6", "--steps", "4", "--train-timesteps", "2",
                    "--encoder-epochs", "4", "--rounds", "1", "--session", folder)
    assert result.exit_code == 0, result.output
    result = invoke("export", folder, "--out", tmp_path / "flower.safetensors")
    assert result.exit_code == 0, result.output
    snippet = result.stdout.split("Python, ready to run:\n", 1)[1]
    assert "from hero_engine.demo import load_pipeline" in snippet and "flower.safetensors" in snippet
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "snippet", "exec"), scope)  # noqa: S102 - the test runs exactly what a person would paste
    assert scope["image"].size == (64, 64)
    assert (tmp_path / "hero_sample.png").is_file()
