"""How well the demo model draws what its captions say, and how often it already meets each evaluator's intent.

    python -m hero_engine.demo.report [--model demo] [--n 8] [--n-intent 64] [--out demo-report]

Images are sampled the way a HERO session samples them (DDIM, eta 1, guidance 5,
50 steps, the engine's own sampler) and read by the judge. It also writes
image grids, with the judge's reading under each image, for checking by eye.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from hero_engine.evaluation import judge
from hero_engine.evaluation.evaluators import SpatialEvaluator
from hero_engine.evaluation.world import NUMBERS


def _offset_reading(im: Image.Image) -> str:
    left, right = SpatialEvaluator.left, SpatialEvaluator.right
    offset = judge.horizontal_offset(im, left, right)
    return f"{left}/{right} missing" if offset is None else f"{right}-{left} {offset:+.0f}px"


def _star_reading(im: Image.Image) -> str:
    look = judge.star_look(im)
    return f"{look.objects}x {'small' if look.small else 'large'} {look.colour} {'dark' if look.dark_background else 'light'}"


# What the judge reads for each intent, printed under the images for checking by eye.
INTENT_READINGS: dict[str, Callable[[Image.Image], str]] = {
    "hand": lambda im: f"{judge.count_fingers(im)} fingers",
    "counting": lambda im: f"{judge.count_blobs(im)} blobs",
    "attribute": lambda im: str(judge.flower_colour(im)),
    "spatial": _offset_reading,
    "personal": _star_reading,
}


@dataclass(frozen=True)
class CaptionCheck:
    """A caption, and whether the judge finds what it says in an image."""

    caption: str
    holds: Callable[[Image.Image], bool]
    reading: Callable[[Image.Image], str]


def _fingers(n: int) -> CaptionCheck:
    return CaptionCheck(f"a hand with {NUMBERS[n]} fingers", lambda im: judge.count_fingers(im) == n,
                        lambda im: f"{judge.count_fingers(im)} fingers")


def _circles(n: int) -> CaptionCheck:
    return CaptionCheck(f"{NUMBERS[n]} circles", lambda im: judge.count_blobs(im) == n,
                        lambda im: f"{judge.count_blobs(im)} blobs")


def _flower(colour: str) -> CaptionCheck:
    article = "an" if colour[0] in "aeiou" else "a"
    return CaptionCheck(f"{article} {colour} flower", lambda im: judge.flower_colour(im) == colour,
                        lambda im: str(judge.flower_colour(im)))


def _pair(first: str, second: str, left: bool) -> CaptionCheck:
    def holds(im: Image.Image) -> bool:
        offset = judge.horizontal_offset(im, first, second)
        return offset is not None and (offset > 0) == left

    def reading(im: Image.Image) -> str:
        offset = judge.horizontal_offset(im, first, second)
        return "missing" if offset is None else f"{first} {'left' if offset > 0 else 'right'}"

    relation = "left of" if left else "right of"
    return CaptionCheck(f"a {first} circle {relation} a {second} square", holds, reading)


def _star(colour: str, small: bool) -> CaptionCheck:
    def holds(im: Image.Image) -> bool:
        look = judge.star_look(im)
        return look.colour == colour and look.small == small

    def reading(im: Image.Image) -> str:
        look = judge.star_look(im)
        return f"{'small' if look.small else 'large'} {look.colour}"

    return CaptionCheck(f"a {'small' if small else 'large'} {colour} star", holds, reading)


CAPTION_FAMILIES: dict[str, list[CaptionCheck]] = {
    "hand": [_fingers(n) for n in range(3, 8)],
    "circles": [_circles(n) for n in range(2, 7)],
    "flower": [_flower(c) for c in ("red", "yellow", "pink", "purple", "orange", "blue")],
    "pair": [_pair("red", "blue", True), _pair("red", "blue", False), _pair("green", "yellow", True), _pair("yellow", "green", True)],
    "star": [_star("yellow", True), _star("red", False), _star("blue", True), _star("orange", False)],
}


@torch.no_grad()
def generate(pipe, prompt: str, n: int, seed: int, steps: int = 50, guidance: float = 5.0, eta: float = 1.0) -> list[Image.Image]:
    """``n`` images of ``prompt`` from plain noise, sampled as a HERO session samples round 0."""
    from hero_engine.algorithm.sampling import (
        DdimSchedule,
        decode_images,
        encode_prompt,
        sample_trajectories,
    )

    gen = torch.Generator().manual_seed(seed)
    side = pipe.unet.config.sample_size
    noise = torch.randn((n, pipe.unet.config.in_channels, side, side), generator=gen)
    schedule = DdimSchedule.from_scheduler_config(pipe.scheduler.config, steps)
    trajectory = sample_trajectories(pipe.unet, schedule, encode_prompt(pipe, prompt), noise,
                                     eta=eta, guidance=guidance, generator=gen, chunk=32)
    return decode_images(pipe.vae, trajectory.final_latents)


def annotated_grid(images: list[Image.Image], labels: list[str], columns: int = 8, zoom: int = 3) -> Image.Image:
    side = images[0].width * zoom
    cell_h = side + 14
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (side + 4), rows * cell_h), (128, 128, 128))
    draw = ImageDraw.Draw(grid)
    for i, (image, label) in enumerate(zip(images, labels)):
        x, y = (i % columns) * (side + 4), (i // columns) * cell_h
        grid.paste(image.resize((side, side), Image.NEAREST), (x, y))
        draw.text((x + 2, y + side + 1), label[:24], fill=(255, 255, 255))
    return grid


def caption_fidelity(pipe, n: int, out: Path) -> dict[str, float]:
    """Per caption family, the fraction of images in which the judge finds what the caption says."""
    fidelity = {}
    for family, checks in CAPTION_FAMILIES.items():
        hits, images, labels = 0, [], []
        for k, check in enumerate(checks):
            batch = generate(pipe, check.caption, n, seed=1000 + k)
            hits += sum(check.holds(im) for im in batch)
            images += batch
            labels += [f"{'ok' if check.holds(im) else 'NO'} {check.reading(im)}" for im in batch]
        fidelity[family] = hits / (n * len(checks))
        annotated_grid(images, labels, columns=n).save(out / f"captions-{family}.png")
    return fidelity


def base_success(pipe, n: int, out: Path) -> dict[str, float]:
    """Per evaluator, the fraction of images of its default prompt that meet its intent."""
    from hero_engine.evaluation.evaluators import get_evaluator

    rates = {}
    for name, read in INTENT_READINGS.items():
        evaluator = get_evaluator(name)
        images = generate(pipe, evaluator.prompt, n, seed=7)
        wins = [evaluator.is_success(im) for im in images]
        rates[name] = sum(wins) / n
        labels = [f"{'YES' if w else 'no'} {read(im)}" for im, w in zip(images, wins)]
        annotated_grid(images, labels).save(out / f"intent-{name}.png")
    return rates


def main(argv: list[str] | None = None) -> None:
    from hero_engine.models.pipelines import Runtime, load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--n", type=int, default=8, help="images per caption")
    parser.add_argument("--n-intent", type=int, default=64, help="images per evaluator prompt")
    parser.add_argument("--out", type=Path, default=Path("demo-report"), help="folder for the grids")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(args.model, Runtime.resolve("cpu", "float32"))
    print(f"caption fidelity ({args.n} images per caption; judge finds what the caption says):")
    for family, rate in caption_fidelity(pipe, args.n, args.out).items():
        print(f"  {family:8s} {rate:6.1%}")
    print(f"base success rate of each intent on its default prompt ({args.n_intent} images):")
    from hero_engine.evaluation.evaluators import get_evaluator

    for name, rate in base_success(pipe, args.n_intent, args.out).items():
        print(f"  {name:9s} {get_evaluator(name).prompt!r:40s} {rate:6.1%}")
    print(f"grids written to {args.out}/")


if __name__ == "__main__":
    main()
