"""The demo model: its procedural world, tokenizer, judge, simulated evaluators, training and shipped weights."""

import numpy as np
import pytest
import torch

from hero_engine.demo.architecture import DemoSize
from hero_engine.demo.report import generate
from hero_engine.demo.tokenizer import build_word_tokenizer
from hero_engine.demo.train import TrainSettings, step_batches, train_demo_pipeline
from hero_engine.evaluation import judge
from hero_engine.evaluation.evaluators import (
    EVALUATORS,
    feedback_from_scores,
    get_evaluator,
)
from hero_engine.evaluation.world import COLOURS, NUMBERS, caption_words, make_example
from hero_engine.models.pipelines import Runtime, load_pipeline

FAMILY_OF = {"hand": "hand", "counting": "circles", "attribute": "flower", "spatial": "pair", "personal": "star"}


def test_world_is_deterministic():
    a, b = make_example(123), make_example(123)
    assert a.caption == b.caption and a.scene == b.scene
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.image.size == (64, 64)
    assert make_example(124).scene != a.scene


def _words(caption: str) -> set[str]:
    return set(caption.split())


def test_captions_match_their_scene():
    for seed in range(400):
        ex = make_example(seed)
        p, words = ex.scene.params, _words(ex.caption)
        numbers = words & set(NUMBERS)
        colours = words & set(COLOURS)
        if "background" in words:
            assert ex.scene.background in words
        if ex.scene.family == "hand":
            assert "hand" in words and numbers <= {NUMBERS[p["fingers"]]}
        elif ex.scene.family == "circles":
            assert numbers <= {NUMBERS[p["count"]]} and colours <= {p["colour"]}
            assert ("circles" in words) == (p["count"] > 1)
        elif ex.scene.family == "flower":
            assert colours <= {p["colour"]}
        elif ex.scene.family == "pair":
            first, second = " ".join(p["first"]), " ".join(p["second"])
            assert ex.caption.index(first) < ex.caption.index(second)
            if "left" in words or "right" in words:
                assert ("left" in words) == p["first_left"]
        else:
            assert colours <= {p["colour"]}
            assert not (words & {"small", "large"}) or ("small" in words) == p["small"]


def test_unqualified_captions_are_drawn_from_the_whole_family():
    fingers = [make_example(s).scene.params["fingers"] for s in range(3000) if make_example(s).caption == "hand"]
    assert len(fingers) > 30
    assert set(fingers) == {3, 4, 5, 6, 7}
    assert 0.05 < fingers.count(5) / len(fingers) < 0.4


def test_tokenizer_keeps_caption_words_whole(tmp_path):
    tokenizer = build_word_tokenizer(caption_words(), tmp_path)
    assert tokenizer.tokenize("a red circle left of a blue square") == [
        w + "</w>" for w in "a red circle left of a blue square".split()
    ]
    assert tokenizer.model_max_length == 77
    assert len(tokenizer.tokenize("a zebra")) > 2  # unknown words still tokenize, as byte pieces


def test_judge_reads_held_out_procedural_images():
    accuracy = judge.held_out_accuracy(n_per_family=60)
    assert all(acc >= 0.95 for acc in accuracy.values()), accuracy


def test_judge_reads_known_scenes():
    hand = next(make_example(s, "hand") for s in range(100) if make_example(s, "hand").scene.params["fingers"] == 5)
    assert judge.count_fingers(hand.image) == 5
    assert get_evaluator("hand").is_success(hand.image)
    other = next(make_example(s, "hand") for s in range(100) if make_example(s, "hand").scene.params["fingers"] == 3)
    assert not get_evaluator("hand").is_success(other.image)
    assert get_evaluator("hand").score(hand.image) > get_evaluator("hand").score(other.image)


@pytest.mark.parametrize("name", sorted(FAMILY_OF))
def test_evaluators_label_batches_legally(name):
    evaluator = get_evaluator(name)
    assert name in EVALUATORS and evaluator.prompt
    images = [make_example(f"eval:{name}:{i}", FAMILY_OF[name]).image for i in range(8)]
    for previous in (None, images[0]):
        feedback = evaluator.judge(images, previous)
        good = set(feedback.good)
        assert good and len(good) < len(images), "a round needs a good and a bad image"
        assert feedback.best is None or feedback.best in good
        assert len(good - {feedback.best}) >= 1
        if feedback.best is not None:
            rank = [(evaluator.is_success(im), evaluator.score(im)) for im in images]
            assert rank[feedback.best] == max(rank)


def test_evaluator_marks_good_what_is_as_good_as_the_best():
    # two successes: both good, the higher-scoring one is the best
    feedback = feedback_from_scores([0.1, 0.9, 0.5, 0.7], [False, True, False, True], None)
    assert (feedback.best, feedback.good) == (1, [1, 3])
    # fulfilling the intent outranks a higher score
    feedback = feedback_from_scores([0.9, 0.2, 0.1], [False, True, True], None)
    assert (feedback.best, feedback.good) == (1, [1, 2])
    # no success yet: the best and, since a round needs another good image, the nearest miss
    feedback = feedback_from_scores([0.1, 0.9, 0.5, 0.7], [False] * 4, None)
    assert (feedback.best, feedback.good) == (1, [1, 3])
    # a previous best that succeeded is kept over a batch with no success
    feedback = feedback_from_scores([0.1, 0.9, 0.5], [False] * 3, (True, 0.3))
    assert (feedback.best, feedback.good) == (None, [1])
    # everything succeeds: the weakest is left not good, since a round needs a bad image
    feedback = feedback_from_scores([0.1, 0.9, 0.5], [True] * 3, None)
    assert (feedback.best, feedback.good) == (1, [1, 2])


def test_evaluator_success_rate_on_the_world_is_a_minority():
    for name, family in FAMILY_OF.items():
        evaluator = get_evaluator(name)
        rate = np.mean([evaluator.is_success(make_example(f"rate:{i}", family).image) for i in range(150)])
        assert 0.03 < rate < 0.45, (name, rate)


def test_demo_model_loads_offline_and_generates(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = load_pipeline("demo", Runtime.resolve("cpu", "float32"))
    images = generate(pipe, "hand", n=2, seed=0, steps=4)
    assert [im.size for im in images] == [(64, 64)] * 2
    assert pipe.tokenizer.tokenize("hand") == ["hand</w>"]


def test_training_smoke_run_gives_a_loadable_pipeline(tmp_path):
    torch.set_num_threads(1)
    settings = TrainSettings(vae_steps=2, unet_steps=2, decoder_steps=2, batch=2, size=DemoSize.tiny())
    figures = train_demo_pipeline(settings, tmp_path, lambda *_: None)
    assert figures["latent_scaling_factor"] > 0 and np.isfinite(figures["unet_loss"])
    pipe = load_pipeline(str(tmp_path), Runtime.resolve("cpu", "float32"))
    assert pipe.vae.config.scaling_factor == pytest.approx(figures["latent_scaling_factor"], rel=1e-3)
    assert generate(pipe, "a blue flower", n=1, seed=0, steps=2)[0].size == (64, 64)


def test_text_encoder_weights_are_named_as_every_transformers_release_reads_them(tmp_path):
    """Guards the demo's prompts on transformers 5.0 to 5.5: those releases read a CLIP text encoder's weights only as
    ``text_model.*``, and load a file without that prefix (as 5.6 and later save it) as a randomly initialised
    encoder, without an error. Fails if the shipped weights, or those a training run saves, lose the prefix."""
    from safetensors import safe_open

    from hero_engine.models.pipelines import DEMO_WEIGHTS

    torch.set_num_threads(1)
    settings = TrainSettings(vae_steps=1, unet_steps=1, decoder_steps=1, batch=2, size=DemoSize.tiny())
    train_demo_pipeline(settings, tmp_path, lambda *_: None)
    for weights in (DEMO_WEIGHTS, tmp_path):
        with safe_open(weights / "text_encoder" / "model.safetensors", "pt") as stored:
            names = list(stored.keys())
        assert names and all(name.startswith("text_model.") for name in names), weights


def test_training_is_deterministic_from_the_seed(tmp_path):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    settings = TrainSettings(vae_steps=2, unet_steps=2, decoder_steps=2, batch=2, size=DemoSize.tiny())
    for run in ("a", "b"):
        train_demo_pipeline(settings, tmp_path / run, lambda *_: None)
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a, b = load_file(tmp_path / "a" / part), load_file(tmp_path / "b" / part)
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_examples_are_the_same_whichever_process_draws_them():
    """Guards "the weights depend only on the seed and the settings" for GPU training, where worker
    processes draw the examples: each step must get the same batch, in the same order, as when the
    training process draws them itself (fails if the loader shuffles steps or a worker reseeds)."""
    inline = list(step_batches(0, "unet", steps=4, batch=2, workers=0))
    drawn_by_workers = list(step_batches(0, "unet", steps=4, batch=2, workers=2))
    assert len(drawn_by_workers) == 4
    for (pixels, captions), (worker_pixels, worker_captions) in zip(inline, drawn_by_workers):
        assert torch.equal(pixels, worker_pixels) and list(captions) == list(worker_captions)
