"""Images stream: a round is stored a chunk at a time, labelable as it lands, and a round stopped part-way
continues from its stored chunks to the images an uninterrupted round gives (tiny model, CPU, bit for bit)."""

import pytest
import torch
from engine_support import run_rounds

from hero_engine.errors import HeroError, StageCancelled
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.session import round_files
from hero_engine.session.hero_session import HeroSession
from hero_engine.storage.labels import open_for_labels
from hero_engine.storage.store import SessionStore


class Stop(BaseException):
    """Ends a propose the way a kill does: nothing after the point it is raised at runs (no cleanup, no except)."""


def stored_round(folder, round_):
    """(PNG bytes of every image in batch order, the round's noise and final latents)."""
    store = SessionStore(folder)
    try:
        images = [(folder / row.path).read_bytes() for row in store.images(round_)]
    finally:
        store.close()
    return images, round_files.read_round_tensors(folder / "rounds" / f"{round_:04d}")


def assert_same_round(a, b):
    assert a[0] == b[0]
    for key in ("noise", "final"):
        assert torch.equal(a[1][key], b[1][key])


def test_each_chunk_is_stored_and_labelable_before_the_next_is_drawn(tmp_path, tiny_config):
    """Guards streaming itself: each chunk reaches the callback with its files on disk and its rows in hero.db,
    while later chunks are still to come; the open round takes labels on what is there and refuses the submit
    with how many images are still coming (fault planted: chunks reported only after the round is stored whole)."""
    config = tiny_config.replace(sample_batch=4)  # chunks of 1, 4 and 1 images
    seen = []
    with HeroSession.create(tmp_path / "s", config) as session:
        labels = open_for_labels(session.folder)

        def on_images(round_, images, size):
            assert all(image.path.is_file() for image in images)
            stored = [row.idx for row in session.store.images(round_)]
            seen.append(([image.idx for image in images], stored, session.store.images_coming(round_)))
            if len(seen) == 1:  # the person labels the first image while the rest are drawn
                session.choose_best(images[0].id)
                with pytest.raises(HeroError, match="5 of 6 images still coming"):
                    session.submit()

        batch = session.propose(on_images=on_images)
        labels.close()
    assert [s[0] for s in seen] == [[0], [1, 2, 3, 4], [5]]
    assert [s[1] for s in seen] == [[0], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    assert [s[2] for s in seen] == [5, 1, 0]
    assert batch.size == 6 and batch.coming == 0 and batch.best_id == batch.images[0].id
    assert batch.images[0].label == "good"  # the label given while the round was drawn is kept
    assert not list((tmp_path / "s" / "rounds" / "0000").glob(round_files.CHUNK_PATTERN))  # joined once finished


@pytest.mark.parametrize("stop_at", ["after the first chunk's rows", "between a chunk's files and its rows"])
def test_a_round_stopped_part_way_continues_to_the_uninterrupted_images(tmp_path, tiny_config, monkeypatch, stop_at):
    """Guards resume from stored chunks: a round killed part-way (here at the worst points: right after a chunk is
    committed, and after a chunk's files are written but before its rows) gives, once reopened, the same PNGs,
    noises and final latents as an uninterrupted round, and the next round too; the stored chunk is sent first
    and not drawn again (faults planted: stored chunks redrawn; the step noise drawn only for the missing images)."""
    config = tiny_config.replace(sample_batch=4)
    with HeroSession.create(tmp_path / "whole", config) as session:
        run_rounds(session, 1)
        session.propose()
    expected = [stored_round(tmp_path / "whole", r) for r in (0, 1)]

    session = HeroSession.create(tmp_path / "stopped", config)
    label_batch(session, get_evaluator("redness"))
    session.submit()
    if stop_at == "after the first chunk's rows":
        def on_images(round_, images, size):
            raise Stop()
        with pytest.raises(Stop):
            session.update(on_images=on_images)
    else:
        add_images = SessionStore.add_images
        calls = []

        def add_then_die(store, round_, images):
            calls.append(images)
            if len(calls) == 2:
                raise Stop()
            add_images(store, round_, images)
        monkeypatch.setattr(SessionStore, "add_images", add_then_die)
        with pytest.raises(Stop):
            session.update()
        monkeypatch.setattr(SessionStore, "add_images", add_images)
    session.close()  # what the kill would have let go of: the lock and the database connection
    store = SessionStore(tmp_path / "stopped")
    assert {row.idx for row in store.images(1)} == {0}
    store.close()

    progress, chunks = [], []
    with HeroSession.open(tmp_path / "stopped") as session:
        batch = session.propose(lambda stage, done, total: progress.append(done) if stage == "sampling" else None,
                                on_images=lambda r, images, size: chunks.append([i.idx for i in images]))
    assert batch.round == 1 and batch.coming == 0
    assert chunks == [[0], [1, 2, 3, 4], [5]]  # the stored image first, then the rest as they are drawn
    assert progress[0] >= config.steps  # the stored chunk's steps were not drawn again
    assert_same_round(stored_round(tmp_path / "stopped", 0), expected[0])
    assert_same_round(stored_round(tmp_path / "stopped", 1), expected[1])


def test_a_cancelled_round_keeps_its_chunks_and_its_labels(tmp_path, tiny_config):
    """Guards labels across a stop: a label given on a streamed image survives a cancel mid-round and the resume,
    and the cancelled propose stops at a step, not at the end of the round."""
    config = tiny_config.replace(sample_batch=4)
    chunks = []
    with HeroSession.create(tmp_path / "s", config) as session:
        def on_images(round_, images, size):
            chunks.append(images)
            session.label(images[0].id, good=True)

        with pytest.raises(StageCancelled):
            session.propose(on_images=on_images, should_stop=lambda: bool(chunks))
        assert session.store.images_coming(0) == 5
    with HeroSession.open(tmp_path / "s") as session:
        batch = session.propose()
    assert batch.coming == 0 and [i.label for i in batch.images] == ["good"] + [None] * 5


def test_a_round_stored_whole_by_an_earlier_hero_still_opens(tmp_path, tiny_config):
    """Guards sessions written before images streamed: a rounds table without its size column is brought up to
    date, and a round stored whole (size NULL) counts as all there."""
    with HeroSession.create(tmp_path / "s", tiny_config) as session:
        session.propose()
    db = SessionStore(tmp_path / "s").db
    db.execute("ALTER TABLE rounds DROP COLUMN size")
    db.close()
    with HeroSession.open(tmp_path / "s") as session:
        batch = session.propose()
        assert session.store.round(0).size is None
    assert batch.size == 6 and batch.coming == 0
