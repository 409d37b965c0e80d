"""Encode throughput through vitbench vs calling the backend model directly.

Same model, same weights, same batch: the ratio is vitbench's overhead (target >= 0.97).
Also reports the whole extraction pipeline (decode + transform + encode + cache write), which
the direct call does not do, for scale.

    python benchmarks/bench_encode.py [--model vit_s16] [--resolution 224] [--batch 32]
"""

import argparse
import tempfile
import time

import torch

import vitbench
from vitbench.data import get_dataset
from vitbench.features import ExtractOptions, extract_features


def images_per_second(fn, x, repeats):
    fn(x)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return repeats * len(x) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vit_s16")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    encoder = vitbench.load(args.model, pretrained=False, resolution=args.resolution)
    model = encoder.model
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)

    @torch.inference_mode()
    def direct(batch):
        return model.forward_head(model.forward_features(batch), pre_logits=True)

    rounds = []
    for _ in range(2):  # alternate, so drift in machine load hits both sides alike
        rounds.append((images_per_second(direct, x, args.repeats),
                       images_per_second(encoder.encode_image, x, args.repeats)))
    backend = max(r[0] for r in rounds)
    ours = max(r[1] for r in rounds)
    print(f"model {args.model} {args.resolution}px batch {args.batch}, "
          f"{torch.get_num_threads()} threads")
    print(f"backend direct      : {backend:8.2f} images/s")
    print(f"vitbench encode_image: {ours:8.2f} images/s   ratio {ours / backend:.3f}")

    dataset = get_dataset("shapes", "test")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        feats = extract_features(encoder, dataset, ("pooled",),
                                 ExtractOptions(batch_size=args.batch, cache_dir=cache,
                                                progress=False))
        pipeline = len(feats.index) / (time.perf_counter() - start)
    print(f"extract_features (decode+transform+encode+cache, shapes/test): "
          f"{pipeline:8.2f} images/s   ratio to direct {pipeline / backend:.3f}")


if __name__ == "__main__":
    main()
