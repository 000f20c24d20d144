"""The judge: reads a demo image with pixel rules and says what it shows (never sees how it was drawn).

It finds the background from the border, the foreground as what differs from
it, and names colours by the nearest colour of the world's palette. Readings:
the finger count of a hand (foreground runs on rings around the palm), the
number of circles (connected blobs), the petal colour of a flower, where red is
relative to blue, and the look of a star (colour, size, background, how many objects).

    python -m hero_engine.evaluation.judge --eval     # accuracy on held-out procedural images
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hero_engine.evaluation import morphology
from hero_engine.evaluation.world import (
    COLOURS,
    FLOWER_CENTRE,
    SKIN,
    STEM,
    Scene,
    make_example,
)

# Foreground: RGB distance (0-1 scale) from the background above an Otsu threshold kept in this range;
# adaptive, because generated images have pale objects and soft halos.
_FOREGROUND_DISTANCE = (0.1, 0.3)
_MIN_BLOB = 12  # pixels: smaller blobs are noise
SMALL_STAR_AREA = 260  # pixels: a small star (radius 7-10) covers < 140, a large one (18-24) > 420
_PALETTE_NAMES = list(COLOURS) + ["skin-light", "skin-dark", "centre", "stem"]
_PALETTE = np.array(list(COLOURS.values()) + SKIN + [FLOWER_CENTRE, STEM], dtype=np.float32) / 255.0


def to_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def background_colour(rgb: np.ndarray) -> np.ndarray:
    border = np.concatenate([rgb[:2].reshape(-1, 3), rgb[-2:].reshape(-1, 3), rgb[:, :2].reshape(-1, 3), rgb[:, -2:].reshape(-1, 3)])
    return np.median(border, axis=0)


def is_dark(colour: np.ndarray) -> bool:
    return float(colour @ np.array([0.299, 0.587, 0.114])) < 0.35


def otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """The split of ``values`` into two classes with the largest between-class variance."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(counts * centres) / np.maximum(weight_low, 1)
    mean_high = (np.sum(counts * centres) - np.cumsum(counts * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][between.argmax()])


def foreground_mask(rgb: np.ndarray) -> np.ndarray:
    distance = np.linalg.norm(rgb - background_colour(rgb), axis=-1)
    mask = distance > np.clip(otsu_threshold(distance), *_FOREGROUND_DISTANCE)
    return morphology.opening(mask) if mask.sum() > 4 * _MIN_BLOB else mask


def palette_names(pixels: np.ndarray) -> np.ndarray:
    """The nearest palette colour's name for each pixel of an [N, 3] array."""
    distance = np.linalg.norm(pixels[:, None, :] - _PALETTE[None], axis=-1)
    return np.array(_PALETTE_NAMES)[distance.argmin(axis=1)]


def dominant_colour(rgb: np.ndarray, mask: np.ndarray, ignore: tuple[str, ...] = ()) -> str | None:
    names = [n for n in palette_names(rgb[mask]) if n not in ignore]
    return Counter(names).most_common(1)[0][0] if names else None


def colour_mask(rgb: np.ndarray, name: str) -> np.ndarray:
    mask = foreground_mask(rgb)
    out = np.zeros_like(mask)
    out[mask] = palette_names(rgb[mask]) == name
    return out


# Readings --------------------------------------------------------------------


def count_fingers(image: Image.Image) -> int:
    """Foreground runs crossing rings around the palm, between palm and fingertips (the most common count).

    The rings are sized from the hand's reach (palm centre to the farthest point
    above it), not from the palm's radius, which blurred finger roots inflate.
    """
    mask = foreground_mask(to_rgb(image))
    if mask.sum() < _MIN_BLOB:
        return 0
    (cy, cx), _ = morphology.deepest_point(mask)
    ys, xs = np.nonzero(mask[:cy])
    if len(ys) == 0:
        return 0
    reach = float(np.hypot(ys - cy, xs - cx).max())
    counts = [_runs_on_arc(mask, (cy, cx), reach * k) for k in (0.6, 0.68, 0.76, 0.84)]
    return Counter(counts).most_common(1)[0][0]


def _runs_on_arc(mask: np.ndarray, centre: tuple[int, int], radius: float) -> int:
    """Foreground runs on the upper arc (within 125 degrees of straight up) of a ring."""
    angles = np.radians(np.linspace(-125, 125, 200))
    ys = np.round(centre[0] - radius * np.cos(angles)).astype(int)
    xs = np.round(centre[1] + radius * np.sin(angles)).astype(int)
    inside = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
    on = np.zeros(len(angles), dtype=bool)
    on[inside] = mask[ys[inside], xs[inside]]
    return int(np.sum(on[1:] & ~on[:-1]) + on[0])


def count_blobs(image: Image.Image) -> int:
    """Separate foreground objects (circles in a counting scene)."""
    sizes = morphology.component_sizes(foreground_mask(to_rgb(image)))
    return sum(size >= _MIN_BLOB for size in sizes)


def flower_colour(image: Image.Image) -> str | None:
    rgb = to_rgb(image)
    return dominant_colour(rgb, foreground_mask(rgb), ignore=("centre", "stem", "skin-light", "skin-dark"))


def colour_share(image: Image.Image, name: str, ignore: tuple[str, ...] = ("centre", "stem")) -> float:
    """The fraction of the foreground (less ``ignore``) nearest to colour ``name``."""
    rgb = to_rgb(image)
    names = [n for n in palette_names(rgb[foreground_mask(rgb)]) if n not in ignore]
    return sum(n == name for n in names) / len(names) if names else 0.0


def horizontal_offset(image: Image.Image, left: str, right: str) -> float | None:
    """How far (pixels) colour ``right``'s centre is right of colour ``left``'s; None if either is missing."""
    rgb = to_rgb(image)
    xs = []
    for name in (left, right):
        mask = colour_mask(rgb, name)
        if mask.sum() < _MIN_BLOB:
            return None
        xs.append(float(np.nonzero(mask)[1].mean()))
    return xs[1] - xs[0]


@dataclass(frozen=True)
class StarLook:
    colour: str | None
    area: int  # foreground pixels
    dark_background: bool
    objects: int

    @property
    def small(self) -> bool:
        return 0 < self.area < SMALL_STAR_AREA


def star_look(image: Image.Image) -> StarLook:
    rgb = to_rgb(image)
    mask = foreground_mask(rgb)
    objects = sum(size >= _MIN_BLOB for size in morphology.component_sizes(mask))
    return StarLook(dominant_colour(rgb, mask), int(mask.sum()), is_dark(background_colour(rgb)), objects)


# Accuracy on held-out procedural images -------------------------------------


def truth_and_reading(image: Image.Image, scene: Scene) -> tuple[object, object]:
    """What the scene's parameters say and what the judge reads, for the family's own question."""
    p = scene.params
    if scene.family == "hand":
        return p["fingers"], count_fingers(image)
    if scene.family == "circles":
        return p["count"], count_blobs(image)
    if scene.family == "flower":
        return p["colour"], flower_colour(image)
    if scene.family == "pair":
        (first, _), (second, _) = p["first"], p["second"]
        offset = horizontal_offset(image, first, second)
        return p["first_left"], None if offset is None else offset > 0
    look = star_look(image)
    return (p["colour"], p["small"], scene.background == "dark", 1), (look.colour, look.small, look.dark_background, look.objects)


def held_out_accuracy(n_per_family: int, families: tuple[str, ...] = ("hand", "circles", "flower", "pair", "star")) -> dict[str, float]:
    """Fraction of held-out procedural images (seeds never used in training) the judge reads right, per family."""
    accuracy = {}
    for family in families:
        right = 0
        for i in range(n_per_family):
            example = make_example(f"heldout:{family}:{i}", family)
            truth, reading = truth_and_reading(example.image, example.scene)
            right += truth == reading
        accuracy[family] = right / n_per_family
    return accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The demo judge's accuracy on held-out procedural images")
    parser.add_argument("--eval", action="store_true", help="measure accuracy per scene family")
    parser.add_argument("-n", type=int, default=400, help="held-out images per family")
    args = parser.parse_args(argv)
    if args.eval:
        for family, acc in held_out_accuracy(args.n).items():
            print(f"{family:8s} {acc:6.1%}  ({args.n} held-out images)")
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
