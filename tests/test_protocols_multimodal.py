"""Zero-shot, retrieval, few-shot subsets and bootstrap uncertainty (issue 5), each against an
independent computation: open_clip's zero-shot classifier, loops written out here, and
scikit-learn's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from vitbench.errors import VitbenchError
from vitbench.evals import (
    bootstrap_interval,
    few_shot_indices,
    paired_bootstrap,
    retrieval_recall,
    topk_hits,
    zero_shot_classify,
    zero_shot_scores,
)
from vitbench.evals.protocols import per_class_weights


def _rng(seed):
    return np.random.default_rng(seed)


# ---- zero-shot -----------------------------------------------------------------------------

def test_zero_shot_classifier_equals_open_clips():
    """open_clip.build_zero_shot_classifier on a stub model whose text embeddings we choose."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    classes, templates, dim = ["cat", "dog", "car"], [lambda c: f"a {c}", lambda c: f"the {c}"], 8
    table = {f"{t('')}{c}": torch.randn(dim, generator=torch.Generator().manual_seed(i))
             for i, (c, t) in enumerate((c, t) for c in classes for t in templates)}

    class Texts(list):  # stands in for token ids: open_clip moves them to the device
        def to(self, device):
            return self

    class Stub:
        def encode_text(self, tokens, normalize=False):  # as open_clip's CLIP.encode_text
            x = torch.stack([table[text] for text in tokens])
            return torch.nn.functional.normalize(x, dim=-1) if normalize else x

    theirs = build_zero_shot_classifier(Stub(), tokenizer=Texts,
                                        classnames=classes, templates=templates,
                                        num_classes_per_batch=2, device="cpu",
                                        use_tqdm=False).T  # (C, D)
    per_template = torch.stack([torch.stack([table[t("") + c] for t in templates])
                                for c in classes])  # (C, T, D) as vitbench takes them
    images = torch.randn(5, dim, generator=torch.Generator().manual_seed(9))
    want = (torch.nn.functional.normalize(images, dim=-1) @ theirs.T).numpy()
    np.testing.assert_allclose(zero_shot_scores(images, per_template), want, atol=1e-6)
    np.testing.assert_array_equal(zero_shot_classify(images, per_template), want.argmax(1))


def test_zero_shot_rejects_other_spaces():
    with pytest.raises(VitbenchError, match="joint space"):
        zero_shot_scores(np.ones((2, 4)), np.ones((3, 5)))
    with pytest.raises(VitbenchError, match="classes, templates, dim"):
        zero_shot_scores(np.ones((2, 4)), np.ones((3, 2, 4, 1)))


# ---- retrieval -----------------------------------------------------------------------------

def _stable_rank(scores: list[float], correct: set[int]) -> int:
    """Rank of the best correct item in a stable descending sort, written out."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return min(order.index(j) for j in correct)


def _recall_loop(images, texts, owner, ks):
    images = images / np.linalg.norm(images, axis=1, keepdims=True)
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    i2t = [_stable_rank(list(texts @ img), {j for j, o in enumerate(owner) if o == i})
           for i, img in enumerate(images)]
    t2i = [_stable_rank(list(images @ txt), {owner[j]}) for j, txt in enumerate(texts)]
    return ({k: np.mean([r < k for r in i2t]) for k in ks},
            {k: np.mean([r < k for r in t2i]) for k in ks})


@pytest.mark.parametrize("quantised", [False, True], ids=["no-ties", "ties"])
def test_retrieval_recall_equals_written_out_ranks(quantised):
    rng = _rng(3)
    n_images, dim = 12, 4 if quantised else 6  # +-1 in 4 dims: unit entries +-0.5, exact sums
    owner = np.concatenate([np.arange(n_images), rng.integers(0, n_images, 23)])  # 1-4 each
    images = rng.normal(size=(n_images, dim))
    texts = images[owner] + 1.5 * rng.normal(size=(len(owner), dim))
    if quantised:  # coarse values: many exactly equal scores
        images, texts = np.sign(images), np.sign(texts)
    got = retrieval_recall(images.astype(np.float32), texts.astype(np.float32), owner,
                           ks=(1, 2, 5))
    i2t, t2i = _recall_loop(images.astype(np.float32), texts.astype(np.float32), owner,
                            (1, 2, 5))
    assert got.image_to_text == pytest.approx(i2t)
    assert got.text_to_image == pytest.approx(t2i)
    assert 0 < got.text_to_image[1] < got.text_to_image[5] <= 1


def test_retrieval_chunks_agree_and_bad_input_is_one_line(monkeypatch):
    import vitbench.evals.protocols.retrieval as retrieval

    rng = _rng(4)
    images, owner = rng.normal(size=(9, 5)), np.repeat(np.arange(9), 2)
    texts = images[owner] + rng.normal(size=(18, 5))
    whole = retrieval_recall(images, texts, owner)
    monkeypatch.setattr(retrieval, "_BLOCK_FLOATS", 20)  # one or two queries per chunk
    chunked = retrieval_recall(images, texts, owner)
    np.testing.assert_array_equal(whole.image_ranks, chunked.image_ranks)
    np.testing.assert_array_equal(whole.text_ranks, chunked.text_ranks)
    with pytest.raises(VitbenchError, match="no caption"):
        retrieval_recall(images, texts[:4], owner[:4])
    with pytest.raises(VitbenchError, match="outside"):
        retrieval_recall(images, texts, owner + 1)


# ---- metrics and uncertainty ---------------------------------------------------------------

def test_topk_hits_and_per_class_recall_equal_sklearn():
    rng = _rng(5)
    scores, labels = rng.normal(size=(300, 7)), rng.integers(0, 7, 300)
    for k in (1, 5):
        assert topk_hits(scores, labels, k).mean() == pytest.approx(
            top_k_accuracy_score(labels, scores, k=k, labels=range(7)))
    hits = topk_hits(scores, labels, 1)
    assert np.mean(hits * per_class_weights(labels)) == pytest.approx(
        balanced_accuracy_score(labels, scores.argmax(1)))
    tied = np.zeros((2, 3))  # every class tied: the smaller index ranks first
    np.testing.assert_array_equal(topk_hits(tied, np.array([0, 2]), 2), [1.0, 0.0])


def test_bootstrap_interval_covers_the_true_mean_at_about_95_percent():
    rng, p, covered = _rng(6), 0.7, 0
    trials = 300
    for seed in range(trials):
        sample = (rng.random(200) < p).astype(float)
        interval = bootstrap_interval(sample, samples=500, seed=seed)
        assert interval.low <= interval.value <= interval.high
        covered += interval.low <= p <= interval.high
    assert 0.90 <= covered / trials <= 0.99


def test_paired_bootstrap_detects_real_differences_only():
    rng = _rng(7)
    a = (rng.random(500) < 0.6).astype(float)
    same = paired_bootstrap(a, a)
    assert same.delta == 0 and not same.significant and same.p_value == 1.0
    better = a.copy()
    better[np.flatnonzero(a == 0)[:80]] = 1  # B fixes 80 of A's errors
    result = paired_bootstrap(a, better)
    assert result.delta == pytest.approx(80 / 500) and result.significant
    assert result.p_value <= 2 / 1000
    noise = paired_bootstrap(a, (rng.random(500) < 0.6).astype(float), seed=1)
    assert noise.low < noise.delta < noise.high
    with pytest.raises(VitbenchError, match="same examples"):
        paired_bootstrap(a, a[:10])


# ---- few-shot ------------------------------------------------------------------------------

def test_few_shot_subsets_are_class_balanced_nested_and_seed_stable():
    labels = _rng(8).integers(0, 5, 400)
    for k in (1, 2, 4, 8, 16):
        chosen = few_shot_indices(labels, k, seed=3)
        assert np.bincount(labels[chosen], minlength=5).tolist() == [k] * 5
        np.testing.assert_array_equal(chosen, few_shot_indices(labels, k, seed=3))
    assert set(few_shot_indices(labels, 4, 3)) <= set(few_shot_indices(labels, 8, 3))
    assert not np.array_equal(few_shot_indices(labels, 4, 3), few_shot_indices(labels, 4, 4))
    with pytest.raises(VitbenchError, match="fewer than k=500"):
        few_shot_indices(labels, 500)
