"""How many training steps the visual-tokenizer pipeline needs before counting (OC) and
identification (MCI) leave the blind prior (50 / 50) on `shapes`.

The pipeline trains on shapes' OC / MCI questions alone (no captions, no attribute questions),
from scratch for each step count, and is scored on the test split. Token sources:

- `oracle-objects`: 16 tokens per image, one per object at a random position holding its kind
  one-hot (plus an "object here" flag) and noise elsewhere: recognition is solved, the LM has
  to match the asked kind against the tokens' contents;
- `oracle-slots`: token k holds whether kind k is present (+3 / -3): the LM has to match the
  asked kind against a token's position;
- any zoo name (`pixels`, `vit_pico`, ...): that encoder's patch tokens at 64 px, random
  weights (what the default suite gives the pipeline).

For each source, a presence detector trained on the same tokens with the labels themselves (no
LM: a BatchNorm conv net over the token grid, max-pooled, binary cross-entropy on the five
kinds' presence) shows how fast the tokens give the answer up to a reader supervised directly.

The blind prior needs no run: each image is asked about one present and one absent kind, so
answering from the question alone scores 50 on MCI, and at most 50 on OC (half the asked
counts are 0, the others 1-4; the default suite's blind control scores 50.0).

Run: /work/venv/bin/python benchmarks/bench_mllm_budget.py [--tokens oracle-objects,pixels]
     [--steps 300,1000] [--batch-size 128] [--probe-steps 500] [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine_line
from torch import nn

from vitbench.data.embedded import ShapesDataset
from vitbench.data.questions import shapes_questions
from vitbench.evals.protocols.mllm import MllmSettings, mllm_evaluate

ORACLE_TOKENS, ORACLE_DIM = 16, 8


def oracle_tokens(dataset: ShapesDataset, layout: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.normal(size=(len(dataset), ORACLE_TOKENS, ORACLE_DIM)).astype(np.float32)
    for i in range(len(dataset)):
        if layout == "slots":
            x[i, :len(dataset.KINDS), 0] += np.where(dataset.presence[i], 3, -3)
            continue
        objects = dataset.objects(i)
        for position, obj in zip(rng.permutation(ORACLE_TOKENS)[:len(objects)], objects,
                                 strict=True):
            x[i, position, dataset.KINDS.index(obj.kind)] += 3
            x[i, position, -1] += 3
    return x


def encoder_tokens(name: str, dataset: ShapesDataset, device: str) -> np.ndarray:
    import vitbench
    from vitbench.features import ExtractOptions, extract_features

    encoder = vitbench.load(name, pretrained=False, resolution=64, device=device)
    return extract_features(encoder, dataset, ("tokens",), ExtractOptions()).get("tokens")


def presence_probe(x: dict[str, np.ndarray], splits: dict[str, ShapesDataset], steps: int,
                   device: str) -> float:
    """Test accuracy (%) of a conv detector trained `steps` x 32 images on the presence labels."""
    torch.manual_seed(0)
    side, dim, width = int(x["train"].shape[1] ** 0.5), x["train"].shape[2], 64
    flat = torch.from_numpy(x["train"]).reshape(-1, dim)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)

    def grid(a: np.ndarray) -> torch.Tensor:  # (N, T, D) tokens -> (N, D, side, side)
        t = (torch.from_numpy(a) - mean) / std
        return t.transpose(1, 2).reshape(len(a), dim, side, side).to(device)

    def block(c_in: int, kernel: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, width, kernel, padding=kernel // 2), nn.BatchNorm2d(width),
                nn.ReLU()]

    net = nn.Sequential(*block(dim, 1), *[m for _ in range(4) for m in block(width, 3)],
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                        nn.Linear(width, len(ShapesDataset.KINDS))).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), 2e-3)
    train, test = grid(x["train"]), grid(x["test"])
    labels = {split: torch.from_numpy(data.presence).float().to(device)
              for split, data in splits.items()}
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rows = torch.randint(0, len(train), (32,), generator=generator)
        loss = F.binary_cross_entropy_with_logits(net(train[rows]), labels["train"][rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        said = torch.cat([net(test[i:i + 250]) for i in range(0, len(test), 250)]) > 0
    return 100 * (said == labels["test"].bool()).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="oracle-objects,oracle-slots")
    parser.add_argument("--steps", default="300,1000")
    parser.add_argument("--batch-size", type=int, default=128)  # sequences: 32 images a step
    parser.add_argument("--probe-steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line(args.threads), f"device {args.device}")
    splits = {split: ShapesDataset(split) for split in ("train", "test")}
    questions = {split: [q for q in shapes_questions(data) if q.kind in ("oc", "mci")]
                 for split, data in splits.items()}
    prior = 100 * (1 - splits["test"].presence.mean())
    print(f"presence prior (always 'absent'): {prior:.1f}; OC / MCI blind prior: 50 / 50")
    print("| tokens | reader | steps | OC acc | MCI acc | presence acc | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for source in args.tokens.split(","):
        if source.startswith("oracle-"):
            x = {split: oracle_tokens(data, source.removeprefix("oracle-"), seed)
                 for seed, (split, data) in enumerate(splits.items())}
        else:
            x = {split: encoder_tokens(source, data, args.device)
                 for split, data in splits.items()}
        started = time.perf_counter()
        probe = presence_probe(x, splits, args.probe_steps, args.device)
        print(f"| {source} | conv detector on the labels | {args.probe_steps} | - | - | "
              f"{probe:.1f} | {time.perf_counter() - started:.0f} |", flush=True)
        for steps in map(int, args.steps.split(",")):
            settings = MllmSettings(stage1_steps=0, stage2_steps=steps,
                                    batch_size=args.batch_size)
            started = time.perf_counter()
            scores = mllm_evaluate(x["train"], questions["train"], x["test"], questions["test"],
                                   settings, args.device)
            print(f"| {source} | tiny LM, {args.batch_size} sequences a step | {steps} | "
                  f"{scores.oc_acc:.1f} | {scores.mci_acc:.1f} | - | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
