"""Pretraining speed: training steps per second per objective, and ratios against peers.

1. Every registered objective through the one trainer (vit_pico, 32 px, digits, batch 64):
   steps/s of the whole loop (batch assembly and augmentation included).
2. CLIP and SigLIP training steps vs open_clip's, same tower sizes (ViT 32 px / patch 4 /
   width 64 / 4 blocks; text width 64, 2 blocks, 32 tokens), same batch, AdamW: forward,
   loss, backward and optimiser step only (no data loading on either side).
3. DINO and iBOT losses (forward + backward) vs lightly's DINOLoss / IBOTPatchLoss when lightly
   is installed (it is not a vitbench dependency: `pip install lightly`), checking that the
   values agree.

Usage: python benchmarks/bench_pretrain.py [--threads 2] [--steps 20] [--skip-objectives]
       [--skip-peers] [--device cuda --model vit_b16 --resolution 224 --batch 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, limit_threads, machine_line  # noqa: E402

import vitbench  # noqa: E402
from vitbench.pretrain.objectives import get_objective, list_objectives  # noqa: E402
from vitbench.pretrain.trainer import TrainConfig, train  # noqa: E402

BATCH = 64
EVA02_STUDENT = {"vit_pico": "eva02_pico", "vit_t16": "eva02_t", "vit_s16": "eva02_s",
                 "vit_b16": "eva02_b", "vit_l16": "eva02_l"}


def objectives_table(steps: int, device: str, model: str, resolution: int, batch: int) -> None:
    print(f"\n## steps/s per objective (trainer, {model}, digits at {resolution} px, batch {batch},"
          f" {device}, {steps} steps after 3 warm-up steps)\n")
    print("| objective | model | steps/s | images/s |\n|---|---|---:|---:|")
    common = dict(data="digits", batch_size=batch, log_every=1, device=device,
                  resolution=resolution)
    teacher_dir = tempfile.TemporaryDirectory()
    # EVA / BEiT v2 teacher: the student's architecture with random weights (speed only; a
    # zoo name would fetch published weights), saved as a run directory by one supervised step
    teacher = str(train(TrainConfig("supervised", model, steps=1, out=teacher_dir.name,
                                    **common)))
    for cls in list_objectives():
        name = EVA02_STUDENT.get(model, model) if cls.name == "eva02" else model  # RoPE, SwiGLU
        overrides = {"teacher": teacher} if "teacher" in cls.Params.__dataclass_fields__ else {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                config = TrainConfig(cls.name, name, steps=steps + 3, out=tmp,
                                     overrides=overrides, **common)
                train(config)
            except Exception as exc:  # report and go on: one objective must not hide the rest
                print(f"| {cls.name} | {name} | failed: {type(exc).__name__}: {exc} | |")
                continue
            lines = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()
                     if x.strip()]
            timed = [x for x in lines if "seconds" in x]
            seconds = timed[-1]["seconds"] - timed[2]["seconds"]
        print(f"| {cls.name} | {name} | {steps / seconds:.2f} | {batch * steps / seconds:.0f} |")
    teacher_dir.cleanup()


def _open_clip_model():
    import open_clip

    vision = open_clip.model.CLIPVisionCfg(layers=4, width=64, head_width=16, mlp_ratio=4.0,
                                           patch_size=4, image_size=32)
    text = open_clip.model.CLIPTextCfg(context_length=32, vocab_size=4096, width=64, heads=4,
                                       layers=2)
    return open_clip.CLIP(embed_dim=64, vision_cfg=vision, text_cfg=text)


def image_text_steps(kind: str, repeats: int) -> None:
    import open_clip

    torch.manual_seed(0)
    images = torch.randn(BATCH, 3, 32, 32)
    texts = [f"a handwritten digit {i % 10}" for i in range(BATCH)]

    cls = get_objective(kind)
    ours = cls(vitbench.load("vit_pico", pretrained=False), cls.Params()).train()
    ours_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)

    def ours_step():
        ours_opt.zero_grad(set_to_none=True)
        loss = ours({"image": images, "caption": texts, "label": None}).loss
        loss.backward()
        ours_opt.step()
        return float(loss)

    peer = _open_clip_model().train()
    peer_opt = torch.optim.AdamW(peer.parameters(), lr=1e-4)
    tokens = torch.randint(1, 4096, (BATCH, 32))
    if kind == "siglip":
        loss_fn = open_clip.loss.SigLipLoss()
        bias = torch.nn.Parameter(torch.tensor(-10.0))
        peer_opt.add_param_group({"params": [bias]})
    else:
        loss_fn = open_clip.loss.ClipLoss()

    def peer_step():
        peer_opt.zero_grad(set_to_none=True)
        image = F.normalize(peer.encode_image(images), dim=-1)
        text = F.normalize(peer.encode_text(tokens), dim=-1)
        scale = peer.logit_scale.exp()
        loss = loss_fn(image, text, scale, bias) if kind == "siglip" else loss_fn(image, text,
                                                                                  scale)
        loss.backward()
        peer_opt.step()
        return float(loss)

    for fn in (ours_step, peer_step):  # warm up
        fn()
    mine, _ = best_time(lambda: [ours_step() for _ in range(5)], repeats)
    theirs, _ = best_time(lambda: [peer_step() for _ in range(5)], repeats)
    print(f"| {kind} | {5 / mine:.2f} | {5 / theirs:.2f} | {theirs / mine:.2f} |")


def lightly_losses(repeats: int) -> None:
    try:
        from lightly.loss import DINOLoss, IBOTPatchLoss
    except ImportError:
        print("\nlightly is not installed: `pip install lightly` to compare DINO/iBOT losses")
        return
    from vitbench.pretrain.losses import DinoCenter, dino_loss, ibot_patch_loss

    torch.manual_seed(0)
    dim, views, n, patches = 1024, 2, BATCH, 64
    student = torch.randn(views * n, dim, requires_grad=True)
    teacher = torch.randn(views * n, dim)
    center = DinoCenter(dim)  # zero centre, as lightly's starts
    peer = DINOLoss(output_dim=dim, warmup_teacher_temp_epochs=0, teacher_temp=0.04,
                    student_temp=0.1, center_momentum=0.9)
    print("\n## DINO / iBOT losses vs lightly (forward + backward, centre update excluded)\n")
    print("| loss | vitbench ms | lightly ms | ratio | abs diff |\n|---|---:|---:|---:|---:|")

    def ours():
        probs = center.teacher_probs(teacher, 0.04)
        loss = dino_loss(student.chunk(views), probs.chunk(views), 0.1)
        loss.backward()
        return float(loss)

    def theirs():
        peer.center.zero_()  # lightly updates its centre inside forward
        loss = peer(list(teacher.chunk(views)), list(student.chunk(views)), epoch=0)
        loss.backward()
        return float(loss)

    a, va = best_time(ours, repeats)
    b, vb = best_time(theirs, repeats)
    print(f"| DINO | {1e3 * a:.2f} | {1e3 * b:.2f} | {b / a:.2f} | {abs(va - vb):.2e} |")
    s = torch.randn(n, patches, dim, requires_grad=True)
    t = torch.randn(n, patches, dim)
    mask = torch.rand(n, patches) < 0.4
    ipeer = IBOTPatchLoss(output_dim=dim, teacher_temp=0.04, student_temp=0.1)

    def ours_patch():
        loss = ibot_patch_loss(s[mask], center.teacher_probs(t, 0.04)[mask], mask, 0.1)
        loss.backward()
        return float(loss)

    def theirs_patch():
        ipeer.center.center.zero_()  # lightly's Center module keeps its value in `center`
        loss = ipeer(teacher_out=t[mask], student_out=s[mask], mask=mask.view(n, 8, 8))
        loss.backward()
        return float(loss)

    a, va = best_time(ours_patch, repeats)
    b, vb = best_time(theirs_patch, repeats)
    print(f"| iBOT patch | {1e3 * a:.2f} | {1e3 * b:.2f} | {b / a:.2f} | {abs(va - vb):.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-objectives", action="store_true")
    parser.add_argument("--device", default="cpu", help="objectives table: cpu | cuda (bf16 "
                        "autocast, as the trainer does on GPUs)")
    parser.add_argument("--model", default="vit_pico", help="objectives table: student")
    parser.add_argument("--resolution", type=int, default=32, help="objectives table")
    parser.add_argument("--batch", type=int, default=BATCH, help="objectives table")
    parser.add_argument("--skip-peers", action="store_true", help="only the objectives table")
    args = parser.parse_args()
    limit_threads(args.threads)
    print(machine_line(args.threads))
    if not args.skip_peers:
        peers(args.repeats)
    if not args.skip_objectives:
        objectives_table(args.steps, args.device, args.model, args.resolution, args.batch)


def peers(repeats: int) -> None:
    print(f"\n## image-text training step vs open_clip (batch {BATCH}, 5 steps, best of "
          f"{repeats})\n")
    print("| objective | vitbench steps/s | open_clip steps/s | speed ratio |")
    print("|---|---:|---:|---:|")
    for kind in ("clip", "siglip"):
        image_text_steps(kind, repeats)
    lightly_losses(repeats)


if __name__ == "__main__":
    main()
