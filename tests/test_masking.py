"""Masking helpers: MAE's random masking against its official algorithm, BEiT's block masks by
their ratio and block shapes, BERT's MLM masking by its 15% / 80-10-10 rates; all reproducible
with a generator."""

from __future__ import annotations

import torch

from vitbench.pretrain.masking import block_mask, mlm_mask, random_mask, sample_blocks


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_mask_is_maes_shuffle_algorithm():
    b, n, ratio = 5, 49, 0.75
    ours = random_mask(b, n, ratio, generator=_gen(0))
    # MAE's random_masking: argsort noise, keep the first len_keep, unshuffle a 0/1 mask
    noise = torch.rand(b, n, generator=_gen(0))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    len_keep = int(n * (1 - ratio))
    ref = torch.ones(b, n)
    ref[:, :len_keep] = 0
    ref = torch.gather(ref, 1, ids_restore)
    assert ours.dtype == torch.bool
    assert torch.equal(ours, ref.bool())
    assert (ours.sum(1) == n - len_keep).all()


def test_random_mask_is_uniform_and_reproducible():
    masks = random_mask(4000, 16, 0.75, generator=_gen(1))
    rate = masks.float().mean(0)
    assert (rate - 0.75).abs().max() < 0.03  # every position masked equally often
    assert torch.equal(random_mask(8, 16, generator=_gen(2)), random_mask(8, 16, generator=_gen(2)))
    assert not torch.equal(random_mask(8, 16, generator=_gen(2)),
                           random_mask(8, 16, generator=_gen(3)))


def test_block_mask_ratio_and_reproducibility():
    masks = block_mask(64, (14, 14), 0.4, generator=_gen(0))
    assert masks.shape == (64, 196) and masks.dtype == torch.bool
    counts = masks.sum(1)
    target = round(0.4 * 196)
    assert (counts <= target).all()  # BEiT never overshoots the budget ...
    assert counts.float().mean() > 0.85 * target  # ... and gets close to it
    assert torch.equal(block_mask(4, (14, 14), generator=_gen(5)),
                       block_mask(4, (14, 14), generator=_gen(5)))
    assert not torch.equal(block_mask(4, (14, 14), generator=_gen(5)),
                           block_mask(4, (14, 14), generator=_gen(6)))


def _with_masked_neighbour(mask: torch.Tensor) -> float:
    """Fraction of masked patches with a masked 4-neighbour."""
    padded = torch.nn.functional.pad(mask.float(), (1, 1, 1, 1))
    neighbours = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return float(((neighbours > 0) & mask).sum() / mask.sum())


def test_block_mask_is_made_of_rectangles_of_bounded_aspect():
    g = _gen(7)
    for _ in range(30):
        mask, blocks = sample_blocks(14, 14, 78, min_patches=16, min_aspect=0.3, generator=g)
        union = torch.zeros(14, 14, dtype=torch.bool)
        for top, left, h, w in blocks:
            assert 0 <= top and top + h <= 14 and 0 <= left and left + w <= 14
            # rounding h and w to integers moves the aspect a little past [0.3, 1 / 0.3]
            assert 0.3 / 1.6 <= h / w <= 1.6 / 0.3
            union[top:top + h, left:left + w] = True
        assert torch.equal(union, mask)
        # the first block is drawn with area in [16, 78] (before rounding)
        assert blocks[0][2] * blocks[0][3] >= 8
        # blocks, not scattered patches: nearly every masked patch touches another one
        assert _with_masked_neighbour(mask) > 0.95
    scattered = random_mask(1, 196, 0.4, generator=_gen(8)).view(14, 14)
    assert _with_masked_neighbour(scattered) < 0.9  # the check above can tell the difference


def test_mlm_mask_rates_and_labels():
    b, length, vocab, mask_id = 64, 256, 30000, 3
    ids = torch.randint(5, vocab, (b, length), generator=_gen(0))
    special = torch.zeros(b, length, dtype=torch.bool)
    special[:, 0] = True  # [CLS]
    special[:, -20:] = True  # padding
    masked, labels = mlm_mask(ids, mask_token_id=mask_id, vocab_size=vocab,
                              special_mask=special, generator=_gen(1))
    selected = labels != -100
    assert not (selected & special).any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])  # only selected tokens change
    n = int(selected.sum())
    assert abs(n / int((~special).sum()) - 0.15) < 0.01
    as_mask = (masked == mask_id) & selected
    kept = (masked == ids) & selected
    randomised = selected & ~as_mask & ~kept
    assert abs(int(as_mask.sum()) / n - 0.8) < 0.03
    assert abs(int(kept.sum()) / n - 0.1) < 0.03
    assert abs(int(randomised.sum()) / n - 0.1) < 0.03
    again = mlm_mask(ids, mask_token_id=mask_id, vocab_size=vocab, special_mask=special,
                     generator=_gen(1))
    assert torch.equal(again[0], masked) and torch.equal(again[1], labels)
