"""A round's files: its images and tensors, written once, checked whenever they are read.

    rounds/NNNN/
      000.png ...            the images the person labels
      tensors.safetensors    initial noises and final latents (what guided noise and the encoder read)
      checksums.json         size and sha256 of each file above

A round is written under a temporary name and published whole. A file damaged
later is found by its checksum; the session then rebuilds it (tensors by sampling
again, images by decoding the stored latents) and writes it back here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from hero_engine.checkpoints import read_tensors
from hero_engine.errors import HeroError
from hero_engine.store import (
    CHECKSUMS_FILE, SessionStore, check_file, publish_folder, read_checksums, update_checksum, write_checksums,
)

TENSORS = "tensors.safetensors"


def image_name(idx: int) -> str:
    return f"{idx:03d}.png"


def publish_round(store: SessionStore, round_: int, images: list, noise: torch.Tensor, final: torch.Tensor) -> list[str]:
    """Write a sampled round's images and tensors and publish the folder; returns the images' paths in the session."""
    tmp = store.temp_dir("rounds")
    names = [image_name(idx) for idx in range(len(images))]
    for name, image in zip(names, images):
        image.save(tmp / name)
    save_file({"noise": noise.cpu().contiguous(), "final": final.cpu().contiguous()}, tmp / TENSORS)
    write_checksums(tmp)
    folder = store.round_dir(round_)
    publish_folder(tmp, folder)
    rel = folder.relative_to(store.folder)
    return [str(rel / name) for name in names]


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
    tmp = folder / f".{TENSORS}.tmp"
    save_file({k: v.cpu().contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, folder / TENSORS)
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
        tmp = folder / f".{name}.tmp"
        image.save(tmp, format="PNG")
        os.replace(tmp, folder / name)
        if has_sums:
            update_checksum(folder, name)
