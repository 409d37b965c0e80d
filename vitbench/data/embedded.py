"""Two datasets that need no download: scikit-learn's handwritten digits and procedural shapes.

`digits` is real data (1,797 8x8 scans of handwritten digits, 10 classes) with a fixed seeded
stratified split. `shapes` is a seeded image-text set whose structured labels (what objects,
how many of each, where) are known exactly, so counting, presence and VQA tasks can be built
from it; each image is generated on demand from (generator version, split, index) alone.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vitbench.data.base import ImageDataset, resolve_split

# --- digits ------------------------------------------------------------------------------

DIGITS_VERSION = 1  # bump when the split or the pixel scaling changes
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLITS = ("train", "test")
_DIGITS_MAX = 16  # sklearn's digits count 0..16 pixels on per 4x4 block


@dataclass(frozen=True)
class _DigitsSplit:
    indices: np.ndarray  # rows of sklearn's arrays
    images: np.ndarray  # (N, 8, 8) uint8, 0..255
    labels: np.ndarray  # (N,) int64


class DigitsDataset(ImageDataset):
    """scikit-learn's 8x8 handwritten digits as RGB images; classes "0".."9".

    Attributes:
        source_indices: (N,) rows of `sklearn.datasets.load_digits()` in this split.
    """

    def __init__(self, split: str = "train"):
        split = resolve_split("digits", split, DIGITS_SPLITS)
        data = _digits_split(split)
        self.source_indices = data.indices
        self._images = data.images
        super().__init__(
            name="digits",
            split=split,
            classes=tuple(str(digit) for digit in range(10)),
            labels=data.labels,
            fingerprint=f"digits-v{DIGITS_VERSION}-seed{DIGITS_SEED}-{split}",
            captions=[digit_captions(int(label)) for label in data.labels],
        )

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self._images[index]).convert("RGB")


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_captions(digit: int) -> list[str]:
    """Captions for image-text pretraining on digits; they name the digit, nothing else (the
    scans carry no other describable content), phrased three ways."""
    word = DIGIT_WORDS[digit]
    return [f"a handwritten digit {word}", f"the number {digit}",
            f"a scan of a handwritten {word}"]


@functools.cache
def _digits_split(split: str) -> _DigitsSplit:
    # Imported here: scikit-learn takes a second to import and most runs never need digits.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train, test = train_test_split(
        np.arange(len(digits.target)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=digits.target,
        random_state=DIGITS_SEED,
    )
    indices = np.sort(train if split == "train" else test)
    images = np.round(digits.images[indices] * (255 / _DIGITS_MAX)).astype(np.uint8)
    return _DigitsSplit(indices, images, digits.target[indices].astype(np.int64))


# --- shapes ------------------------------------------------------------------------------

SHAPES_VERSION = 1  # bump whenever a scene or its rendering changes: it keys the feature cache
KINDS = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
IMAGE_SIZE = 64
SHAPES_SPLITS = {"train": 2000, "test": 1000}  # split -> number of images

COLOUR_RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 85, 225),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
_SPLIT_SEEDS = {"train": 0, "test": 1}
_BACKGROUNDS = {"dark": (24, 24, 28), "light": (228, 228, 222)}
_RADIUS = {"small": 5, "large": 13}  # half the bounding box, pixels at IMAGE_SIZE
_MAX_SMALL = 3
_GAP = 3  # minimum spacing between bounding boxes, pixels
_PLACEMENT_TRIES = 30
_SUPERSAMPLE = 4  # draw 4x larger and downsample: antialiased edges
_NUMBERS = ("no", "one", "two", "three", "four")


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object; `x`, `y` are its centre in pixels of the 64x64 image."""

    kind: str
    colour: str
    size: str
    x: int
    y: int

    @property
    def radius(self) -> int:
        """Half the side of the object's bounding box, in pixels."""
        return _RADIUS[self.size]


@dataclass(frozen=True)
class ShapesScene:
    """Everything drawn in one image; `objects[0]` is the single large "main" object."""

    objects: tuple[ShapeObject, ...]
    background: str

    @property
    def main(self) -> ShapeObject:
        return self.objects[0]


def make_scene(split: str, index: int) -> ShapesScene:
    """The scene of image `index` of `split`: a pure function of (version, split, index).

    One large object (the main one, placed first) and 0-3 small ones whose bounding boxes
    do not overlap; kinds, colours and the dark/light background are uniform at random.
    """
    rng = np.random.default_rng((SHAPES_VERSION, _SPLIT_SEEDS[split], index))
    background = ("dark", "light")[rng.integers(2)]
    objects: list[ShapeObject] = []
    for size in ["large"] + ["small"] * int(rng.integers(_MAX_SMALL + 1)):
        kind, colour = KINDS[rng.integers(len(KINDS))], COLOURS[rng.integers(len(COLOURS))]
        low, high = _RADIUS[size] + 2, IMAGE_SIZE - 3 - _RADIUS[size]
        for _ in range(_PLACEMENT_TRIES):
            x, y = (int(v) for v in rng.integers(low, high + 1, size=2))
            candidate = ShapeObject(kind, colour, size, x, y)
            if all(_apart(candidate, placed) for placed in objects):
                objects.append(candidate)
                break
    return ShapesScene(tuple(objects), background)


def render_scene(scene: ShapesScene) -> Image.Image:
    """Draw a scene as a 64x64 RGB image."""
    side = IMAGE_SIZE * _SUPERSAMPLE
    canvas = Image.new("RGB", (side, side), _BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        _draw_object(draw, obj)
    return canvas.reduce(_SUPERSAMPLE)  # box filter: each pixel averages its 4x4 block


def scene_captions(scene: ShapesScene) -> list[str]:
    """Three differently phrased captions that each describe the whole scene."""
    main = _phrase(1, scene.main.size, scene.main.colour, scene.main.kind)
    groups = Counter((obj.colour, obj.kind) for obj in scene.objects[1:])
    smalls = [_phrase(n, "small", colour, kind) for (colour, kind), n in groups.items()]
    on_background = f"on a {scene.background} background"
    if smalls:
        beside = f"{_join(smalls)} next to {main} {on_background}"
    else:
        beside = f"{main} {on_background}"
    kinds = Counter(obj.kind for obj in scene.objects)
    if len(scene.objects) == 1:
        summary = f"a picture of a single {scene.main.kind}"
    else:
        listed = _join([f"{_NUMBERS[n]} {noun(kind, n)}" for kind, n in kinds.items()])
        summary = f"a picture of {_NUMBERS[len(scene.objects)]} shapes: {listed}"
    return [_join([main, *smalls]), beside, summary]


class ShapesDataset(ImageDataset):
    """Procedural shapes with captions and exact object labels.

    Class label: the kind of the main object. Every image has exactly one large object and
    0-3 small ones of any kind, so the label is well-posed (one answer per image) and
    learnable (the large object dominates the picture), while the small objects act as
    distractors. Classes are the bare kind names ("circle", ...), ready for zero-shot prompts.

    Attributes:
        KINDS, COLOURS, SIZES: the vocabularies, in label/column order.
        counts: (N, len(KINDS)) int64, objects of each kind (any size) per image.
        presence: (N, len(KINDS)) bool, `counts > 0`.
    """

    KINDS = KINDS
    COLOURS = COLOURS
    SIZES = SIZES

    def __init__(self, split: str = "train", n_images: int | None = None):
        split = resolve_split("shapes", split, SHAPES_SPLITS)
        n_images = SHAPES_SPLITS[split] if n_images is None else n_images
        # Scenes are cheap (a few random draws); pixels are rendered only in `image`.
        self._scenes = tuple(make_scene(split, index) for index in range(n_images))
        self.counts = np.array(
            [[Counter(o.kind for o in s.objects)[kind] for kind in KINDS] for s in self._scenes],
            dtype=np.int64,
        ).reshape(n_images, len(KINDS))
        self.presence = self.counts > 0
        super().__init__(
            name="shapes",
            split=split,
            classes=KINDS,
            labels=np.array([KINDS.index(s.main.kind) for s in self._scenes], dtype=np.int64),
            fingerprint=f"shapes-v{SHAPES_VERSION}-{split}-{n_images}",
            captions=[scene_captions(scene) for scene in self._scenes],
        )

    def image(self, index: int) -> Image.Image:
        return render_scene(self._scenes[index])

    def scene(self, index: int) -> ShapesScene:
        """The full description of image `index`."""
        return self._scenes[index]

    def objects(self, index: int) -> tuple[ShapeObject, ...]:
        """The objects of image `index`, main (large) object first."""
        return self._scenes[index].objects


def _apart(a: ShapeObject, b: ShapeObject) -> bool:
    reach = a.radius + b.radius + _GAP
    return abs(a.x - b.x) >= reach or abs(a.y - b.y) >= reach


def _draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject) -> None:
    s = _SUPERSAMPLE
    cx, cy, r = (obj.x + 0.5) * s, (obj.y + 0.5) * s, obj.radius * s
    fill = COLOUR_RGB[obj.colour]
    if obj.kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.kind == "square":
        half = 0.85 * r  # about the area of the circle, so size does not give the kind away
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif obj.kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif obj.kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif obj.kind == "cross":
        arm = 0.35 * r
        draw.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=fill)
        draw.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=fill)
    else:
        raise ValueError(f"no drawing for shape kind {obj.kind!r}")


def noun(kind: str, count: int) -> str:
    if count == 1:
        return kind
    return kind + ("es" if kind.endswith("s") else "s")


def _phrase(count: int, size: str, colour: str, kind: str) -> str:
    number = "a" if count == 1 else _NUMBERS[count]
    return f"{number} {size} {colour} {noun(kind, count)}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
