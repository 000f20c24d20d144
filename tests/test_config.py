"""Settings are checked before anything is written: numeric ranges, text that session.toml can hold, the header's format."""

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hero_engine.config import (
    DEMO_SCALE,
    HeroConfig,
    config_fields,
    dump_toml,
    model_problem,
    runtime_problem,
    text_problem,
)
from hero_engine.errors import HeroError
from hero_engine.storage.store import SessionStore

NUMERIC = [f for f in config_fields() if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)]
BASE = HeroConfig(prompt="a hand", model="tiny")


def out_of_range_values(f: dataclasses.Field) -> list:
    """NaN, both infinities, and the nearest values outside the field's declared range."""
    low, high, above = f.metadata["range"]
    if isinstance(f.default, int):
        values = [] if low is None else [low - 1]
        values += [above] if above is not None else []
        values += [high + 1] if high is not None else [2**63]
        return values + [math.nan, math.inf, -math.inf]  # not integers at all
    values = [math.nan, math.inf, -math.inf]
    values += [math.nextafter(low, -math.inf)] if low is not None else []
    values += [above, math.nextafter(above, -math.inf)] if above is not None else []
    values += [math.nextafter(high, math.inf)] if high is not None else []
    return values


def test_every_numeric_setting_declares_its_range():
    """Guards that no number escapes validation: a numeric field without a range cannot even be declared."""
    assert len(NUMERIC) >= 20
    assert all("range" in f.metadata for f in NUMERIC)


@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
def test_every_numeric_setting_rejects_nan_infinity_and_out_of_range(f):
    """Guards HeroConfig.validate: each setting refuses NaN, ±infinity and the values just outside its range, with one line."""
    for value in out_of_range_values(f):
        with pytest.raises(HeroError) as caught:
            BASE.replace(**{f.name: value}).validate()
        assert "\n" not in str(caught.value)
        assert f.name.replace("_", "-") in str(caught.value) or f.name == "batch_size", str(caught.value)


@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
def test_the_ends_of_each_range_are_accepted(f):
    """Guards against ranges drawn too tight: the default and the inclusive ends of each range pass."""
    low, high, _ = f.metadata["range"]
    for value in [f.default, low, high]:
        if value is not None:
            BASE.replace(**{f.name: value, **({"train_timesteps": 1} if f.name == "steps" else {})}).validate()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"eta": math.inf}, "--eta must be a finite number > 0 and <= 1"),
        ({"lora_alpha": math.nan}, "--lora-alpha must be a finite number > 0"),
        ({"weight_decay": -5.0}, "--weight-decay must be a finite number >= 0"),
        ({"noise_eps": 2.0}, "--noise-eps"),
        ({"resolution": -8}, "--resolution"),
        ({"resolution": 12}, "multiple of 8"),
        ({"train_timesteps": 9, "steps": 8}, "--train-timesteps must be between 1 and --steps (8)"),
        ({"steps": True}, "--steps must be an integer"),
        ({"prompt": "\udcff"}, "--prompt is not valid text"),
        ({"model": " "}, "--model is empty"),
        ({"encoder_pooling": "max"}, "unknown --encoder-pooling 'max': choose one of grid, global"),
    ],
)
def test_messages_name_the_option(changes, fragment):
    """Guards the one-line messages people read: they name the option and the rule."""
    with pytest.raises(HeroError, match=None) as caught:
        BASE.replace(**changes).validate()
    assert fragment in str(caught.value)


def test_toml_values_of_the_wrong_type_are_refused():
    """Guards from_dict: a TOML true is not the number 1, and a number is not a prompt."""
    for data in ({"steps": True}, {"eta": "fast"}, {"prompt": 5}, {"guided_noise": 2.5}):
        with pytest.raises(HeroError, match="is not a"):
            HeroConfig.from_dict({"prompt": "x", **data} if "prompt" not in data else data)
    with pytest.raises(HeroError, match="table"):
        HeroConfig.from_dict(["prompt"])


def _round_trip(prompt: str, negative: str) -> None:
    """Create a session with these texts: it either reads back exactly or is refused with one line, writing nothing."""
    config = BASE.replace(prompt=prompt, negative_prompt=negative)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "s"
        try:
            config.validate()
            SessionStore.create(folder, config).close()
        except HeroError as exc:
            assert "\n" not in str(exc) and "\r" not in str(exc)
            assert text_problem(prompt) or text_problem(negative) or not prompt.strip(), str(exc)
            assert not folder.exists()
            return
        _, stored = SessionStore.read_header(folder)
        assert stored.prompt == prompt and stored.negative_prompt == negative
        assert stored == config


ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)  # every code point, surrogates and controls included


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=ANY_TEXT, negative=ANY_TEXT)
def test_any_prompt_round_trips_through_session_toml_or_is_refused(prompt, negative):
    """Guards session.toml against text it cannot hold (issue: a prompt with ESC made a session that never opened again)."""
    _round_trip(prompt, negative)


@pytest.mark.parametrize(
    "prompt",
    ["a\x1bb", 'say "hi"', "back\\slash\\", "two\nlines\r\n", "\x00\x7f\x85\u2028\ufeff", "'''\"\"\"", "é 手 🖐️", "[config]\nprompt = 1", "\udcff"],
)
def test_known_hard_prompts(prompt):
    """Guards the cases named in the issue (control characters, quotes, backslashes, newlines, unicode, lone surrogates)."""
    _round_trip(prompt, "")


def test_dump_toml_refuses_lone_surrogates_with_one_line():
    """Guards the writer itself: text with no UTF-8 form is a HeroError, not a UnicodeEncodeError traceback."""
    with pytest.raises(HeroError, match="lone surrogate"):
        dump_toml({"config": {"prompt": "a\ud800"}})


@pytest.mark.parametrize("version", ["0", "-5", "true", "1.5", '"1"'])
def test_format_version_must_be_a_positive_integer(tmp_path, version):
    """Guards read_header: format_version 0, -5, a boolean, a float or a string is a damaged header, said in one line."""
    SessionStore.create(tmp_path / "s", BASE).close()
    header = tmp_path / "s" / "session.toml"
    header.write_text(header.read_text().replace("format_version = 1", f"format_version = {version}"))
    with pytest.raises(HeroError, match="format_version|format version") as caught:
        SessionStore.read_header(tmp_path / "s")
    assert "\n" not in str(caught.value)


def test_model_problems_are_found_without_loading(tmp_path):
    """Guards the check that runs before a session folder exists (the TUI's start cannot import torch)."""
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    assert "does not exist" in model_problem(str(tmp_path / "missing.safetensors"))
    assert "does not exist" in model_problem("./nowhere")
    assert "not a .safetensors" in model_problem(str(tmp_path / "notes.txt"))
    assert "without model_index.json" in model_problem(str(tmp_path / "folder"))
    assert "neither a local path nor a hub id" in model_problem("two words")
    for fine in ("tiny", "demo", "auto"):
        assert model_problem(fine) is None
    assert runtime_problem("tpu", None).startswith("unknown device")
    assert runtime_problem(None, "float8").startswith("unknown dtype")
    assert runtime_problem("cuda:1", "bfloat16") is None


def test_demo_model_takes_its_own_defaults_and_keeps_what_was_given(tmp_path):
    """Guards the demo model's defaults: a session on it starts with DEMO_SCALE's values for settings
    left at the paper's default, keeps a value given otherwise, saves them in session.toml, and other
    models keep the paper's settings."""
    from hero_engine.config import DEMO_SCALE
    from hero_engine.session.hero_session import HeroSession

    asked = HeroConfig(prompt="a flower", model="demo", clip_range=5e-4)
    with HeroSession.create(tmp_path / "s", asked) as session:
        started = session.config
    _, stored = SessionStore.read_header(tmp_path / "s")
    assert stored == started
    assert stored.clip_range == 5e-4
    for name, (value, _why) in DEMO_SCALE.items():
        if name != "clip_range":
            assert getattr(stored, name) == value, name
    paper = HeroConfig(prompt="a flower", model="tiny")
    assert paper.for_model("tiny") == paper
    assert HeroConfig(prompt="x", steps=4).for_model("demo").train_timesteps <= 4


def test_an_uncached_hub_id_is_checked_on_the_hub_before_a_session_exists(monkeypatch):
    """Guards the online check: a hub id that is not cached and not on the hub (a typo), or a hub that
    cannot be reached, is a one-line problem before any session folder is made; one that exists is fine."""
    import huggingface_hub
    import requests
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    response = requests.Response()
    response.status_code = 404
    not_found = RepositoryNotFoundError("404", response=response)
    answers = {"someone/typo": not_found, "someone/offline": OSError("Name or service not known")}

    def model_info(self, repo_id, **kwargs):
        if repo_id in answers:
            raise answers[repo_id]
        return object()

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    assert "was not found on the Hugging Face hub" in model_problem("someone/typo")
    assert "the hub cannot be reached" in model_problem("someone/offline")
    assert model_problem("someone/real-model") is None


def test_auto_on_a_cpu_gives_the_demo_model_its_defaults(tmp_path):
    """Guards the path `hero-tui start` takes: the app stores `--model auto` as given, and the engine,
    resolving it to the demo model on a CPU, starts the session with the demo's defaults and saves them."""
    from hero_engine.config import DEMO_SCALE
    from hero_engine.session.hero_session import HeroSession

    SessionStore.create(tmp_path / "s", HeroConfig(prompt="hand")).close()
    with HeroSession.open(tmp_path / "s", device="cpu"):
        pass
    _, stored = SessionStore.read_header(tmp_path / "s")
    assert stored.model == "demo"
    assert {name: getattr(stored, name) for name in DEMO_SCALE} == {name: value for name, (value, _) in DEMO_SCALE.items()}


def test_a_setting_given_at_the_papers_value_is_kept_on_the_demo_model(tmp_path):
    """Guards `--batch 64` (and any setting given at the paper's default) on the demo model: the person asked for
    it, so the demo's own value (16) must not replace it, whether the model is named, picked by `auto` when the
    engine opens a session the app wrote, or given to the engine directly."""
    from hero_engine.session.hero_session import HeroSession
    from hero_tui.options import EngineOptions

    assert EngineOptions(given={"prompt": "hand", "model": "demo", "batch_size": 64}).config().batch_size == 64
    SessionStore.create(tmp_path / "auto", HeroConfig(prompt="hand", batch_size=64), given={"prompt", "batch_size"}).close()
    with HeroSession.open(tmp_path / "auto", device="cpu") as session:
        assert session.config.model == "demo" and session.config.batch_size == 64
        assert session.config.clip_range == DEMO_SCALE["clip_range"][0]  # what was not given still takes the demo's value
    with HeroSession.create(tmp_path / "named", HeroConfig(prompt="hand", model="demo", batch_size=64), given={"batch_size"}) as session:
        assert session.config.batch_size == 64
    assert SessionStore.read_header(tmp_path / "named")[1].batch_size == 64


def test_the_cli_gives_an_explicit_demo_model_its_defaults():
    """Guards `hero-tui start --model demo`, whose session is written by the app before any engine runs:
    the settings it was not given take the demo's values, the ones it was given are kept."""
    from hero_engine.config import DEMO_SCALE
    from hero_tui.options import EngineOptions

    config = EngineOptions(given={"prompt": "hand", "model": "demo", "steps": 12}).config()
    assert config.steps == 12
    assert config.batch_size == DEMO_SCALE["batch_size"][0] and config.clip_range == DEMO_SCALE["clip_range"][0]
    assert EngineOptions(given={"prompt": "hand", "model": "tiny"}).config() == HeroConfig(prompt="hand", model="tiny")


def test_a_session_saved_with_two_trajectories_a_pass_opens_with_two_rows_a_pass(tmp_path):
    """Guards sessions saved when train_batch counted trajectories a pass (they store the old default, 2): the header
    still loads, and 2 now means 2 (trajectory, timestep) rows a pass, the memory a pass of 2 trajectories at one
    timestep took. New sessions store 0, passes sized from free memory; a negative number is refused."""
    store = SessionStore.create(tmp_path / "old", BASE.replace(train_batch=2))
    store.close()
    _, stored = SessionStore.read_header(tmp_path / "old")
    assert stored.train_batch == 2
    assert HeroConfig().train_batch == 0
    with pytest.raises(HeroError, match="--train-batch"):
        BASE.replace(train_batch=-1).validate()
