"""Sessions written by an earlier hero open and go on: a session saved before the engine's modules moved into packages.

tests/data/sessions/saved-before-role-packages was written by hero before the engine was
grouped into subpackages (tiny model, round 0 learned, round 1 sampled with two labels
given). Nothing in a session names a module, so it must open as it is.
"""

import shutil
from pathlib import Path

from engine_support import run_rounds

from hero_engine.session.hero_session import HeroSession
from hero_engine.storage.labels import feedback_summary
from hero_engine.storage.listing import list_sessions

SAVED = Path(__file__).parent / "data" / "sessions" / "saved-before-role-packages"


def test_a_session_saved_before_the_move_opens_and_goes_on(tmp_path):
    """Guards resume across the layout change: the open round's labels, the previous best, the stored round
    tensors and checkpoint 0 are read as they are (no rebuild, no fallback), and the next round learns from them."""
    folder = tmp_path / "session"
    shutil.copytree(SAVED, folder)
    listed = list_sessions(tmp_path)
    assert [(s.folder, s.rounds, s.problem) for s in listed] == [(folder, 1, None)]
    with HeroSession.open(folder, device="cpu") as session:
        batch = session.propose()
        assert batch.round == 1
        assert [image.label for image in batch.images] == ["good", "bad", None, None, None, None]
        assert batch.previous_best is not None and (batch.previous_best.round, batch.previous_best.idx) == (0, 2)
        summary = feedback_summary(session.store)
        assert (summary.round, summary.labeled, summary.good) == (1, 2, 1)
        report = run_rounds(session, 1)[0]
        assert report.round == 1
        assert sorted(path.name for path in (session.folder / "checkpoints").iterdir()) == ["0000", "0001"]
        assert session.notices == []  # nothing was damaged, rebuilt or fallen back from
