"""The training loop in plain torch: steps, a metrics window, validation; the caller decides what a report does.

Randomness is a function of (seed, rank, step): every step reseeds torch and draws its streamed
models from `stream_rng(seed, rank, step)`, so a run resumed from a checkpoint continues exactly as an
uninterrupted one would (on CPU, fp32 or bf16 alike: the weights and optimizer state are fp32 and every
CPU kernel is deterministic; on a GPU, atomics make the last bits vary). The Ray worker
(`train/worker.py`), the Ray-free driver (`train/local.py`) and the bare-GPU command (`bench/gpu_run.py`)
all run `run_steps` on a replica built by `train.local.build_replica`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from activa_ray.config import Config
from activa_ray.data.examples import explode
from activa_ray.data.format import read_shard, shard_paths
from activa_ray.data.simulate import shard_seed, simulate
from activa_ray.eval.validation import validation_metrics
from activa_ray.model.activa import Activa
from activa_ray.train.step import StepResult, learning_rate, step_seed, to_torch, train_step

MEAN_KEYS = ("loss", "nll_per_sample", "kl", "prior_nll_per_sample")


@dataclass
class MetricsWindow:
    """Running sums between two reports; `summary` turns them into the logged train/* metrics."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    examples: int = 0
    nonfinite_grads: int = 0
    data_wait_s: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def add(self, result: StepResult, examples: int, data_wait_s: float) -> None:
        self.steps += 1
        self.examples += examples
        self.nonfinite_grads += result.nonfinite_grads
        self.data_wait_s += data_wait_s
        values = {key: result.terms[key].item() for key in MEAN_KEYS if key in result.terms}
        values["grad_norm"] = result.grad_norm
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def summary(self, last: StepResult) -> dict:
        elapsed = time.perf_counter() - self.start
        metrics = {f"train/{key}": total / self.steps for key, total in self.sums.items()}
        metrics.update({
            "train/nonfinite_grads": self.nonfinite_grads,
            "train/examples_per_s": self.examples / elapsed,
            "train/steps_per_s": self.steps / elapsed,
            "train/data_wait_frac": self.data_wait_s / elapsed,
            "train/kl_per_dim": last.terms["kl_per_dim"].tolist(),
            "train/prior_weight_entropy": last.terms["prior_weight_entropy"].item(),
        })
        return metrics


def validation_set(cfg: Config) -> dict:
    """A small fixed held-out set: the first val models, from shards or simulated with the val seed."""
    if cfg.data.source == "shards":
        batch = read_shard(shard_paths(cfg.data.dir, "val")[0])
        return {k: (v[: cfg.train.val_models] if isinstance(v, np.ndarray) else v) for k, v in batch.items()}
    rng = np.random.default_rng(shard_seed(cfg.data, "val", 0))
    return simulate(cfg.data, rng, cfg.train.val_models)


def data_stats(val_batch: dict) -> dict[str, float]:
    """Scale of the training data, exported with the model so predict can warn on other scales."""
    reference = explode(val_batch)["obs"]
    return {"obs_abs_mean": float(np.abs(reference).mean()), "obs_std": float(reference.std())}


@torch.no_grad()
def validate(model: Activa, val_batch: dict, cfg: Config, device: torch.device) -> dict[str, float]:
    """Held-out ELBO terms (fixed generator) and the evaluation metrics, always in fp32."""
    model.eval()
    examples = to_torch(explode(val_batch), device)
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
    terms = model.loss(**examples, generator=generator, prior_nll_weight=cfg.train.prior_nll_weight)
    metrics = {f"val/{k}": float(v) for k, v in terms.items() if v.ndim == 0}
    metrics.update({f"val/{k}": v for k, v in validation_metrics(
        model, val_batch, generator=generator, jitter_var=cfg.data.linear.jitter_var).items()})
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


@dataclass
class Replica:
    """What one rank trains: the model, the module whose forward is the loss (DDP-wrapped or not), the optimizer."""

    model: Activa
    loss_module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    precision: str  # resolved: fp32 or bf16
    rank: int = 0
    world_size: int = 1


# report(step, metrics, checkpoint_now) -> True to stop early (e.g. a wall-clock budget is spent)
Report = Callable[[int, dict, bool], bool]


def run_steps(
    cfg: Config,
    replica: Replica,
    step: int,
    next_examples: Callable[[int], dict],
    report: Report,
    val_batch: dict | None = None,
) -> int:
    """Train from `step` to min(train.steps, train.stop_at_step); return the step reached.

    `next_examples(step)` gives this rank's numpy examples for a step. Every `log_every`, `ckpt_every`
    and `val_every` steps (and at the end) `report` gets the window's metrics, with the latest
    validation metrics when `val_batch` is given (rank 0), so schedulers can compare any report.
    """
    t = cfg.train
    last_step = min(t.steps, t.stop_at_step or t.steps)
    window, last_val = MetricsWindow(), {}
    while step < last_step:
        torch.manual_seed(step_seed(cfg, replica.rank, step))
        wait_start = time.perf_counter()
        batch = to_torch(next_examples(step), replica.device)
        data_wait = time.perf_counter() - wait_start
        lr = learning_rate(step, cfg)
        result = train_step(replica.loss_module, replica.model, replica.optimizer, batch, lr, replica.precision,
                            t.grad_clip)
        step += 1
        window.add(result, len(batch["obs"]) * replica.world_size, data_wait)

        checkpoint_now = step % t.ckpt_every == 0 or step == last_step
        val_now = step % t.val_every == 0 or step == last_step
        if not (step % t.log_every == 0 or checkpoint_now or val_now):
            continue
        metrics = {"step": step, "lr": lr, **window.summary(result),
                   "train/param_divergence": parameter_divergence(replica.model, replica.world_size)}
        if val_batch is not None:
            if val_now or not last_val:
                last_val = {**validate(replica.model, val_batch, cfg, replica.device), "val/step": step}
            metrics.update(last_val)
        if report(step, metrics, checkpoint_now):
            break
        window = MetricsWindow()
    return step
