"""Zero-shot classification with a joint image-text space (CLIP's protocol).

Each class is described by several prompts ("a photo of a {}.", ...); the prompt embeddings
are L2-normalised, averaged and re-normalised into one classifier row per class (CLIP's
prompt ensembling). An image is assigned the class whose row is most similar to its
normalised embedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitbench.errors import VitbenchError
from vitbench.evals.protocols._arrays import normalised_rows


def class_classifier(class_text_x: Any) -> np.ndarray:
    """(C, D) unit rows from (C, D) class embeddings or (C, T, D) per-template embeddings."""
    x = class_text_x.detach().float().cpu().numpy() if hasattr(class_text_x, "detach") \
        else np.asarray(class_text_x, dtype=np.float32)
    if x.ndim == 2:
        return normalised_rows(x, "class_text_x")
    if x.ndim != 3 or 0 in x.shape:
        raise VitbenchError("class_text_x must be (classes, dim) or (classes, templates, dim), "
                            f"got shape {x.shape}")
    classes, templates, dim = x.shape
    per_template = normalised_rows(x.reshape(classes * templates, dim), "class_text_x")
    return normalised_rows(per_template.reshape(classes, templates, dim).mean(1),
                           "class_text_x")


def zero_shot_scores(image_x: Any, class_text_x: Any) -> np.ndarray:
    """(n_images, C) cosine similarities between images and the class classifier rows."""
    images = normalised_rows(image_x, "image_x")
    classifier = class_classifier(class_text_x)
    if images.shape[1] != classifier.shape[1]:
        raise VitbenchError(f"image_x has {images.shape[1]} features but the class text "
                            f"embeddings have {classifier.shape[1]}: not one joint space")
    return images @ classifier.T


def zero_shot_classify(image_x: Any, class_text_x: Any) -> np.ndarray:
    """(n_images,) int64 predicted classes; ties go to the smallest class index."""
    return zero_shot_scores(image_x, class_text_x).argmax(1).astype(np.int64)
