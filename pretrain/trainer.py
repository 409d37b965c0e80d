"""The one training loop every objective runs through.

Single process by default; under `torchrun` (or any initialised process group) it runs DDP
(gloo on CPU, nccl on GPU). bf16 autocast on GPU, gradient accumulation, gradient clipping,
cosine schedules with warmup, NaN/inf stop, atomic checkpoints with exact resume, a JSONL
metrics log, and a run directory (`vitbench.load(DIR)`) at the end.

Layout of `out`:
    run.json, encoder.safetensors   the finished encoder (zoo/rundir.py)
    metrics.jsonl                   one line per logged step
    checkpoints/latest.json         {"step": N, "dir": "step-N"}, written last
    checkpoints/step-N/             weights.safetensors + state.pt (tensors and numbers only)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

from vitbench.errors import VitbenchError
from vitbench.io import atomic_write, atomic_write_json
from vitbench.pretrain import schedules
from vitbench.pretrain.data import Augment, TrainBatches, split_micro
from vitbench.pretrain.objectives import Objective, get_objective


@dataclass
class TrainConfig:
    """One run. None means: the objective's paper default (lr scaled to the batch size)."""

    objective: str
    model: str
    data: str = "shapes"
    out: str = "runs/pretrain"
    steps: int = 100
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    grad_clip: float | None = -1.0  # -1: the objective's default; None: off
    accumulate: int = 1
    resolution: int = 32
    data_dir: str | None = None
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end
    log_every: int = 1
    resume: bool = False
    device: str | None = None  # default: cuda if available, else cpu
    progress: bool = False
    knn_every: int = 0  # online kNN on the data's held-out split every N steps (0: off)
    stop_after: int | None = None  # stop (as if killed) after this step; for resume tests
    overrides: dict = field(default_factory=dict)  # objective hyperparameters by name


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def train(config: TrainConfig) -> Path:
    """Run `config`; returns the run directory (also the checkpoint directory)."""
    from vitbench import load
    from vitbench.data import get_dataset

    ctx = _distributed(config.device)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and ctx.world > 1:
        device = torch.device("cuda", ctx.local_rank)
    cls = get_objective(config.objective)
    params = _params(cls, config)
    if config.batch_size % (ctx.world * config.accumulate):
        raise VitbenchError(f"--batch-size {config.batch_size} must be a multiple of processes "
                            f"x accumulation ({ctx.world} x {config.accumulate})")

    torch.manual_seed(config.seed)
    dataset = get_dataset(config.data, "train", config.data_dir)
    encoder = load(config.model, pretrained=False, resolution=config.resolution)
    spec = encoder.spec
    objective = cls(encoder, params, num_classes=len(dataset.classes)).to(device).train()
    augment = Augment(config.resolution, tuple(spec.mean), tuple(spec.std),
                      flip=config.data != "digits")  # a mirrored digit is another symbol
    batches = TrainBatches(dataset, augment, config.batch_size, config.seed, cls.needs,
                           cls.views)

    groups = _param_groups(objective, params.weight_decay, params.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=params.lr, betas=tuple(params.betas),
                                  eps=params.eps)
    warmup = (config.warmup_steps if config.warmup_steps is not None
              else round(params.warmup_fraction * config.steps))

    starts = objective.stage_starts(config.steps)

    def rate(s: int, scale: float = 1.0) -> float:
        return scale * schedules.staged_warmup_cosine(s, starts, config.steps, 1.0, warmup,
                                                      params.min_lr / params.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda s, k=g["lr_scale"]: rate(s, k) for g in groups])
    out = Path(config.out)
    if not config.resume and (out / "checkpoints" / "latest.json").is_file():
        raise VitbenchError(f"{out} already holds a run; pass --resume to continue it or "
                            "choose another --out")
    start = _resume(out, objective, optimizer, scheduler, device) if config.resume else 0
    model = objective
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)  # e.g. the zoo model's own classifier head
    if ctx.main:
        _trim_log(out / "metrics.jsonl", start)
    bar = _bar(config, start, ctx)
    began = time.perf_counter()
    for step in range(start, config.steps):
        _set_weight_decay(optimizer, schedules.weight_decay(
            step, config.steps, params.weight_decay, params.weight_decay_end))
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
        metrics = _step(model, objective, batches.batch(step, ctx.rank, ctx.world), config,
                        params, optimizer, device, step)
        scheduler.step()
        objective.after_step(step, config.steps)
        done = step + 1
        if ctx.main and (done % config.log_every == 0 or done == config.steps):
            _log(out / "metrics.jsonl", {"step": done, **metrics,
                                         "lr": lr,
                                         "seconds": round(time.perf_counter() - began, 3)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if config.knn_every and done % config.knn_every == 0 and ctx.main:
            _log(out / "metrics.jsonl", {"step": done, "knn": online_knn(
                encoder, config.data, config.data_dir)})
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            _checkpoint(out, done, objective, optimizer, scheduler, ctx)
        if config.stop_after is not None and done >= config.stop_after:
            return out
    if bar is not None:
        bar.close()
    _checkpoint(out, config.steps, objective, optimizer, scheduler, ctx)  # all ranks: barrier
    if ctx.main:
        from vitbench.zoo.rundir import save_run_encoder

        save_run_encoder(objective.encoder(), config.model, out, resolution=config.resolution,
                         objective=cls.name, step=config.steps, data=config.data,
                         num_classes=len(dataset.classes),
                         batch_size=config.batch_size, lr=params.lr, seed=config.seed,
                         world_size=ctx.world, hyperparameters=asdict(params))
    if ctx.world > 1:
        dist.barrier()
    return out


def _step(model, objective: Objective, batch: dict, config: TrainConfig, params, optimizer,
          device: torch.device, step: int) -> dict:
    """One optimiser step over `config.accumulate` micro-batches; returns logged metrics."""
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    parts = split_micro(batch, config.accumulate)
    for i, micro in enumerate(parts):
        micro = {k: _to_device(v, device) for k, v in micro.items()}
        ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        last = i == len(parts) - 1  # DDP all-reduces gradients on the last micro-batch only
        with (model.no_sync() if ddp and not last else _nullcontext()), _autocast(device):
            output = model(micro)
            _check_finite(output.loss, step, "loss")
            (output.loss / len(parts)).backward()
        for key, value in {"loss": output.loss, **output.metrics}.items():
            value = value.detach() if torch.is_tensor(value) else value
            totals[key] = totals.get(key, 0.0) + float(value) / len(parts)
    if dist.is_available() and dist.is_initialized():  # log the global batch's means
        values = torch.tensor(list(totals.values()), dtype=torch.float64, device=device)
        dist.all_reduce(values)
        totals = dict(zip(totals, (values / dist.get_world_size()).tolist(), strict=True))
    clip = params.grad_clip if config.grad_clip == -1.0 else config.grad_clip
    trainable = [p for p in objective.parameters() if p.grad is not None]
    if clip:
        norm = torch.nn.utils.clip_grad_norm_(trainable, clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad.float()) for p in trainable]))
    _check_finite(norm, step, "gradient norm")
    optimizer.step()
    return {**totals, "grad_norm": float(norm)}


def _check_finite(value: torch.Tensor, step: int, what: str) -> None:
    """Stop every process with a one-line error as soon as any process sees NaN/inf."""
    bad = torch.tensor(0.0 if torch.isfinite(value.detach()).all() else 1.0,
                       device=value.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if bad.item():
        raise VitbenchError(f"non-finite {what} ({float(value.detach()):g}) at step {step + 1}: "
                            "training stopped (lower --lr, or check the data)")


def _params(cls: type[Objective], config: TrainConfig):
    """The objective's paper defaults, with the run's choices on top."""
    params = cls.Params()
    known = {f.name for f in fields(params)}
    unknown = sorted(set(config.overrides) - known)
    if unknown:
        raise VitbenchError(f"{cls.name} has no hyperparameter {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
    for key, value in config.overrides.items():
        setattr(params, key, type(getattr(params, key))(value)
                if getattr(params, key) is not None else value)
    if config.lr is not None:
        params.lr = config.lr
    else:  # the linear scaling rule the papers use (DeiT: lr = 5e-4 * batch / 512)
        params.lr = params.lr * config.batch_size / params.batch_size
    params.batch_size = config.batch_size
    if config.weight_decay is not None:
        params.weight_decay = config.weight_decay
    params.min_lr = min(params.min_lr, params.lr)
    return params


def _param_groups(module: torch.nn.Module, weight_decay: float,
                  layer_decay: float | None = None) -> list[dict]:
    """No weight decay on biases, norms, embeddings of positions/tokens and scalars; with
    `layer_decay` d, the backbone's block i of L trains at lr * d^(L - i) (BEiT's layer-wise
    decay: patch embedding and tokens count as layer 0, everything after the blocks as L + 1)."""
    blocks = len(getattr(getattr(module, "backbone", None), "blocks", ()))
    groups: dict[tuple[bool, float], list] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "position", "reg_token"))
        scale = 1.0
        if layer_decay is not None and blocks:
            scale = layer_decay ** (blocks + 1 - _layer_id(name, blocks))
        groups.setdefault((not skip, scale), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "decay": decay,
             "lr_scale": scale} for (decay, scale), params in groups.items()]


def _layer_id(name: str, blocks: int) -> int:
    """0 for the backbone's stem and tokens, i + 1 for its block i, blocks + 1 for the rest."""
    if not name.startswith("backbone."):
        return blocks + 1
    rest = name[len("backbone."):]
    if rest.startswith("blocks."):
        return int(rest.split(".")[1]) + 1
    if rest.startswith(("patch_embed", "cls_token", "pos_embed", "reg_token", "rope")):
        return 0
    return blocks + 1


def online_knn(encoder, data: str, data_dir: str | None = None, k: int = 20) -> float:
    """kNN top-1 of the encoder's pooled features, train split -> held-out split: the number
    `vitbench eval` reports, computed while training (the encoder is put back in train mode)."""
    from vitbench.data import get_dataset
    from vitbench.evals.protocols.knn import knn_classify

    model = encoder.modules()[0]
    was_training = model.training
    model.eval()
    try:
        def features(split):
            dataset = get_dataset(data, split, data_dir)
            pixels = torch.stack([encoder.transform(dataset.image(i))
                                  for i in range(len(dataset))])
            device = next(model.parameters()).device
            with torch.no_grad():
                pooled = torch.cat([encoder._forward(chunk.to(device)).pooled.float().cpu()
                                    for chunk in pixels.split(256)])
            return pooled, dataset.labels

        train_x, train_y = features("train")
        test_x, test_y = features("test")
        return float((knn_classify(train_x, train_y, test_x, k=k) == test_y).mean())
    finally:
        model.train(was_training)


def load_objective(out: str | os.PathLike, device: str = "cpu") -> Objective:
    """The whole trained objective of a finished run (heads, text towers, teachers), from its
    last checkpoint: what zero-shot/retrieval checks of image-text objectives need."""
    from safetensors.torch import load_file

    from vitbench import load
    from vitbench.zoo.rundir import read_run

    out = Path(out)
    run = read_run(out)
    cls = get_objective(run["objective"])
    params = cls.Params()
    for key, value in run.get("hyperparameters", {}).items():
        if hasattr(params, key):
            setattr(params, key, tuple(value) if isinstance(value, list) else value)
    encoder = load(run["model"], pretrained=False, resolution=run["resolution"])
    objective = cls(encoder, params, num_classes=run.get("num_classes", 0))
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    folder = out / "checkpoints" / latest["dir"]
    objective.load_state_dict(load_file(str(folder / "weights.safetensors"), device=device))
    return objective.to(device).eval()


def _set_weight_decay(optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if group["decay"]:
            group["weight_decay"] = value


def _checkpoint(out: Path, step: int, objective, optimizer, scheduler, ctx: _Dist) -> None:
    """Write checkpoints/step-N, then point latest.json at it, then drop older ones."""
    if ctx.main:
        from safetensors.torch import save_file

        from vitbench.zoo.rundir import _plain_state

        root = out / "checkpoints"
        folder = root / f"step-{step}"
        state = {"step": torch.tensor(step), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "cpu_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        atomic_write(folder / "weights.safetensors",
                     lambda tmp: save_file(_plain_state(objective), str(tmp),
                                           metadata={"step": str(step)}))
        atomic_write(folder / "state.pt", lambda tmp: torch.save(state, tmp))
        atomic_write_json(root / "latest.json", {"step": step, "dir": folder.name})
        for old in root.glob("step-*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)
    if ctx.world > 1:
        dist.barrier()


def _resume(out: Path, objective, optimizer, scheduler, device) -> int:
    """Load the latest checkpoint under `out`; returns the step to continue from."""
    from safetensors.torch import load_file

    latest = out / "checkpoints" / "latest.json"
    if not latest.is_file():
        raise VitbenchError(f"--resume: no checkpoint in {out} (expected {latest})")
    folder = out / "checkpoints" / json.loads(latest.read_text())["dir"]
    objective.load_state_dict(load_file(str(folder / "weights.safetensors"), device=str(device)))
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["cpu_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


def _distributed(device: str | None) -> _Dist:
    """Join torchrun's process group if launched by it; reuse one that is already up."""
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist()
    cuda = torch.cuda.is_available() and (device or "cuda").startswith("cuda")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return _Dist(dist.get_rank(), world, local_rank)


def _to_device(value, device: torch.device):
    """Tensors, and lists of them (multi-crop views), onto `device`; captions stay as they are."""
    if torch.is_tensor(value):
        return value.to(device, non_blocking=True)
    if isinstance(value, list | tuple) and value and all(torch.is_tensor(v) for v in value):
        return [v.to(device, non_blocking=True) for v in value]
    return value


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return _nullcontext()


def _nullcontext():
    from contextlib import nullcontext

    return nullcontext()


def _bar(config: TrainConfig, start: int, ctx: _Dist):
    if not (config.progress and ctx.main):
        return None
    from tqdm import tqdm

    return tqdm(total=config.steps, initial=start, desc=config.objective, unit="step")


def _trim_log(path: Path, step: int) -> None:
    """A resumed run rewrites what the killed run logged after its last checkpoint."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    atomic_write(path, lambda tmp: tmp.write_text("".join(k + "\n" for k in keep)))


def _log(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
