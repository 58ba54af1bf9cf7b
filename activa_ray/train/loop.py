"""The Ray Train worker: one DDP rank of ACTIVA training, read top to bottom.

Randomness is a function of (seed, rank, step): every step reseeds torch and draws its streamed
models from `stream_rng(seed, rank, step)`, so a run resumed from a checkpoint continues exactly as an
uninterrupted one would (CPU, fp32, data.source=stream). With data.source=shards the model order comes
from Ray Data's streaming reads and a local shuffle buffer and is not reproduced across a resume.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from activa_ray.config import Config, config_from_dict, to_dict
from activa_ray.data.examples import explode, iter_examples
from activa_ray.data.simulate import intervention_table, shard_seed, simulate, stream_rng
from activa_ray.model.activa import Activa, zero_nonfinite_grads
from activa_ray.train.checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT_DIR_PREFIX = "step_"


class LossModule(torch.nn.Module):
    """Routes `forward` to `Activa.loss`, so DDP's forward hooks (gradient sync) see the loss call."""

    def __init__(self, model: Activa, prior_nll_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.prior_nll_weight = prior_nll_weight

    def forward(self, obs, x, targets, value_index, generator=None):
        return self.model.loss(obs, x, targets, value_index, generator=generator, prior_nll_weight=self.prior_nll_weight)


def learning_rate(step: int, cfg: Config) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_frac at the last step."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
    return t.lr * (t.min_lr_frac + (1 - t.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "nadam":
        return torch.optim.NAdam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def to_torch(examples: dict, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.as_tensor(examples["obs"], device=device),
        "x": torch.as_tensor(examples["x"], device=device),
        "targets": torch.as_tensor(examples["targets"], dtype=torch.float32, device=device),
        "value_index": torch.as_tensor(examples["value_index"], dtype=torch.long, device=device),
    }


def streamed_examples(cfg: Config, rank: int, step: int, n_examples: int) -> dict:
    """`n_examples` fresh (model, condition) examples for this rank and step, simulated on the fly."""
    rng = stream_rng(cfg.train.seed, rank, step)
    n_conditions = cfg.data.d * len(intervention_table(cfg.data))
    n_models = -(-n_examples // n_conditions)
    examples = explode(simulate(cfg.data, rng, n_models))
    chosen = rng.permutation(len(examples["value_index"]))[:n_examples]
    return {k: v[chosen] for k, v in examples.items()}


def shard_examples(cfg: Config, n_examples: int, rng: np.random.Generator) -> Iterator[dict]:
    """Endless example batches from this rank's Ray Data shard (every epoch a fresh pass)."""
    import ray.train

    from activa_ray.data.shards import table_to_batch

    dataset = ray.train.get_dataset_shard("train")

    def model_batches():
        while True:
            for table in dataset.iter_batches(batch_size=64, batch_format="pyarrow"):
                yield table_to_batch(table, source="Ray Data shard of train split")

    yield from iter_examples(model_batches(), n_examples, rng, cfg.train.shuffle_buffer)


def validation_set(cfg: Config) -> dict:
    """A small fixed held-out set: the first val models, from shards or simulated with the val seed."""
    if cfg.data.source == "shards":
        from activa_ray.data.shards import read_shard, shard_paths

        batch = read_shard(shard_paths(cfg.data.dir, "val")[0])
        return {k: (v[: cfg.train.val_models] if isinstance(v, np.ndarray) else v) for k, v in batch.items()}
    rng = np.random.default_rng(shard_seed(cfg.data, "val", 0))
    return simulate(cfg.data, rng, cfg.train.val_models)


@torch.no_grad()
def validate(model: Activa, val_batch: dict, cfg: Config, device: torch.device) -> dict[str, float]:
    """Held-out ELBO terms (fixed generator) and, where available, the evaluation metrics."""
    model.eval()
    examples = to_torch(explode(val_batch), device)
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
    terms = model.loss(**examples, generator=generator, prior_nll_weight=cfg.train.prior_nll_weight)
    metrics = {f"val/{k}": float(v) for k, v in terms.items() if v.ndim == 0}
    from activa_ray.eval.evaluate import validation_metrics

    metrics.update({f"val/{k}": v for k, v in validation_metrics(model, val_batch, generator=generator).items()})
    model.train()
    return metrics


def parameter_divergence(model: torch.nn.Module, world_size: int) -> float:
    """Max over ranks minus min of a float64 parameter checksum: 0 when DDP keeps replicas in sync."""
    checksum = torch.stack([sum(p.detach().double().sum() for p in model.parameters()),
                            sum(p.detach().double().abs().sum() for p in model.parameters())])
    if world_size == 1:
        return 0.0
    gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
    torch.distributed.all_gather(gathered, checksum)
    stacked = torch.stack(gathered)  # (world, 2)
    return float((stacked.max(0).values - stacked.min(0).values).max())


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = config_from_dict(loop_config["config"], source="train loop config")
    run_dir = Path(loop_config["run_dir"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    per_rank_batch = cfg.train.batch_size // world_size

    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = Activa(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg)
    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, model, optimizer, asdict(cfg.model))
        step = state["step"]
    ddp_model = ray.train.torch.prepare_model(LossModule(model, cfg.train.prior_nll_weight), move_to_device=False)

    wandb_run = None
    if rank == 0:
        from activa_ray.train.wandb_logging import init_run

        wandb_run = init_run(cfg, run_dir)
        val_batch = validation_set(cfg)
        if step == 0:
            # Scale of the training data, exported with the model so predict can warn on other scales.
            reference = explode(val_batch)["obs"]
            data_stats = {"obs_abs_mean": float(np.abs(reference).mean()), "obs_std": float(reference.std())}
        else:
            data_stats = state["extra"].get("data_stats", {})

    shard_rng = np.random.default_rng([cfg.train.seed, rank, step])
    shard_iter = shard_examples(cfg, per_rank_batch, shard_rng) if cfg.data.source == "shards" else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16")

    window = {"loss": 0.0, "nll_per_sample": 0.0, "kl": 0.0, "grad_norm": 0.0, "nonfinite_grads": 0,
              "examples": 0, "data_wait_s": 0.0, "n": 0}
    window_start = time.perf_counter()
    last_val: dict[str, float] = {}
    last_step = min(cfg.train.steps, cfg.train.stop_at_step or cfg.train.steps)
    while step < last_step:
        torch.manual_seed(cfg.train.seed * 1_000_003 + rank * 7_919 + step)  # dropout, reparameterization
        wait_start = time.perf_counter()
        if shard_iter is None:
            examples = streamed_examples(cfg, rank, step, per_rank_batch)
        else:
            examples = next(shard_iter)
        batch = to_torch(examples, device)
        window["data_wait_s"] += time.perf_counter() - wait_start

        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            terms = ddp_model(**batch)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        nonfinite = zero_nonfinite_grads(model)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        step += 1

        window["n"] += 1
        window["examples"] += per_rank_batch * world_size
        window["nonfinite_grads"] += nonfinite
        window["grad_norm"] += float(grad_norm)
        for key in ("loss", "nll_per_sample", "kl", "prior_nll_per_sample"):
            if key in terms:
                window[key] = window.get(key, 0.0) + terms[key].item()

        log_now = step % cfg.train.log_every == 0 or step == last_step
        ckpt_now = step % cfg.train.ckpt_every == 0 or step == last_step
        val_now = step % cfg.train.val_every == 0 or step == last_step
        if not (log_now or ckpt_now or val_now):
            continue

        elapsed = time.perf_counter() - window_start
        metrics = {
            "step": step,
            "lr": lr,
            "train/loss": window["loss"] / window["n"],
            "train/nll_per_sample": window["nll_per_sample"] / window["n"],
            "train/kl": window["kl"] / window["n"],
            **({"train/prior_nll_per_sample": window["prior_nll_per_sample"] / window["n"]}
               if "prior_nll_per_sample" in window else {}),
            "train/grad_norm": window["grad_norm"] / window["n"],
            "train/nonfinite_grads": window["nonfinite_grads"],
            "train/examples_per_s": window["examples"] / elapsed,
            "train/data_wait_frac": window["data_wait_s"] / elapsed,
            "train/kl_per_dim": terms["kl_per_dim"].detach().tolist(),
            "train/prior_weight_entropy": terms["prior_weight_entropy"].item(),
            "train/param_divergence": parameter_divergence(model, world_size),
        }
        if rank == 0:
            # Every report carries the latest validation metrics (schedulers compare them at any report).
            if val_now or not last_val:
                last_val = validate(model, val_batch, cfg, device)
            metrics.update(last_val)
        if rank == 0:
            append_jsonl(run_dir / "metrics.jsonl", metrics)
        if rank == 0 and wandb_run is not None:
            loggable = {k: v for k, v in metrics.items() if not isinstance(v, list)}
            loggable.update({f"train/kl_dim{i}": v for i, v in enumerate(metrics["train/kl_per_dim"])})
            wandb_run.log(loggable, step=step)

        with tempfile.TemporaryDirectory() as tmp:
            report_checkpoint = None
            if ckpt_now and rank == 0:
                save_checkpoint(Path(tmp) / "ckpt", model, optimizer, step, to_dict(cfg),
                                extra={"data_stats": data_stats})
                report_checkpoint = ray.train.Checkpoint.from_directory(str(Path(tmp) / "ckpt"))
            ray.train.report(
                metrics,
                checkpoint=report_checkpoint,
                checkpoint_dir_name=f"{CHECKPOINT_DIR_PREFIX}{step:08d}" if ckpt_now else None,
            )
        window = dict.fromkeys(window, 0)
        window_start = time.perf_counter()

    if wandb_run is not None:
        wandb_run.finish()
