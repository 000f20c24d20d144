"""The whole HERO loop on the tiny model: rounds, resume exactness, export, feedback rules."""

import sqlite3

import pytest
import torch
from engine_support import run_rounds
from safetensors.torch import load_file

from hero_engine.errors import HeroError
from hero_engine.session.hero_session import HeroSession


def lora_of(folder):
    ckpts = sorted((folder / "checkpoints").iterdir())
    return load_file(ckpts[-1] / "lora" / "pytorch_lora_weights.safetensors")


def test_full_loop_records_rounds_labels_and_metrics(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        reports = run_rounds(session, 2)
        batch = session.propose()
    assert [r.round for r in reports] == [0, 1]
    assert reports[1].labels_total == 12
    assert batch.round == 2 and len(batch.images) == 6 and all(i.path.is_file() for i in batch.images)
    assert batch.previous_best is not None and batch.previous_best.is_best
    db = sqlite3.connect(tmp_path / "s" / "hero.db")
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*) FROM images WHERE label IS NOT NULL").fetchone()[0] == 12
    assert db.execute("SELECT COUNT(*) FROM images WHERE label IS NULL AND round = 2").fetchone()[0] == 6
    names = {n for (n,) in db.execute("SELECT name FROM metrics WHERE round = 1")}
    assert {"seconds_representation", "seconds_policy", "seconds_saving", "seconds_sampling", "reward_mean"} <= names
    # the LoRA moved away from its zero start
    assert any(float(v.abs().max()) > 0 for k, v in lora_of(tmp_path / "s").items() if "lora_B" in k or "lora.up" in k)
    # the first PPO ratio is exactly 1: sampling and training share one precision path
    assert reports[0].metrics["policy_first_ratio_error"] < 1e-4


def test_each_stage_reports_its_start_then_its_steps(tmp_path, tiny_config):
    """Guards what a front end times a stage from: every stage of a round (the model's loading, sampling, the
    representation, the policy update, saving, the next round's sampling) first reports 0 done as it starts, then
    counts up to its total. Without the start, the app took a stage's first report (after a policy pass of a fifth
    of the update) as its start, said "0 s left" and "done in" a fifth too short."""
    from hero_engine.evaluation.evaluators import get_evaluator, label_batch

    told = []
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        session.propose(lambda *event: told.append(event))
        label_batch(session, get_evaluator("redness"))
        session.submit()
        report = session.update(lambda *event: told.append(event))
    runs = []  # (stage, its counts) for each stage as it ran
    for stage, done, total in told:
        if not runs or runs[-1][0] != stage:
            runs.append((stage, []))
        runs[-1][1].append((done, total))
    assert [stage for stage, _ in runs] == ["loading", "sampling", "representation", "policy", "saving", "sampling"], runs
    for stage, counts in runs:
        dones = [done for done, _ in counts]
        assert dones[0] == 0 and dones == sorted(dones) and dones[-1] == counts[-1][1] > 0, (stage, counts)
    assert "replay" not in report.seconds  # nothing was replayed


def runs_of(told: list[tuple[str, int, int]]) -> list[str]:
    """The stages in the order they reported, each once per run."""
    return [stage for i, (stage, _, _) in enumerate(told) if i == 0 or told[i - 1][0] != stage]


def test_a_round_another_process_drew_is_replayed_as_its_own_stage(tmp_path, tiny_config):
    """Guards the stage a front end shows while a resumed session's round is drawn again before it is learned from:
    "replay", not "sampling" (which the app then showed as done before the learning, and left the next round's
    sampling out of the time left), with its seconds in the round's report."""
    from hero_engine.evaluation.evaluators import get_evaluator, label_batch

    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        session.propose()
        label_batch(session, get_evaluator("redness"))
        session.submit()
    told = []
    with HeroSession.open(tmp_path / "s") as session:
        report = session.update(lambda *event: told.append(event))
    assert runs_of(told) == ["loading", "replay", "representation", "policy", "saving", "sampling"], runs_of(told)
    assert report.seconds["replay"] > 0


def test_a_resumed_round_replayed_while_it_is_labeled_leaves_the_update_the_same_learning_and_less_work(tmp_path, tiny_config):
    """Guards the idle-time replay of a resumed session's round: drawn again while the person labels, it leaves the
    update neither the model's loading nor the replay, and the update learns the same as one that replays (the next
    round's images equal, byte for byte on the CPU); a stop asked meanwhile stops it, and the update replays then
    (faults planted: nothing replayed; the stop not heeded)."""
    import itertools

    from hero_engine.errors import StageCancelled
    from hero_engine.evaluation.evaluators import get_evaluator, label_batch

    ways = ("in the update", "while labeled", "stopped while labeled")
    for way in ways:
        with HeroSession.create(tmp_path / way, tiny_config) as session:
            run_rounds(session, 1)  # round 1 drawn with the tuned policy, then the session closed
    images, runs = {}, {}
    for way in ways:
        told = []
        with HeroSession.open(tmp_path / way) as session:
            session.propose()
            if way == "while labeled":
                assert session.replay_open_round() and not session.replay_open_round()  # the second finds it kept
            elif way == "stopped while labeled":
                calls = itertools.count()
                with pytest.raises(StageCancelled):
                    session.replay_open_round(should_stop=lambda: next(calls) >= 4)  # the model loaded, the replay begun
            label_batch(session, get_evaluator("redness"))
            session.submit()
            session.update(lambda *event: told.append(event))
            images[way] = [image.path.read_bytes() for image in session.propose().images]
        runs[way] = runs_of(told)
    assert runs["in the update"] == ["loading", "replay", "representation", "policy", "saving", "sampling"]
    assert runs["while labeled"] == ["representation", "policy", "saving", "sampling"]
    assert runs["stopped while labeled"] == ["replay", "representation", "policy", "saving", "sampling"]
    assert images["while labeled"] == images["in the update"] == images["stopped while labeled"]


def test_mixed_precision_bf16_base_float32_lora(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config, dtype="bfloat16") as session:
        report = run_rounds(session, 1)[0]
        assert session._model.pipe.unet.dtype == torch.bfloat16
        assert all(p.dtype == torch.float32 and p.requires_grad for p in session._model.learner.params)
    assert report.metrics["policy_first_ratio_error"] < 1e-4
    assert torch.isfinite(torch.tensor(report.mean_reward))


def test_resume_is_exact(tmp_path, tiny_config):
    """2 rounds, reopen in a fresh session object, 1 more == 3 uninterrupted rounds (CPU: bit for bit)."""
    with HeroSession.create(tmp_path / "a", tiny_config) as session:
        run_rounds(session, 3)
        final_a = session.propose()
    with HeroSession.create(tmp_path / "b", tiny_config) as session:
        run_rounds(session, 2)
    with HeroSession.open(tmp_path / "b") as session:
        run_rounds(session, 1)
        final_b = session.propose()
    lora_a, lora_b = lora_of(tmp_path / "a"), lora_of(tmp_path / "b")
    assert lora_a.keys() == lora_b.keys()
    for key in lora_a:
        assert torch.equal(lora_a[key], lora_b[key]), key
    for a, b in zip(final_a.images, final_b.images):
        assert a.path.read_bytes() == b.path.read_bytes()
    tensors_a = load_file(tmp_path / "a" / "rounds" / "0003" / "tensors.safetensors")
    tensors_b = load_file(tmp_path / "b" / "rounds" / "0003" / "tensors.safetensors")
    assert torch.equal(tensors_a["final"], tensors_b["final"])


def test_labels_survive_reopen_mid_round(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        batch = session.propose()
        session.label(batch.images[1].id, True)
        session.label(batch.images[2].id, False)
        session.choose_best(batch.images[0].id)
    with HeroSession.open(tmp_path / "s") as session:
        batch = session.propose()
        assert [i.label for i in batch.images[:4]] == ["good", "good", "bad", None]
        assert batch.best_id == batch.images[0].id and not batch.submitted


def test_submit_refuses_incomplete_feedback(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        images = session.propose().images
        with pytest.raises(HeroError, match="best"):
            session.submit()
        session.choose_best(images[0].id)
        with pytest.raises(HeroError, match="good image besides the best"):
            session.submit()
        for info in images[1:]:
            session.label(info.id, True)
        with pytest.raises(HeroError, match="not good"):
            session.submit()
        with pytest.raises(HeroError, match="is the best"):
            session.label(images[0].id, False)
        session.label(images[5].id, None)  # unlabeled counts as bad at submit
        session.submit()
        labels = [i.label for i in session.batch(0).images]
        assert labels == ["good"] * 5 + ["bad"]


def test_keeping_the_previous_best(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        run_rounds(session, 1)
        batch = session.propose()
        previous = batch.previous_best
        session.choose_best(previous.id)
        session.label(batch.images[0].id, True)
        session.submit()
        session.update()
        assert session.batch(2).previous_best.id == previous.id
        with pytest.raises(HeroError, match="belongs to round"):
            session.label(batch.images[0].id, False)


def test_export_loads_into_a_pipeline_and_changes_its_output(tmp_path, tiny_config):
    from hero_engine.models.pipelines import build_tiny_pipeline

    with HeroSession.create(tmp_path / "s", tiny_config.replace(lr=5e-2)) as session:
        with pytest.raises(HeroError, match="nothing to export"):
            session.export(tmp_path / "early")
        run_rounds(session, 2)
        out = session.export(tmp_path / "export")
        single = session.export(tmp_path / "one.safetensors")
    assert out.is_file() and single.is_file()

    def render(pipe):
        return pipe("a red hand", num_inference_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(0), output_type="pt").images

    pipe = build_tiny_pipeline()
    before = render(pipe)
    pipe.load_lora_weights(str(out.parent))
    after = render(pipe)
    assert not torch.allclose(before, after)


def test_truncated_checkpoint_falls_back_and_is_rebuilt_exactly(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        run_rounds(session, 2)
    lora_file = tmp_path / "s" / "checkpoints" / "0001" / "lora" / "pytorch_lora_weights.safetensors"
    intact = {k: v.clone() for k, v in load_file(lora_file).items()}
    lora_file.write_bytes(lora_file.read_bytes()[:100])
    with HeroSession.open(tmp_path / "s") as session:
        session.export(tmp_path / "out.safetensors")
        assert any("0001" in notice and "damaged" in notice for notice in session.notices)
    rebuilt = load_file(lora_file)
    assert all(torch.equal(intact[k], rebuilt[k]) for k in intact)


def test_memory_settings_may_change_when_continuing(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        run_rounds(session, 1)
    with HeroSession.open(tmp_path / "s", memory={"sample_batch": 2, "train_batch": 1}) as session:
        assert session.config.sample_batch == 2
        run_rounds(session, 1)
    with pytest.raises(HeroError, match="keeps its settings"):
        HeroSession.open(tmp_path / "s", memory={"lr": 1.0})


def test_auto_model_is_the_demo_model_without_cuda_and_is_kept(tmp_path, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("CUDA machine")
    config = tiny_config.replace(model="auto")
    with HeroSession.create(tmp_path / "s", config) as session:
        session.propose()
        assert session.config.model == "demo"
        assert any("demo model" in notice and "--model" in notice for notice in session.notices)
    with HeroSession.open(tmp_path / "s") as session:
        assert session.config.model == "demo"


def test_clearing_the_best_undoes_the_choice(tmp_path, tiny_config):
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        images = session.propose().images
        session.choose_best(images[0].id)
        session.choose_best(None)
        batch = session.batch(0)
        assert batch.best_id is None and not any(i.is_best for i in batch.images)
        with pytest.raises(HeroError, match="best"):
            session.submit()


def test_config_saved_with_grad_accum_reads_as_policy_batch():
    from hero_engine.config import HeroConfig

    config = HeroConfig.from_dict({"prompt": "hand", "train_batch": 2, "grad_accum": 4})
    assert (config.policy_batch, config.train_batch) == (8, 2)
