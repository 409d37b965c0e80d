"""Encode throughput through vitbench vs calling the backend model directly.

Same model, same weights, same batch: the ratio is vitbench's overhead (target >= 0.97).
Also reports the whole extraction pipeline (decode + transform + encode + cache write), which
the direct call does not do, for scale.

    python benchmarks/bench_encode.py [--model vit_s16] [--resolution 224] [--batch 32]
                                      [--device cuda] [--dtype bf16] [--workers 8]

With --dtype bf16/fp16 both sides run under the same autocast, so the ratio stays vitbench's
overhead alone.
"""

import argparse
import tempfile
import time

import torch

import vitbench
from vitbench.data import get_dataset
from vitbench.features import ExtractOptions, extract_features


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # CUDA calls return before the work is done
        torch.cuda.synchronize(device)


def images_per_second(fn, x, repeats):
    fn(x)  # warm-up
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    _sync(x.device)
    return repeats * len(x) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vit_s16")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:N]")
    parser.add_argument("--dtype", default="fp32", help="fp32 | bf16 | fp16 (autocast)")
    parser.add_argument("--workers", type=int, default=0, help="extraction loader workers")
    args = parser.parse_args()

    encoder = vitbench.load(args.model, pretrained=False, resolution=args.resolution,
                            device=args.device, dtype=args.dtype)
    model = encoder.model
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=encoder.device)
    autocast = torch.autocast(encoder.device.type, dtype=encoder.dtype,
                              enabled=encoder.dtype != torch.float32)

    @torch.inference_mode()
    def direct(batch):
        with autocast:
            return model.forward_head(model.forward_features(batch), pre_logits=True)

    def pooled_only(batch):
        return encoder.encode_image(batch, tokens=False)

    rounds = []
    for _ in range(2):  # alternate, so drift in machine load hits both sides alike
        rounds.append((images_per_second(direct, x, args.repeats),
                       images_per_second(pooled_only, x, args.repeats),
                       images_per_second(encoder.encode_image, x, args.repeats)))
    backend, ours, with_tokens = (max(column) for column in zip(*rounds, strict=True))
    where = (torch.cuda.get_device_name(encoder.device) if encoder.device.type == "cuda"
             else f"{torch.get_num_threads()} threads")
    print(f"model {args.model} {args.resolution}px batch {args.batch} {args.dtype}, {where}")
    print(f"backend direct      : {backend:8.2f} images/s")
    print(f"vitbench encode_image(tokens=False): {ours:8.2f} images/s   ratio "
          f"{ours / backend:.3f}")
    print(f"vitbench encode_image (+ tokens to host): {with_tokens:8.2f} images/s   ratio "
          f"{with_tokens / backend:.3f}")

    dataset = get_dataset("shapes", "test")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        feats = extract_features(encoder, dataset, ("pooled",),
                                 ExtractOptions(batch_size=args.batch, cache_dir=cache,
                                                num_workers=args.workers, progress=False))
        pipeline = len(feats.index) / (time.perf_counter() - start)
    print(f"extract_features ({args.workers} workers; decode+transform+encode+cache, "
          "shapes/test): "
          f"{pipeline:8.2f} images/s   ratio to direct {pipeline / backend:.3f}")


if __name__ == "__main__":
    main()
