"""Shared by the `slow` "objective learns" tests: train a tiny run, compare against random weights.

`check_learns` trains `objective` on an embedded set, then measures kNN top-1 (train split ->
held-out split, k = 20, pooled features at the run's resolution) for the same architecture
with random weights and for the trained encoder. Image-text objectives also get zero-shot
top-1 on the held-out split from their own text tower (class prompts below) against chance.
Every result is printed (pytest -s shows it) and appended to $VITBENCH_LEARNS_LOG if set, which
is how the closing notes' learns-table is collected.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import vitbench
from vitbench.data import get_dataset
from vitbench.data.embedded import digit_captions
from vitbench.pretrain.capfilt import write_pairs_csv
from vitbench.pretrain.trainer import TrainConfig, load_objective, online_knn, train


@dataclass
class Learned:
    objective: str
    model: str
    data: str
    knn_random: float
    knn_trained: float
    seconds: float
    zero_shot: float | None = None
    chance: float | None = None


def class_prompts(data: str, classes: tuple[str, ...]) -> list[str]:
    if data == "digits":
        return [digit_captions(int(c))[0] for c in classes]
    return [f"a large {c}" for c in classes]


def zero_shot(out, data: str, resolution: int) -> float:
    """Top-1 of argmax over class prompts, with the run's own image and text towers."""
    objective = load_objective(out)
    encoder = vitbench.load(str(out))
    dataset = get_dataset(data, "test")
    pixels = torch.stack([encoder.transform(dataset.image(i)) for i in range(len(dataset))])
    with torch.no_grad():
        text = objective.embed_text(class_prompts(data, dataset.classes))
        image = torch.cat([objective.embed_image(chunk) for chunk in pixels.split(256)])
    predicted = (image @ text.T).argmax(1).numpy()
    return float((predicted == dataset.labels).mean())


def check_learns(tmp_path, objective: str, model: str = "vit_pico", data: str = "digits",
                 resolution: int = 32, image_text: bool = False, **config) -> Learned:
    out = train(TrainConfig(objective, model, data=data, resolution=resolution,
                            out=str(tmp_path / objective), **config))
    return measure_run(out, objective, model, data, resolution, image_text)


def measure_run(out, objective: str, model: str = "vit_pico", data: str = "digits",
                resolution: int = 32, image_text: bool = False) -> Learned:
    """The learns record of a finished run (also one trained elsewhere, e.g. a cached recipe);
    `seconds` is the training time its metrics log recorded."""
    before = online_knn(vitbench.load(model, pretrained=False, resolution=resolution), data)
    after = online_knn(vitbench.load(str(out)), data)
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        seconds = max(json.loads(line).get("seconds", 0.0) for line in f)
    result = Learned(objective, model, data, round(before, 4), round(after, 4), round(seconds, 1))
    if image_text:
        result.zero_shot = round(zero_shot(out, data, resolution), 4)
        result.chance = round(1 / len(get_dataset(data, "test").classes), 4)
    print(f"\nlearns {json.dumps(asdict(result))}")
    if os.environ.get("VITBENCH_LEARNS_LOG"):
        with open(os.environ["VITBENCH_LEARNS_LOG"], "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result)) + "\n")
    return result


def save_web_pairs(directory: Path, data: str, pairs: list[tuple[int, str]],
                   name: str) -> Path:
    """A CSV of (image file, caption) rows for `pairs` of (index into `data`'s train split,
    caption), the images saved once as PNGs under `directory / "images"`: a "web" pair set in
    the format a user's own pairs come in."""
    dataset = get_dataset(data, "train")
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    for index in sorted({i for i, _ in pairs}):
        if not (images / f"{index}.png").exists():
            dataset.image(index).save(images / f"{index}.png")
    path = directory / f"{name}.csv"
    write_pairs_csv(path, [(f"images/{i}.png", caption) for i, caption in pairs])
    return path
