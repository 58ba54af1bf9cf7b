"""One training step in plain torch, and what it needs: precision, threads, schedule, batches.

Nothing here knows Ray: the Ray worker (`train/worker.py`) and the bare-GPU command
(`bench/gpu_run.py`) both call these functions, so a step is the same code everywhere.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from activa_ray.config import Config
from activa_ray.data.examples import explode
from activa_ray.data.kinds import values_per_variable
from activa_ray.data.simulate import simulate, stream_rng
from activa_ray.model.activa import Activa, zero_nonfinite_grads


class LossModule(torch.nn.Module):
    """Routes `forward` to `Activa.loss`, so DDP's forward hooks (gradient sync) see the loss call."""

    def __init__(self, model: Activa, prior_nll_weight: float = 0.0, reference_values: int | None = None):
        super().__init__()
        self.model = model
        self.prior_nll_weight = prior_nll_weight
        # Batches of varying shape (reference_values(cfg)): the loss sums over N · d values, so it is
        # rescaled to the nominal d · N; otherwise a d = 20, N = 100 step would weigh 8x a d = 8, N = 30 one.
        self.reference_values = reference_values

    def forward(self, obs, x, targets, value_index, values=None, generator=None):
        terms = self.model.loss(obs, x, targets, value_index, values, generator=generator,
                                prior_nll_weight=self.prior_nll_weight)
        if self.reference_values is not None:
            terms["loss"] = terms["loss"] * (self.reference_values / (x.shape[1] * x.shape[2]))
        return terms


def cpu_has_bf16_units() -> bool:
    """True on x86 CPUs with avx512_bf16 or AMX (Linux /proc/cpuinfo flags): bf16 matmuls run ~3x fp32 there."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return not words.isdisjoint({"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> str:
    """train.precision on this device: auto -> bf16 on CUDA with bf16 support or a bf16-capable CPU, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16_units() else "fp32"


def autocast(precision: str, device: torch.device):
    """The context a step's forward runs in: bf16 autocast (fp32 master weights and optimizer), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torch_threads(cfg: Config, workers_on_node: int) -> int:
    """Torch threads for one worker: train.threads_per_worker, or (0) this node's cores shared by its workers.

    Ray sets OMP_NUM_THREADS=1 in workers that do not set it, so without this a worker on a 2-core
    machine trains on one core.
    """
    if cfg.train.threads_per_worker > 0:
        return cfg.train.threads_per_worker
    return max(1, (os.cpu_count() or 1) // max(1, workers_on_node))


def compile_model(model: Activa) -> None:
    """torch.compile the parts that carry the FLOPs (both embeddings, the decoder's blocks), in place.

    The checks and the covariance algebra around them stay eager. Compiling costs ~50 s on a 2-core CPU
    once per process, and the state dict keeps its keys (compiled modules are registered by reference).
    """
    model.observational_embedding.compile()
    model.interventional_embedding.compile()
    for block in model.decoder.blocks:
        block.compile()


def learning_rate(step: int, cfg: Config) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_frac at the last step."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
    return t.lr * (t.min_lr_frac + (1 - t.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    optimizers = {"nadam": torch.optim.NAdam, "adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
    return optimizers[t.optimizer](model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def to_torch(examples: dict, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.as_tensor(examples["obs"], device=device),
        "x": torch.as_tensor(examples["x"], device=device),
        "targets": torch.as_tensor(examples["targets"], dtype=torch.float32, device=device),
        "value_index": torch.as_tensor(examples["value_index"], dtype=torch.long, device=device),
        "values": torch.as_tensor(examples["values"], dtype=torch.float32, device=device),
    }


def streamed_examples(cfg: Config, rank: int, step: int, n_examples: int) -> dict:
    """`n_examples` fresh (model, condition) examples for this rank and step, simulated on the fly.

    With data.d_range / data.n_samples_range the step draws its own (d, N) and holds
    n_examples · (data.d · data.n_samples) / (d · N) examples instead: one shape per batch
    (no padding), about the same number of values per batch whatever the shape.
    """
    rng = stream_rng(cfg.train.seed, rank, step)
    data_cfg = cfg.data
    nominal_values = reference_values(cfg)
    if nominal_values is not None:
        d = int(rng.integers(data_cfg.d_range[0], data_cfg.d_range[1] + 1)) if data_cfg.d_range else data_cfg.d
        n = (int(rng.integers(data_cfg.n_samples_range[0], data_cfg.n_samples_range[1] + 1))
             if data_cfg.n_samples_range else data_cfg.n_samples)
        n_examples = max(1, round(n_examples * nominal_values / (d * n)))
        data_cfg = replace(data_cfg, d=d, n_samples=n)
    n_conditions = data_cfg.d * values_per_variable(data_cfg)
    n_models = -(-n_examples // n_conditions)
    examples = explode(simulate(data_cfg, rng, n_models))
    chosen = rng.permutation(len(examples["value_index"]))[:n_examples]
    return {k: v[chosen] for k, v in examples.items()}


def reference_values(cfg: Config) -> int | None:
    """d · N of the nominal shape when training draws shapes (the loss is rescaled to it), else None."""
    if cfg.data.d_range or cfg.data.n_samples_range:
        return cfg.data.d * cfg.data.n_samples
    return None


def step_seed(cfg: Config, rank: int, step: int) -> int:
    """Torch seed of one step (dropout, reparameterisation): a function of (seed, rank, step), so resume is exact."""
    return int(np.random.SeedSequence([cfg.train.seed, rank, step]).generate_state(1, np.uint64)[0])


@dataclass
class StepResult:
    terms: dict[str, torch.Tensor]  # Activa.loss terms (detached scalars and kl_per_dim)
    grad_norm: float
    nonfinite_grads: int


def train_step(
    loss_module: torch.nn.Module,
    model: Activa,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    lr: float,
    precision: str,
    grad_clip: float,
) -> StepResult:
    """Forward (under `precision`), backward, clear non-finite gradients, clip, optimizer step at `lr`.

    `loss_module` is LossModule(model) or its DDP wrapper; `model` the Activa inside it.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = batch["obs"].device
    with autocast(precision, device):
        terms = loss_module(**batch)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    nonfinite = zero_nonfinite_grads(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return StepResult({k: v.detach() for k, v in terms.items()}, float(grad_norm), nonfinite)
