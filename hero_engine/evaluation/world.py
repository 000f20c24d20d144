"""The demo model's procedural world: scenes drawn with PIL from a seed, captioned from their own parameters.

Five scene families, each biased so that one specific look is a minority:
hands (fingers 3-7, so exactly five is 1 in 5), circles (2-6 of them, so three
is 1 in 5), flowers (blue petals about 1 in 10), two-object pairs (the
first-named object is on the left only 3 times in 10), and stars (small, yellow
and on a dark background about 1 in 9). A caption mentions each attribute or
not independently of its value, so an unqualified caption ("hand", "circles",
"a flower") is drawn from the family's marginal distribution.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

SIZE = 64
_SUPERSAMPLE = 4  # draw at 4x and downsample, for clean anti-aliased edges

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "blue": (35, 75, 225),
    "yellow": (240, 205, 30),
    "green": (40, 160, 60),
    "purple": (140, 50, 185),
    "orange": (245, 135, 25),
    "pink": (240, 120, 185),
}
BACKGROUNDS: dict[str, list[tuple[int, int, int]]] = {
    "light": [(250, 250, 245), (232, 224, 205)],
    "dark": [(22, 26, 58), (14, 14, 14)],
}
SKIN = [(228, 178, 140), (176, 112, 70)]
FLOWER_CENTRE = (110, 62, 20)
STEM = (50, 130, 50)
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven"]

FAMILIES = ("hand", "circles", "flower", "pair", "star")
_FAMILY_WEIGHTS = (0.25, 0.2, 0.2, 0.2, 0.15)
_FLOWER_COLOURS = {"red": 0.28, "yellow": 0.24, "pink": 0.18, "purple": 0.12, "orange": 0.08, "blue": 0.1}
_STAR_COLOURS = {"yellow": 0.45, "red": 0.15, "purple": 0.12, "orange": 0.1, "pink": 0.1, "blue": 0.08}
_CIRCLE_COLOURS = ["red", "blue", "yellow", "green", "purple", "orange", "pink"]
_PAIR_COLOURS = ["red", "blue", "green", "yellow"]
_PAIR_SHAPES = ["circle", "square", "triangle"]
_FIRST_LEFT = 0.3
_FINGER_SPACING = 27.0  # degrees between neighbouring fingers


@dataclass(frozen=True)
class Scene:
    """What a drawing shows: its family, background and per-family parameters."""

    family: str
    background: str  # "light" or "dark"
    params: dict = field(default_factory=dict)


def sample_scene(rng: random.Random, family: str | None = None) -> Scene:
    family = family or rng.choices(FAMILIES, _FAMILY_WEIGHTS)[0]
    background = "dark" if rng.random() < (0.5 if family == "star" else 0.35) else "light"
    return Scene(family, background, _SAMPLERS[family](rng))


def _hand(rng: random.Random) -> dict:
    return {"fingers": rng.randint(3, 7), "skin": rng.randrange(len(SKIN)), "scale": rng.uniform(0.9, 1.1),
            "dx": rng.uniform(-4, 4), "dy": rng.uniform(-3, 3), "tilt": rng.uniform(-10, 10)}


def _circles(rng: random.Random) -> dict:
    count = 1 if rng.random() < 0.12 else rng.randint(2, 6)
    radius = rng.uniform(5.0, 7.0)
    return {"count": count, "colour": rng.choice(_CIRCLE_COLOURS), "radius": radius,
            "centres": _spread_points(rng, count, radius)}


def _spread_points(rng: random.Random, count: int, radius: float) -> list[tuple[float, float]]:
    """Non-overlapping circle centres with a visible gap (so the circles can be counted)."""
    while True:
        points: list[tuple[float, float]] = []
        for _ in range(200):
            p = (rng.uniform(radius + 3, SIZE - radius - 3), rng.uniform(radius + 3, SIZE - radius - 3))
            if all(math.dist(p, q) > 2 * radius + 4 for q in points):
                points.append(p)
                if len(points) == count:
                    return points


def _flower(rng: random.Random) -> dict:
    colour = rng.choices(list(_FLOWER_COLOURS), list(_FLOWER_COLOURS.values()))[0]
    return {"colour": colour, "petals": rng.randint(5, 7), "scale": rng.uniform(0.85, 1.15),
            "dx": rng.uniform(-5, 5), "dy": rng.uniform(-4, 2), "turn": rng.uniform(0, 360)}


def _pair(rng: random.Random) -> dict:
    colour_a, colour_b = rng.sample(_PAIR_COLOURS, 2)
    return {"first": (colour_a, rng.choice(_PAIR_SHAPES)), "second": (colour_b, rng.choice(_PAIR_SHAPES)),
            "first_left": rng.random() < _FIRST_LEFT, "size": rng.uniform(8, 11),
            "dy": (rng.uniform(-8, 8), rng.uniform(-8, 8)), "dx": rng.uniform(-3, 3)}


def _star(rng: random.Random) -> dict:
    colour = rng.choices(list(_STAR_COLOURS), list(_STAR_COLOURS.values()))[0]
    small = rng.random() < 0.5
    radius = rng.uniform(7, 10) if small else rng.uniform(18, 24)
    margin = radius + 2
    return {"colour": colour, "small": small, "radius": radius, "turn": rng.uniform(-15, 15),
            "centre": (rng.uniform(margin, SIZE - margin), rng.uniform(margin, SIZE - margin))}


_SAMPLERS = {"hand": _hand, "circles": _circles, "flower": _flower, "pair": _pair, "star": _star}


# Drawing ---------------------------------------------------------------------


def draw_scene(scene: Scene, variant: int = 0) -> Image.Image:
    """The scene as a 64x64 RGB image; ``variant`` picks the background's shade."""
    shades = BACKGROUNDS[scene.background]
    big = Image.new("RGB", (SIZE * _SUPERSAMPLE,) * 2, shades[variant % len(shades)])
    draw = ImageDraw.Draw(big)
    _PAINTERS[scene.family](draw, scene.params)
    return big.resize((SIZE, SIZE), Image.LANCZOS)


def _s(v: float) -> float:
    return v * _SUPERSAMPLE


def _paint_hand(draw: ImageDraw.ImageDraw, p: dict) -> None:
    colour = SKIN[p["skin"]]
    cx, cy = 32 + p["dx"], 42 + p["dy"]
    palm, finger_len, finger_w = 9.5 * p["scale"], 20 * p["scale"], 3.6 * p["scale"]
    n = p["fingers"]
    for i in range(n):
        angle = math.radians(p["tilt"] + (i - (n - 1) / 2) * _FINGER_SPACING)
        tip = (cx + finger_len * math.sin(angle), cy - finger_len * math.cos(angle))
        draw.line([(_s(cx), _s(cy)), (_s(tip[0]), _s(tip[1]))], fill=colour, width=round(_s(finger_w)))
        r = _s(finger_w / 2)
        draw.ellipse([_s(tip[0]) - r, _s(tip[1]) - r, _s(tip[0]) + r, _s(tip[1]) + r], fill=colour)
    draw.ellipse([_s(cx - palm), _s(cy - palm), _s(cx + palm), _s(cy + palm * 1.15)], fill=colour)


def _paint_circles(draw: ImageDraw.ImageDraw, p: dict) -> None:
    r = p["radius"]
    for x, y in p["centres"]:
        draw.ellipse([_s(x - r), _s(y - r), _s(x + r), _s(y + r)], fill=COLOURS[p["colour"]])


def _paint_flower(draw: ImageDraw.ImageDraw, p: dict) -> None:
    cx, cy, k = 32 + p["dx"], 28 + p["dy"], p["scale"]
    draw.line([(_s(cx), _s(cy)), (_s(cx), _s(63))], fill=STEM, width=round(_s(2.5)))
    petal_r, reach = 6.0 * k, 9.0 * k
    for i in range(p["petals"]):
        a = math.radians(p["turn"] + 360 * i / p["petals"])
        px, py = cx + reach * math.cos(a), cy + reach * math.sin(a)
        draw.ellipse([_s(px - petal_r), _s(py - petal_r), _s(px + petal_r), _s(py + petal_r)], fill=COLOURS[p["colour"]])
    c = 4.5 * k
    draw.ellipse([_s(cx - c), _s(cy - c), _s(cx + c), _s(cy + c)], fill=FLOWER_CENTRE)


def _paint_pair(draw: ImageDraw.ImageDraw, p: dict) -> None:
    left_x, right_x = 18 + p["dx"], 46 + p["dx"]
    first_x, second_x = (left_x, right_x) if p["first_left"] else (right_x, left_x)
    for (colour, shape), x, dy in ((p["first"], first_x, p["dy"][0]), (p["second"], second_x, p["dy"][1])):
        _paint_shape(draw, shape, (x, 32 + dy), p["size"], COLOURS[colour])


def _paint_shape(draw: ImageDraw.ImageDraw, shape: str, centre: tuple[float, float], r: float, colour) -> None:
    x, y = centre
    if shape == "circle":
        draw.ellipse([_s(x - r), _s(y - r), _s(x + r), _s(y + r)], fill=colour)
    elif shape == "square":
        h = r * 0.88
        draw.rectangle([_s(x - h), _s(y - h), _s(x + h), _s(y + h)], fill=colour)
    else:
        draw.polygon([(_s(x), _s(y - r)), (_s(x + r), _s(y + r * 0.8)), (_s(x - r), _s(y + r * 0.8))], fill=colour)


def _paint_star(draw: ImageDraw.ImageDraw, p: dict) -> None:
    (cx, cy), r = p["centre"], p["radius"]
    points = []
    for i in range(10):
        a = math.radians(p["turn"] - 90 + 36 * i)
        rr = r if i % 2 == 0 else r * 0.45
        points.append((_s(cx + rr * math.cos(a)), _s(cy + rr * math.sin(a))))
    draw.polygon(points, fill=COLOURS[p["colour"]])


_PAINTERS = {"hand": _paint_hand, "circles": _paint_circles, "flower": _paint_flower, "pair": _paint_pair, "star": _paint_star}


# Captions --------------------------------------------------------------------


def caption_scene(scene: Scene, rng: random.Random) -> str:
    """A caption that is true of the scene; each attribute is mentioned or not, independently of its value."""
    text = _CAPTIONERS[scene.family](scene.params, rng)
    if rng.random() < 0.25:
        text += f" on a {scene.background} background"
    return text


def _caption_hand(p: dict, rng: random.Random) -> str:
    base = rng.choice(["hand", "a hand"])
    return f"{base} with {NUMBERS[p['fingers']]} fingers" if rng.random() < 0.5 else base


def _caption_circles(p: dict, rng: random.Random) -> str:
    if p["count"] == 1:
        return rng.choice(["a circle", f"{_article(p['colour'])} {p['colour']} circle"])
    words = ["circles"]
    if rng.random() < 0.5:
        words.insert(0, p["colour"])
    if rng.random() < 0.5:
        words.insert(0, NUMBERS[p["count"]])
    return " ".join(words)


def _caption_flower(p: dict, rng: random.Random) -> str:
    return f"{_article(p['colour'])} {p['colour']} flower" if rng.random() < 0.5 else "a flower"


def _caption_pair(p: dict, rng: random.Random) -> str:
    first, second = (f"{_article(obj[0])} {obj[0]} {obj[1]}" for obj in (p["first"], p["second"]))
    if rng.random() < 0.5:
        return f"{first} and {second}"
    relation = "left of" if p["first_left"] else "right of"
    return f"{first} {relation} {second}"


def _caption_star(p: dict, rng: random.Random) -> str:
    words = ["star"]
    if rng.random() < 0.5:
        words.insert(0, p["colour"])
    if rng.random() < 0.5:
        words.insert(0, "small" if p["small"] else "large")
    return f"{_article(words[0])} " + " ".join(words)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_CAPTIONERS = {"hand": _caption_hand, "circles": _caption_circles, "flower": _caption_flower, "pair": _caption_pair, "star": _caption_star}


def caption_words() -> list[str]:
    """Every word a caption can use (the demo tokenizer's whole-word vocabulary)."""
    words = {"a", "an", "and", "hand", "with", "fingers", "circle", "circles", "flower", "star", "small", "large",
             "left", "right", "of", "on", "background", "light", "dark"}
    words |= set(NUMBERS[1:]) | set(COLOURS) | set(_PAIR_SHAPES)
    return sorted(words)


@dataclass(frozen=True)
class Example:
    image: Image.Image
    caption: str
    scene: Scene


def make_example(seed: int | str, family: str | None = None) -> Example:
    """The drawing, caption and parameters of one seed: the same seed always gives the same example."""
    rng = random.Random(seed)
    scene = sample_scene(rng, family)
    image = draw_scene(scene, variant=rng.randrange(2))
    return Example(image, caption_scene(scene, rng), scene)
