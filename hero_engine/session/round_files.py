"""A round's files: its images and tensors, written once, checked whenever they are read.

    rounds/NNNN/
      000.png ...            the images the person labels
      tensors.safetensors    initial noises and final latents (what guided noise and the encoder read)
      checksums.json         size and sha256 of each file above
      chunk-SSS.safetensors  while the round is sampled: one chunk's positions, noises and final latents

A round's images are stored a chunk at a time as they are drawn, each file written
under a temporary name, synced and renamed, before the chunk's rows go into hero.db
(the rows are what count: a file without its row is written again). Once every
chunk is stored, the chunks' tensors become tensors.safetensors, which marks the
round finished. A file damaged later is found by its checksum; the session then
rebuilds it (tensors by sampling again, images by decoding the stored latents).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import save_file

from hero_engine.errors import HeroError
from hero_engine.session.checkpoints import read_tensors
from hero_engine.storage.integrity import (
    CHECKSUMS_FILE,
    check_file,
    read_checksums,
    update_checksum,
    update_checksums,
)
from hero_engine.storage.store import SessionStore

TENSORS = "tensors.safetensors"
CHUNK_PATTERN = "chunk-*.safetensors"


def image_name(idx: int) -> str:
    return f"{idx:03d}.png"


def chunk_name(first_idx: int) -> str:
    return f"chunk-{first_idx:03d}.safetensors"


def write_chunk(store: SessionStore, round_: int, idxs: list[int], images: list, noise: torch.Tensor,
                final: torch.Tensor) -> list[tuple[int, str]]:
    """Store one sampled chunk's images and tensors, durably; returns (batch position, path in the session) of each image."""
    folder = store.round_dir(round_)
    folder.mkdir(parents=True, exist_ok=True)
    names = [image_name(idx) for idx in idxs]

    def write_png(name: str, image) -> None:
        _write_durably(folder / name, lambda tmp: image.save(tmp, format="PNG"))

    # Pillow encodes (zlib) and the kernel syncs without the GIL: a chunk's PNGs are written side by side.
    with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1)) as pool:
        list(pool.map(write_png, names, images))
    tensors = {"idx": torch.tensor(idxs, dtype=torch.int64), "noise": noise.cpu().contiguous(), "final": final.cpu().contiguous()}
    chunk = chunk_name(idxs[0])
    _write_durably(folder / chunk, lambda tmp: save_file(tensors, tmp))
    update_checksums(folder, [*names, chunk])
    _fsync_folder(folder)  # the renames too are on disk before the chunk's rows name its files
    rel = folder.relative_to(store.folder)
    return [(idx, str(rel / name)) for idx, name in zip(idxs, names)]


def stored_chunk_finals(folder: Path, idxs: set[int]) -> dict[int, torch.Tensor]:
    """Final latents of the stored images ``idxs`` (those with rows), from their chunks' files; a damaged chunk gives none."""
    finals: dict[int, torch.Tensor] = {}
    sums = read_checksums(folder) or {}
    for path in sorted(folder.glob(CHUNK_PATTERN)):
        try:
            check_file(folder, path.name, sums.get(path.name))
            tensors = read_tensors(path)
        except Exception:  # damaged or unlisted: its images are sampled again
            continue
        for idx, final in zip(tensors["idx"].tolist(), tensors["final"]):
            if idx in idxs:
                finals[idx] = final
    return finals


def finish_round(folder: Path, noise: torch.Tensor, final: torch.Tensor) -> None:
    """Every chunk is stored: write the round's tensors (which marks it finished) and remove the chunks' files."""
    tensors = {"noise": noise.cpu().contiguous(), "final": final.cpu().contiguous()}
    _write_durably(folder / TENSORS, lambda tmp: save_file(tensors, tmp))
    chunks = [path.name for path in folder.glob(CHUNK_PATTERN)]
    update_checksums(folder, [TENSORS], removed=chunks)
    for name in chunks:
        (folder / name).unlink(missing_ok=True)


def is_finished(folder: Path) -> bool:
    """Whether every image of the round is stored (its tensors file is written last)."""
    return (folder / TENSORS).exists()


def _write_durably(path: Path, write) -> None:
    """``write(tmp)`` beside ``path``, synced and renamed onto it: the file is whole or absent, and on disk before a row names it."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def read_round_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The round's ``noise`` and ``final`` tensors; HeroError when missing or damaged."""
    sums = read_checksums(folder)
    if sums is not None:  # rounds written before checksums existed are read as they are
        check_file(folder, TENSORS, sums.get(TENSORS))
    try:
        tensors = read_tensors(folder / TENSORS)
    except Exception as exc:  # safetensors raises its own error type on a damaged file
        raise HeroError(str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__) from None
    if {"noise", "final"} - set(tensors):
        raise HeroError("noise or final latents are missing")
    return tensors


def replace_round_tensors(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write rebuilt tensors over a damaged file, atomically, and record their checksum."""
    _write_durably(folder / TENSORS, lambda tmp: save_file({k: v.cpu().contiguous() for k, v in tensors.items()}, tmp))
    update_checksum(folder, TENSORS)


def broken_images(folder: Path, session_folder: Path, rows) -> list[tuple[int, str, str]]:
    """(batch position, file name, reason) of every image of the round that is missing or damaged."""
    try:
        sums = read_checksums(folder) or {}
    except HeroError:
        sums = {}
    broken = []
    for row in rows:
        name = Path(row.path).name
        try:
            if name in sums:
                check_file(folder, name, sums[name])
            elif not (session_folder / row.path).is_file():
                raise HeroError(f"{name} is missing")
        except HeroError as exc:
            broken.append((row.idx, name, str(exc)))
    return broken


def replace_images(folder: Path, names: list[str], images: list) -> None:
    """Write decoded-again images over missing or damaged ones, atomically, and record their checksums."""
    has_sums = (folder / CHECKSUMS_FILE).exists()
    for name, image in zip(names, images):
        _write_durably(folder / name, lambda tmp, image=image: image.save(tmp, format="PNG"))
    if has_sums:
        update_checksums(folder, names)
