"""Question sets for the visual-tokenizer (multimodal-LLM) protocol, built from exact labels.

Four kinds, after GVT (Wang et al., 2023) and Cambrian-1 (Tong et al., 2024):

- "caption": "Describe the image.", answered by any of the image's reference captions;
- "vqa": attribute questions about the large object and the background (one-word answers);
- "oc": object counting, "How many circles are there in the image?" -> "0".."4";
- "mci": multi-class identification, "Does a circle exist in the image?" -> "yes" / "no".

Counting and identification ask about one kind the image holds and one it does not, so the
answers are not all "yes" / non-zero: a model that ignores the image scores near chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitbench.data.embedded import KINDS, ShapesDataset, noun

QUESTION_KINDS = ("caption", "vqa", "oc", "mci")
CAPTION_PROMPT = "Describe the image."
_SEED = 20231004  # which present / absent kinds are asked about; fixed so sets never change


@dataclass(frozen=True)
class Question:
    """One question about one image.

    Attributes:
        image: row of the image in its split (an index into that split's token array).
        kind: one of QUESTION_KINDS.
        prompt: the question text.
        answers: reference answer(s); captions have several, the other kinds one word.
    """

    image: int
    kind: str
    prompt: str
    answers: tuple[str, ...]


def shapes_questions(dataset: ShapesDataset) -> list[Question]:
    """Every question of every image of a `shapes` split, image by image.

    Per image: one caption, three attribute questions (colour and kind of the large object,
    background), two counting and two identification questions (a present kind and an
    absent one each). A pure function of the dataset: the kinds asked about are drawn from a
    generator seeded by the image index, so a subset's questions are a prefix of the full set's.
    """
    return [question for index in range(len(dataset))
            for question in _image_questions(dataset, index)]


def _image_questions(dataset: ShapesDataset, index: int) -> list[Question]:
    scene, counts = dataset.scene(index), dataset.counts[index]
    rng = np.random.default_rng((_SEED, index))
    attributes = (("What colour is the large shape?", scene.main.colour),
                  ("What shape is the large object?", scene.main.kind),
                  ("Is the background dark or light?", scene.background))
    questions = [Question(index, "caption", CAPTION_PROMPT, tuple(dataset.captions[index]))]
    questions += [Question(index, "vqa", prompt, (answer,)) for prompt, answer in attributes]
    questions += [Question(index, "oc", f"How many {noun(kind, 2)} are there in the image?",
                           (str(counts[KINDS.index(kind)]),))
                  for kind in _present_and_absent(counts, rng)]
    questions += [Question(index, "mci", f"Does a {kind} exist in the image?",
                           ("yes" if counts[KINDS.index(kind)] else "no",))
                  for kind in _present_and_absent(counts, rng)]
    return questions


def _present_and_absent(counts: np.ndarray, rng: np.random.Generator) -> tuple[str, str]:
    """A kind the image holds and one it does not: every scene has 1-4 objects of 5 kinds,
    so both always exist."""
    present, absent = np.flatnonzero(counts > 0), np.flatnonzero(counts == 0)
    return KINDS[rng.choice(present)], KINDS[rng.choice(absent)]
