"""Question sets on real images for the visual-tokenizer protocol: VQAv2 and GVT-style JSON.

- VQAv2 (Goyal et al., 2017): `v2_OpenEnded_mscoco_<split>2014_questions.json` and
  `v2_mscoco_<split>2014_annotations.json` in DIR, images in `DIR/<split>2014/`; every
  question has ten human answers (scored with VQAv2's soft accuracy).
- GVT-style files (object counting, multi-class identification, or any mix): `DIR/<split>.json`,
  a list of {"image": path relative to DIR, "question": ..., "answer": ... (or "answers": [...]),
  "type": "oc" | "mci" | "vqa" | "caption"}.

Either way the split is an `ImageDataset` over the distinct images with a `questions` list
whose `image` fields index them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vitbench.data.folders import _digest, _FileDataset
from vitbench.data.questions import QUESTION_KINDS, Question
from vitbench.errors import VitbenchError

_VQA_SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "val"}
_LAYOUT = ("expected VQAv2's v2_OpenEnded_mscoco_<split>2014_questions.json + "
           "v2_mscoco_<split>2014_annotations.json with images in DIR/<split>2014/, or "
           "DIR/<split>.json: [{\"image\", \"question\", \"answer\", \"type\"}, ...]")


def question_file(root: Path, split: str) -> Path | None:
    """The question file of `split` under `root`, if any of the two layouts is there."""
    candidates = [root / f"v2_OpenEnded_mscoco_{_VQA_SPLITS.get(split, split)}2014_questions"
                  ".json", root / f"{split}.json"]
    if split in ("val", "validation", "test"):
        candidates += [root / f"{name}.json" for name in ("val", "validation", "test")]
    return next((c for c in candidates if c.is_file()), None)


class QuestionsDataset(_FileDataset):
    """One split of VQAv2 or of a GVT-style question file (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], split: str, name: str = "vqav2"):
        root = Path(root).expanduser()
        source = question_file(root, split)
        if source is None:
            raise VitbenchError(f"no question file for split {split!r} in {root}; {_LAYOUT}")
        records = _vqa_records(root, source) if source.name.startswith("v2_") else \
            _gvt_records(source)
        self.paths, self.questions = [], []
        row_of: dict[Path, int] = {}
        for path, kind, prompt, answers in records:
            if kind not in QUESTION_KINDS:
                raise VitbenchError(f"{source}: unknown question type {kind!r}; "
                                    f"accepted: {', '.join(QUESTION_KINDS)}")
            row = row_of.setdefault(path, len(row_of))
            if row == len(self.paths):
                self.paths.append(path)
            self.questions.append(Question(row, kind, prompt, tuple(answers)))
        if not self.questions:
            raise VitbenchError(f"{source} has no questions")
        digest = _digest(["questions"], [source, *self.paths], root)
        super().__init__(name=name, split=split, classes=(),
                         labels=np.full(len(self.paths), -1, dtype=np.int64),
                         fingerprint=f"{name}-{split}-{digest}")


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise VitbenchError(f"cannot read {path}: {error}") from None


def _vqa_records(root: Path, source: Path):
    split = source.name.removeprefix("v2_OpenEnded_mscoco_").removesuffix("2014_questions.json")
    annotations = root / f"v2_mscoco_{split}2014_annotations.json"
    if not annotations.is_file():
        raise VitbenchError(f"{source} needs its answers in {annotations}; {_LAYOUT}")
    answers = {a["question_id"]: [x["answer"] for x in a["answers"]]
               for a in _load(annotations)["annotations"]}
    for q in _load(source)["questions"]:
        image = root / f"{split}2014" / f"COCO_{split}2014_{q['image_id']:012d}.jpg"
        yield image, "vqa", q["question"], answers[q["question_id"]]


def _gvt_records(source: Path):
    entries = _load(source)
    if not isinstance(entries, list):
        raise VitbenchError(f"{source} must hold a list of questions; {_LAYOUT}")
    for entry in entries:
        try:
            answers = entry["answers"] if "answers" in entry else [entry["answer"]]
            yield (source.parent / entry["image"], entry.get("type", "vqa"), entry["question"],
                   [str(a) for a in answers])
        except (KeyError, TypeError):
            raise VitbenchError(f"{source}: every question needs image, question and answer "
                                f"(got {entry!r:.120})") from None
