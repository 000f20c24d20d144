"""The app's commands (start, resume, doctor) without a terminal: one-line refusals, --help probes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tui_support import make_session

from hero_engine.errors import HeroError
from hero_engine.storage.lock import SessionLock
from hero_engine.storage.store import SessionStore
from hero_tui import launch, recent_sessions
from hero_tui.app import binding_scopes
from hero_tui.keys import load_keymap


def hero_tui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with stdin and stdout piped (no terminal)."""
    return subprocess.run(
        [sys.executable, "-c", "from hero_tui.cli import main; main()", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, env={**os.environ, **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_neither_probes_the_terminal_nor_imports_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from hero_tui.cli import app\n"
        "for args in (['--help'], ['start', '--help'], ['resume', '--help'], ['doctor', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'textual_image', 'textual.app') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_app_modules_never_import_torch():
    code = (
        "import sys, hero_tui.app, hero_tui.launch, hero_tui.doctor, hero_tui.engine_client\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'hero_engine.session.hero_session') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_start_without_a_terminal_points_to_the_headless_runner(tmp_path: Path):
    line = one_error_line(hero_tui("start", "--prompt", "a hand", "--session", str(tmp_path / "new")))
    assert "hero-tui run" in line
    assert not (tmp_path / "new").exists()


def test_start_on_a_session_names_the_resume_command(tmp_path: Path):
    folder = make_session(tmp_path / "s")
    line = one_error_line(hero_tui("start", "--prompt", "a hand", "--session", str(folder)))
    assert f"hero-tui resume {folder}" in line


def test_resume_of_a_locked_session_is_one_line(tmp_path: Path):
    folder = make_session(tmp_path / "s")
    lock = SessionLock(folder)
    lock.acquire()
    try:
        line = one_error_line(hero_tui("resume", str(folder)))
    finally:
        lock.release()
    assert "in use" in line


def test_a_session_open_in_the_app_is_refused_naming_the_app_not_its_engine(tmp_path: Path):
    """Guards lock_holder: resume, export and run each name the app that holds the session and how to reach it, and
    `sessions` lists the session as open in that app."""
    folder = make_session(tmp_path / "s")
    engine = (f"import time; from hero_engine.storage.lock import SessionLock; lock = SessionLock({str(folder)!r}); lock.acquire(); "
              "print('locked', flush=True); time.sleep(60)")
    app = (f"import subprocess, sys; import hero_tui; child = subprocess.Popen([sys.executable, '-c', {engine!r}]); "
           "child.wait()")  # an app process (its command names hero_tui) whose child holds the lock, as the engine does
    holder = subprocess.Popen([sys.executable, "-c", app], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for command in (["resume", str(folder)], ["export", str(folder)], ["run", "--session", str(folder)]):
            line = one_error_line(hero_tui(*command))
            assert f"open in the hero app, process {holder.pid}" in line and "quit it there with q" in line, line
        listing = hero_tui("sessions", str(tmp_path), env={"COLUMNS": "300"})
        assert f"  the app, process {holder.pid}  {folder}" in listing.stdout, listing.stdout
    finally:
        for child in Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split():
            os.kill(int(child), 9)
        holder.wait(timeout=10)


def test_resume_without_a_folder_takes_the_most_recent_session(tmp_path: Path):
    older = make_session(tmp_path / "older")
    time.sleep(0.05)
    newer = make_session(tmp_path / "newer")
    store = SessionStore(older)
    store.open_round(0, 1)  # activity after `newer` was made
    store.add_images(0, [(0, "rounds/0000/000.png")])
    store.close()
    nobody = tmp_path / "no-registry.json"
    assert launch.most_recent_session(tmp_path, nobody) == older
    assert newer.exists()
    with pytest.raises(HeroError, match="no sessions"):
        launch.most_recent_session(tmp_path / "empty", nobody)


def test_resume_without_a_folder_takes_a_session_opened_elsewhere(tmp_path: Path):
    root, registry = tmp_path / "data" / "sessions", tmp_path / "data" / "recent_sessions.json"
    in_root = make_session(root / "in-root")
    elsewhere = make_session(tmp_path / "projects" / "hand")  # made with --session elsewhere
    assert launch.most_recent_session(root, registry) == in_root.resolve()
    recent_sessions.record_use(elsewhere, registry, now=time.time() + 60)
    assert launch.most_recent_session(root, registry) == elsewhere.resolve()
    recent_sessions.record_use(in_root, registry, now=time.time() + 120)  # opened again later
    assert launch.most_recent_session(root, registry) == in_root.resolve()
    assert sorted(p.name for p in registry.parent.iterdir()) == ["recent_sessions.json", "sessions"]  # no temporary left
    shutil.rmtree(in_root)  # a registered folder that is gone is skipped
    assert launch.most_recent_session(root, registry) == elsewhere.resolve()
    registry.write_text("{not json")  # a damaged registry costs only the folders it listed
    with pytest.raises(HeroError, match="no sessions"):
        launch.most_recent_session(root, registry)
    recent_sessions.record_use(elsewhere, registry)
    assert launch.most_recent_session(root, registry) == elsewhere.resolve()


def test_resume_with_no_sessions_says_how_to_start(tmp_path: Path):
    line = one_error_line(hero_tui("resume", env={"XDG_DATA_HOME": str(tmp_path)}))
    assert "hero-tui start" in line


def test_sessions_prints_whole_folder_paths_at_80_columns_and_when_piped(tmp_path: Path):
    long_name = "20261125-235959-a-hand-with-five-fingers-" + "x" * 60
    folder = make_session(tmp_path / long_name)
    make_session(tmp_path / "short")
    for env in ({"COLUMNS": "80"}, {}):
        result = hero_tui("sessions", str(tmp_path), env=env)
        assert result.returncode == 0, result.stderr
        [row] = [line for line in result.stdout.splitlines() if long_name in line]
        assert row.endswith(str(folder)) and row.split()[:5] == ["a", "red", "hand", "fake", "0"]


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="Linux's /proc/locks tells who holds a lock")
def test_sessions_says_which_process_has_a_session_open(tmp_path: Path):
    """Guards the listing's "open in" column: the process that holds a session's lock is named on its row (here this
    test's own process, which is no hero app), and "-" once it is let go."""
    held = make_session(tmp_path / "held")
    make_session(tmp_path / "free")
    lock = SessionLock(held)
    lock.acquire()
    try:
        listing = hero_tui("sessions", str(tmp_path), env={"COLUMNS": "300"})
    finally:
        lock.release()
    assert listing.returncode == 0, listing.stderr
    rows = {Path(line.split()[-1]).name: line for line in listing.stdout.splitlines()[1:]}
    assert f"  process {os.getpid()}  " in rows["held"] and "  -  " in rows["free"], listing.stdout
    assert listing.stdout.splitlines()[0].split()[-3:] == ["open", "in", "folder"]
    after = hero_tui("sessions", str(tmp_path), env={"COLUMNS": "300"})
    assert "process" not in after.stdout, after.stdout


def test_sessions_lists_those_made_elsewhere_as_resume_finds_them(tmp_path: Path):
    """Guards `sessions` without a folder: a session made with --session outside the user folder is listed too."""
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    in_root = make_session(tmp_path / "data" / "hero" / "sessions" / "in-root")
    elsewhere = make_session(tmp_path / "projects" / "hand")
    registry = tmp_path / "data" / "hero" / "recent_sessions.json"
    recent_sessions.record_use(elsewhere, registry)
    recent_sessions.record_use(in_root, registry)  # listed once, though both the folder and the registry know it
    result = hero_tui("sessions", env=env)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.endswith(("in-root", "hand"))]
    assert sorted(Path(row.split()[-1]).name for row in rows) == ["hand", "in-root"], result.stdout


@pytest.mark.parametrize("args", [("start", "--help"), ("sessions",), ("doctor", "--model", "tiny")])
def test_output_to_a_reader_that_left_ends_quietly(tmp_path: Path, args):
    """Guards `hero-tui ... | head`: the closed pipe gets no error line and no traceback, and no 'error' exit code."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        result = subprocess.run([sys.executable, "-c", "from hero_tui.cli import main; main()", *args], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, timeout=120,
                                env={**os.environ, "XDG_DATA_HOME": str(tmp_path), "COLUMNS": "80"})
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode != 2, (result.returncode, result.stderr)


def test_doctor_inside_tmux_does_not_send_the_person_to_doctor(monkeypatch):
    """Guards doctor's graphics hint: the status line's "(`hero-tui doctor` ...)" pointer is dropped in doctor itself."""
    from hero_tui import doctor
    from hero_tui.graphics import choose
    from hero_tui.terminal_probe import TerminalReport

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    choice = choose(TerminalReport(answered=True, in_tmux=True, tmux_version="tmux 3.3a"), "auto", "0.14.2")
    assert "hero-tui doctor" in choice.reason  # the status line's
    graphics = doctor.check_terminal(choice)[0]
    assert "allow-passthrough" in graphics.hint and "hero-tui doctor" not in graphics.hint, graphics.hint


def test_keymap_file_maps_binding_ids_and_rejects_unknown_ones(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text('[keys]\ngood = "g"\nundo = ["u", "ctrl+z"]\n')
    assert load_keymap(binding_scopes(), path) == {"good": "g", "undo": "u,ctrl+z"}
    for value in ('""', '"g,,h"', '[]', '["u", ""]', '3'):
        path.write_text(f'[keys]\ngood = {value}\n')
        with pytest.raises(HeroError, match="keys.good must be a key name or a list of key names"):
            load_keymap(binding_scopes(), path)
    path.write_text('[keys]\nlaunch_rockets = "x"\n')
    with pytest.raises(HeroError, match="launch_rockets"):
        load_keymap(binding_scopes(), path)
    assert load_keymap(binding_scopes(), tmp_path / "missing.toml") == {}


@pytest.mark.parametrize("table, refusal", [
    ('good = "b"', "keys.good takes b, which best answers on the grid"),
    ('good = "z"', "keys.good takes z, which zoom_close answers on the zoom"),
    ('metrics = "?"', "keys.metrics takes question_mark, which help answers on the grid"),
    ('submit_confirm = "escape"', "keys.submit_confirm takes escape, which submit_back answers on the submit summary"),
])
def test_keymap_file_refuses_a_key_another_binding_of_the_screen_answers(tmp_path: Path, table, refusal):
    """Guards the clash check: Textual would silently drop one of two bindings that share a key (best unreachable)."""
    path = tmp_path / "config.toml"
    path.write_text(f"[keys]\n{table}\n")
    with pytest.raises(HeroError, match=re.escape(refusal)):
        load_keymap(binding_scopes(), path)


def test_keymap_file_accepts_swapped_keys_and_the_defaults_own_overlaps(tmp_path: Path):
    """Only keys the table adds are checked: a swap frees the key it takes, and ? closing the help is the default."""
    path = tmp_path / "config.toml"
    path.write_text('[keys]\ngood = "b"\nbest = "space"\nhelp = "?"\nhelp_close = ["escape", "?"]\n')
    assert load_keymap(binding_scopes(), path) == {"good": "b", "best": "space", "help": "?", "help_close": "escape,?"}


def test_the_default_keys_the_hints_name_are_the_apps_own():
    """Guards labels.DEFAULT_KEYS (the controller's and the rules' tests, which run without Textual, name keys by it)
    against drifting from the bindings."""
    from hero_tui.keys import key_names
    from hero_tui.labels import DEFAULT_KEYS

    names = key_names(binding_scopes(), {})
    assert {binding_id: names[binding_id] for binding_id in DEFAULT_KEYS} == DEFAULT_KEYS
    assert names["next_page"] == "pgdn" and names["submit_confirm"] == "⏎"


def test_start_refuses_a_bad_keys_table_before_it_makes_the_session(tmp_path: Path):
    """Guards the order in `start`: the config file is read before the session folder is made (in a terminal, as a
    person runs it), so a refused [keys] table leaves no session behind."""
    (tmp_path / "hero").mkdir()
    (tmp_path / "hero" / "config.toml").write_text('[keys]\ngood = "b"\n')
    folder = tmp_path / "session"
    terminal, screen = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from hero_tui.cli import main; main()", "start", "--prompt", "hand", "--model", "tiny",
             "--session", str(folder)],
            stdin=screen, stdout=screen, stderr=subprocess.PIPE, text=True, timeout=60,
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "TERM": "xterm-256color"},
        )
    finally:
        os.close(screen)
        os.close(terminal)
    assert done.returncode == 2, done.stderr
    assert "keys.good takes b, which best answers on the grid" in done.stderr
    assert not folder.exists()


def test_doctor_reports_graphics_cuda_and_model():
    """Guards doctor's exit status on a machine `start` works on: 0, with no problem line."""
    result = hero_tui("doctor", "--model", "tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    for topic in ("graphics", "cuda", "model", "tiny: built in", "config"):
        assert topic in result.stdout
    assert "problem" not in result.stdout


def test_doctor_says_why_start_would_refuse_the_config_file(tmp_path: Path):
    """Guards doctor's config check: it reads the file as `start` does, so a refused [keys] table is named there,
    marked as a problem, counted last, and the exit status is 1 (a script that runs doctor before start can tell)."""
    (tmp_path / "hero").mkdir()
    (tmp_path / "hero" / "config.toml").write_text('[keys]\ngood = "b"\n')
    result = hero_tui("doctor", "--model", "tiny", env={"XDG_CONFIG_HOME": str(tmp_path), "COLUMNS": "300"})
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.strip().startswith("✗ config")]
    assert "refused by `start` and `resume`" in line, result.stdout
    assert "keys.good takes b, which best answers on the grid" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "1 problem (config): `hero-tui start` would stop on it", result.stdout


def test_doctor_says_where_an_uncached_model_would_download_and_the_space_there(tmp_path: Path):
    """Guards doctor's hint for a hub model not cached yet: the cache it downloads into and the space free there
    (SD1.5 takes about 4 GB), as advice, not a problem."""
    result = hero_tui("doctor", "--model", "nobody/not-cached",
                      env={"HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "hub"), "COLUMNS": "300"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"downloads it \(needs the internet\) into {re.escape(str(tmp_path / 'hub'))} \(\d+\.\d GB free there\)",
                     result.stdout), result.stdout


def test_a_download_stopped_part_way_is_not_taken_for_a_cached_model(tmp_path: Path):
    """Guards what counts as a hub model in the cache: its UNet's weights, not the configs the loading fetches first.
    With only those (a first download stopped part-way), doctor says the model is not cached and, offline, counts
    it a problem, and `start` refuses it offline before making a session; with the weights, both take it."""
    snapshot = tmp_path / "hub" / "models--someone--half-done" / "snapshots" / ("0" * 40)
    (snapshot.parents[1] / "refs").mkdir(parents=True)
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    configs = {"model_index.json": {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]},
               "text_encoder/config.json": {"hidden_size": 768}, "unet/config.json": {}}
    for name, config in configs.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(json.dumps(config))
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "COLUMNS": "300"}
    result = hero_tui("doctor", "--model", "someone/half-done", env=env)
    assert result.returncode == 1 and "someone/half-done: not in the local cache, and HF_HUB_OFFLINE" in result.stdout, result.stdout
    started = hero_tui("start", "--prompt", "a hand", "--model", "someone/half-done", "--session", str(tmp_path / "s"), env=env)
    assert started.returncode == 2 and "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in started.stderr
    assert not (tmp_path / "s").exists()

    (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"\0")
    result = hero_tui("doctor", "--model", "someone/half-done", env=env)
    assert "someone/half-done: in the Hugging Face cache, available offline" in result.stdout, result.stdout


@pytest.mark.parametrize("case", ["model", "offline", "threads"])
def test_doctor_exits_1_on_each_thing_start_would_stop_on(tmp_path: Path, case: str):
    """Guards the problems doctor counts: a model hero refuses, a hub model it may not download, a thread count it
    cannot read; each is named on the last line and the exit status is 1."""
    refiner = tmp_path / "refiner"
    refiner.mkdir()
    (refiner / "model_index.json").write_text('{"_class_name": "StableDiffusionXLImg2ImgPipeline"}')
    model, env = {
        "model": (str(refiner), {}),
        "offline": ("nobody/not-cached-anywhere", {"HF_HUB_OFFLINE": "1"}),
        "threads": ("tiny", {"HERO_THREADS": "many"}),
    }[case]
    result = hero_tui("doctor", "--model", model, env={**env, "COLUMNS": "300"})
    assert result.returncode == 1, result.stdout + result.stderr
    topic = "cpu threads" if case == "threads" else "model"
    assert result.stdout.strip().splitlines()[-1] == f"1 problem ({topic}): `hero-tui start` would stop on it", result.stdout


def test_the_app_only_tests_import_no_torch():
    """.ci/run runs them again under Python 3.12 where torch is not installed: none may need it to load."""
    from conftest import TUI_ONLY

    tests = Path(__file__).parent
    code = ("import sys, pytest; sys.modules['torch'] = None; "
            "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *sys.argv[1:]]))")
    done = subprocess.run([sys.executable, "-c", code, *(str(tests / name) for name in TUI_ONLY)],
                          capture_output=True, text=True, timeout=120, cwd=tests.parent)
    assert done.returncode == 0, done.stdout[-2000:]


def test_doctor_keeps_a_method_only_from_a_terminal_or_when_named(tmp_path: Path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    refused = hero_tui("doctor", "--model", "tiny", "--keep", env=env)
    assert refused.returncode != 0 and "--graphics" in one_error_line(refused)
    assert not (tmp_path / "hero" / "config.toml").exists()
    kept = hero_tui("doctor", "--model", "tiny", "--graphics", "sixel", "--keep", env=env)
    assert kept.returncode == 0 and 'method = "sixel"' in (tmp_path / "hero" / "config.toml").read_text()


def test_a_kept_graphics_method_is_read_back_and_the_rest_of_the_config_stays(tmp_path: Path):
    from hero_tui.user_config import graphics_settings, keep_graphics_method

    path = tmp_path / "hero" / "config.toml"
    path.parent.mkdir()
    path.write_text('[keys]\ngood = "g"\n\n[graphics]\ntruecolor = true\n')
    assert keep_graphics_method("sixel", path) == path
    assert graphics_settings(path).method == "sixel" and graphics_settings(path).truecolor is True
    assert load_keymap(binding_scopes(), path) == {"good": "g"}
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"], "no temporary file left"
    path.write_text('[graphics]\nmethod = "blinky"\n')
    with pytest.raises(HeroError, match="graphics.method"):
        graphics_settings(path)


def test_doctor_inside_tmux_says_what_it_can_pass_and_the_lines_to_add():
    from hero_tui.doctor import check_tmux
    from hero_tui.terminal_probe import parse_replies

    tmux_only = parse_replies("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c", in_tmux=True)
    off = check_tmux(tmux_only, "tmux 3.3a", "off", "0.14.2")
    assert "no Sixel: tmux 3.3a cannot pass it" in off.text and "allow-passthrough is off" in off.text
    assert "set -g allow-passthrough on" in off.hint and "tmux source-file ~/.tmux.conf" in off.hint
    assert "tmux 3.4 or later configured with --enable-sixel" in off.hint
    old_python = check_tmux(tmux_only, "tmux 3.3a", "on", "0.12.0")
    assert "needs 0.13+" in old_python.text and "Python 3.12 and textual-image 0.13+" in old_python.hint
    kitty = parse_replies("\x1bP>|tmux 3.4\x1b\\\x1b[?1;2c\x1b_Gi=31;OK\x1b\\\x1bP>|kitty(0.35.2)\x1b\\",
                          in_tmux=True, passthrough=True)
    on = check_tmux(kitty, "tmux 3.4", "on", "0.14.2")
    assert "built without it" in on.text and "kitty graphics (allow-passthrough is on)" in on.text
    assert on.hint == "", "kitty images already pass: nothing to add"
    xterm = parse_replies("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c\x1bP>|XTerm(379)\x1b\\", in_tmux=True, passthrough=True)
    assert "--enable-sixel, or run hero outside tmux" in check_tmux(xterm, "tmux 3.3a", "on", "0.14.2").hint
    sixel = check_tmux(parse_replies("\x1b[?1;2;4c", in_tmux=True), "tmux 3.5a", "on", "0.14.2")
    assert sixel.text.startswith("inside tmux 3.5a; it can pass: Sixel") and sixel.hint == ""


def test_doctor_says_how_24_bit_colour_reaches_the_terminal_through_tmux():
    """Guards the colour finding: inside tmux it names tmux's RGB feature line (without it tmux draws 256 colours)."""
    from hero_tui.doctor import check_colour
    from hero_tui.terminal_probe import parse_replies

    inside = check_colour(parse_replies("\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c", in_tmux=True), {"TMUX": "/tmp/tmux-0/default,1,0"})
    assert "set -as terminal-features ',*:RGB'" in inside.hint and "24-bit colour is used" in inside.text
    outside = check_colour(parse_replies("\x1bP>|XTerm(379)\x1b\\\x1b[?1;2c"), {"COLORTERM": "truecolor"})
    assert outside.text == "COLORTERM=truecolor" and outside.hint == ""


def test_help_lists_start_first_and_shows_no_type_beside_flags():
    from typer.testing import CliRunner

    from hero_tui.cli import app

    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"}).output
    commands = [line.split()[1] for line in top.splitlines() if line.startswith("│ ") and line.split()[1].isalpha()]
    assert commands[:3] == ["start", "resume", "doctor"], top
    start = CliRunner().invoke(app, ["start", "--help"], env={"COLUMNS": "120"}).output
    assert "<bool>" not in top and "<bool>" not in start and "BOOLEAN" not in start
    assert "<int>" in start or "INTEGER" in start  # options that take a value keep their type (typer 0.29 writes <int>)
    flat = " ".join(line.strip("│ ") for line in start.splitlines())
    for default in ("(default: 64; the demo model: 16)", "(default: 50; the demo model: 20)"):  # --batch, --steps
        assert default in flat, default
