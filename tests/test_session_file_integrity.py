"""Session files' integrity: every file the engine relies on is checked when read; damage is rebuilt or refused, never used."""

import errno
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from hero_engine.config import HeroConfig
from hero_engine.errors import HeroError
from hero_engine.evaluation.evaluators import get_evaluator, label_batch
from hero_engine.session import checkpoints
from hero_engine.session.hero_session import HeroSession
from hero_engine.storage.integrity import CHECKSUMS_FILE, file_entries

CONFIG = HeroConfig(
    prompt="a red hand", model="tiny", batch_size=6, steps=6, train_timesteps=3, encoder_epochs=8, encoder_triplets=8, sample_batch=6
)
LORA = "lora/pytorch_lora_weights.safetensors"


def one_round(session):
    label_batch(session, get_evaluator("redness"))
    session.submit()
    return session.update()


def overwrite_start(path, data=b"\xff" * 8):
    """Damage that keeps the size: the first bytes overwritten in place."""
    raw = bytearray(path.read_bytes())
    raw[: len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A session after two rounds; round 2 sampled and open."""
    folder = tmp_path_factory.mktemp("integrity") / "base"
    with HeroSession.create(folder, CONFIG) as session:
        one_round(session)
        one_round(session)
        session.propose()
    return folder


@pytest.fixture
def copy(base, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(base, folder)
    return folder


def test_every_published_file_has_a_checksum(base):
    """Guards the writing side: checkpoints and rounds list each file's size and sha256 when they are published."""
    for round_ in (0, 1):
        meta = json.loads((base / "checkpoints" / f"{round_:04d}" / "meta.json").read_text())
        assert set(meta["files"]) == {LORA, "encoder.safetensors", "optimizers.pt"}
        assert all(len(entry["sha256"]) == 64 for entry in meta["files"].values())
        checkpoints.verify(base / "checkpoints" / f"{round_:04d}")
    for round_ in (0, 1, 2):
        listed = json.loads((base / "rounds" / f"{round_:04d}" / CHECKSUMS_FILE).read_text())["files"]
        assert set(listed) == {"tensors.safetensors"} | {f"{i:03d}.png" for i in range(6)}
        assert listed == file_entries(base / "rounds" / f"{round_:04d}", exclude=(CHECKSUMS_FILE,))


@pytest.mark.parametrize("name", ["encoder.safetensors", LORA, "optimizers.pt"])
def test_checkpoint_damaged_in_place_falls_back_and_is_rebuilt_exactly(copy, name):
    """Guards the sha256 check of checkpoint files: same-size damage (the issue's first 8 bytes) is rebuilt, not loaded or crashed on."""
    folder = copy / "checkpoints" / "0001"
    intact = (folder / LORA).read_bytes()
    overwrite_start(folder / name)
    with pytest.raises(HeroError, match="damaged"):
        checkpoints.verify(folder)
    with HeroSession.open(copy) as session:
        one_round(session)  # continuing: the SafetensorError traceback
        assert any("checkpoint 0001" in n and "damaged" in n for n in session.notices), session.notices
        assert any("rebuilding checkpoint 0001" in n for n in session.notices)
    checkpoints.verify(folder)
    assert (folder / LORA).read_bytes() == intact  # rebuilt bit for bit
    checkpoints.verify(copy / "checkpoints" / "0002")


def overwrite_end(path, data=b"\x7f" * 16):
    """Damage that keeps the size and the file readable: the last values' bytes overwritten."""
    raw = bytearray(path.read_bytes())
    raw[-len(data):] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [overwrite_start, overwrite_end], ids=["header", "values"])
def test_round_tensors_damaged_in_place_are_rebuilt_exactly(copy, damage):
    """Guards the sha256 check of rounds/NNNN/tensors.safetensors: the round is sampled again from its seed, exactly."""
    path = copy / "rounds" / "0002" / "tensors.safetensors"
    intact = {k: v.clone() for k, v in load_file(path).items()}  # load_file maps the file: copy before damaging it
    damage(path)
    with HeroSession.open(copy) as session:
        one_round(session)  # the update re-reads round 2's noise
        assert any("tensors.safetensors is missing or damaged" in n for n in session.notices), session.notices
    rebuilt = load_file(path)
    assert all(torch.equal(intact[k], rebuilt[k]) for k in ("noise", "final"))
    assert json.loads((path.parent / CHECKSUMS_FILE).read_text())["files"]["tensors.safetensors"] == file_entries(path.parent)["tensors.safetensors"]


def test_tensors_of_an_earlier_round_are_rebuilt_with_that_round_s_policy(copy):
    """Guards the rebuild of a round whose policy is not the one in memory: it loads the round before, then comes back."""
    path = copy / "rounds" / "0001" / "tensors.safetensors"
    intact = {k: v.clone() for k, v in load_file(path).items()}  # load_file maps the file: copy before damaging it
    path.unlink()
    with HeroSession.open(copy) as session:
        session._ensure_policy()
        lora = [p.detach().clone() for p in session._model.learner.params]
        rebuilt = session._recovery.round_tensors(1)
        assert session._model.policy_round == 1
        assert all(torch.equal(a, b) for a, b in zip(lora, session._model.learner.params))
    assert all(torch.equal(intact[k], rebuilt[k]) for k in ("noise", "final"))


def test_missing_or_damaged_round_pngs_are_decoded_again(copy):
    """Guards resume and run against a deleted or damaged PNG of the open round: decoded again from the stored latents."""
    folder = copy / "rounds" / "0002"
    originals = {name: np.asarray(Image.open(folder / name)).astype(int) for name in ("003.png", "004.png")}
    (folder / "003.png").unlink()
    overwrite_start(folder / "004.png")
    with HeroSession.open(copy) as session:
        batch = session.propose()
        assert any("2 image(s) missing or damaged" in n and "decoded again" in n for n in session.notices), session.notices
        for name, pixels in originals.items():
            assert np.abs(np.asarray(Image.open(folder / name)).astype(int) - pixels).max() <= 1
        assert all(info.path.is_file() for info in batch.images)
        session.notices.clear()
        session.propose()
        assert session.notices == []  # the checksums were brought up to date
        one_round(session)


def test_export_refuses_non_finite_weights(copy, tmp_path):
    """Guards export: a LoRA with NaN weights (a diverged training, checksum intact) is refused in one line, nothing written."""
    folder = copy / "checkpoints" / "0001"
    weights = load_file(folder / LORA)
    first = sorted(weights)[0]
    weights[first] = torch.full_like(weights[first], float("nan"))
    save_file(weights, folder / LORA)
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"] = file_entries(folder, exclude=("meta.json",))
    (folder / "meta.json").write_text(json.dumps(meta))
    with HeroSession.open(copy) as session:
        with pytest.raises(HeroError, match="non-finite weights") as caught:
            session.export(tmp_path / "out.safetensors")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.safetensors").exists()


def test_damaged_lora_is_not_exported(copy, tmp_path):
    """Guards export against damaged LoRA data (the issue: exported with exit 0, tensors NaN): it is rebuilt first."""
    lora = copy / "checkpoints" / "0001" / LORA
    intact = lora.read_bytes()
    raw = bytearray(intact)
    raw[-64:] = b"\xff" * 64  # NaN bytes in the weights, same size
    lora.write_bytes(bytes(raw))
    with HeroSession.open(copy) as session:
        out = session.export(tmp_path / "out.safetensors")
    assert lora.read_bytes() == intact  # rebuilt before export
    assert all(bool(torch.isfinite(t).all()) for t in load_file(out).values())


def _disk_full(kind):
    def save(obj, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04partial")
        if kind == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/3: file write failed")

    return save


@pytest.mark.parametrize("kind", ["oserror", "torch"])
def test_disk_full_while_saving_a_checkpoint_keeps_the_session(copy, monkeypatch, kind):
    """Guards checkpoints.write: a full disk gives one line, leaves no temp folder, and the session continues once space is back."""
    monkeypatch.setattr(torch, "save", _disk_full(kind))
    with HeroSession.open(copy) as session:
        with pytest.raises(HeroError, match="could not save checkpoint 0002 \\(no space left on device\\)") as caught:
            one_round(session)
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["0000", "0001"]
    monkeypatch.undo()
    with HeroSession.open(copy) as session:
        assert session.current_round == 2 and session.batch(2).submitted
        session.update()
    checkpoints.verify(copy / "checkpoints" / "0002")
