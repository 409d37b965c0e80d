"""Image-text retrieval Recall@K with several captions per image (COCO, Flickr30k protocol).

Text-to-image: each caption has one correct image. Image-to-text: each image has all of its
captions as correct items, and the query is a hit at K when any of them ranks in the top K.
Ranks are those of a stable descending sort: an item is outranked by every item with a higher
score and by every item with the same score and a smaller index, so ties never favour the
correct item and results do not depend on the search library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitbench.errors import VitbenchError
from vitbench.evals.protocols._arrays import normalised_rows

# Score rows per chunk: bounds the (chunk, n_items) similarity block to ~256 MB.
_BLOCK_FLOATS = 64 * 2**20


@dataclass(frozen=True)
class RetrievalRecall:
    """Recall@K in [0, 1] for each K, both directions, plus the per-query ranks they come
    from (0 = first), which the bootstrap intervals resample."""

    image_to_text: dict[int, float]
    text_to_image: dict[int, float]
    image_ranks: np.ndarray  # (n_images,) rank of each image's best-ranked caption
    text_ranks: np.ndarray  # (n_texts,) rank of each caption's image


def retrieval_recall(image_x: Any, text_x: Any, text_to_image: Any,
                     ks: tuple[int, ...] = (1, 5, 10)) -> RetrievalRecall:
    """Recall@K both ways on cosine similarity.

    Args:
        image_x: (n_images, D) image embeddings in the joint space.
        text_x: (n_texts, D) caption embeddings.
        text_to_image: (n_texts,) index of each caption's image; every image needs >= 1 caption.
        ks: the K values, each >= 1.
    """
    images, texts = normalised_rows(image_x, "image_x"), normalised_rows(text_x, "text_x")
    owner = _owners(text_to_image, len(texts), len(images))
    if images.shape[1] != texts.shape[1]:
        raise VitbenchError(f"image_x has {images.shape[1]} features but text_x has "
                            f"{texts.shape[1]}: not one joint space")
    if not ks or any(int(k) < 1 for k in ks):
        raise VitbenchError(f"retrieval ks must be positive integers, got {ks}")
    images_t, texts_t = torch.from_numpy(images), torch.from_numpy(texts)
    owner_t = torch.from_numpy(owner)
    text_ranks = _ranks(texts_t, images_t, lambda rows: owner_t[rows].unsqueeze(1))
    image_ranks = _ranks(images_t, texts_t, lambda rows: _captions_of(rows, owner_t))
    return RetrievalRecall(
        image_to_text={int(k): float((image_ranks < k).mean()) for k in ks},
        text_to_image={int(k): float((text_ranks < k).mean()) for k in ks},
        image_ranks=image_ranks, text_ranks=text_ranks)


def _owners(text_to_image: Any, n_texts: int, n_images: int) -> np.ndarray:
    owner = np.asarray(text_to_image.cpu() if hasattr(text_to_image, "cpu") else text_to_image)
    if owner.shape != (n_texts,) or not np.issubdtype(owner.dtype, np.integer):
        raise VitbenchError(f"text_to_image must be ({n_texts},) integer image indices, got "
                            f"shape {owner.shape} dtype {owner.dtype}")
    if owner.min() < 0 or owner.max() >= n_images:
        raise VitbenchError(f"text_to_image holds indices outside [0, {n_images})")
    missing = np.setdiff1d(np.arange(n_images), owner)
    if len(missing):
        raise VitbenchError(f"{len(missing)} images have no caption (first: {missing[0]}); "
                            "image-to-text recall needs at least one per image")
    return owner.astype(np.int64)


def _captions_of(rows: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """(len(rows), n_texts) bool: caption j belongs to image rows[i]."""
    return owner.unsqueeze(0) == rows.unsqueeze(1)


def _ranks(queries: torch.Tensor, items: torch.Tensor, correct) -> np.ndarray:
    """Per query, the stable-descending rank of its best correct item. `correct(rows)` gives
    either (r, 1) indices of the single correct item or an (r, n_items) bool mask."""
    ranks = np.empty(len(queries), dtype=np.int64)
    chunk = max(1, _BLOCK_FLOATS // max(len(items), 1))
    position = torch.arange(len(items))
    for start in range(0, len(queries), chunk):
        rows = torch.arange(start, min(start + chunk, len(queries)))
        scores = queries[rows] @ items.T
        hit = correct(rows)
        if hit.dtype != torch.bool:  # one correct index per query
            hit = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, hit, True)
        # the best correct item: highest score, then smallest index
        masked = scores.masked_fill(~hit, float("-inf"))
        best_score = masked.max(1, keepdim=True).values
        best_index = torch.where(masked == best_score, position, len(items)).min(1,
                                                                              keepdim=True)
        above = (scores > best_score).sum(1)
        tied_before = ((scores == best_score) & (position < best_index.values)).sum(1)
        ranks[start:start + len(rows)] = (above + tied_before).numpy()
    return ranks
