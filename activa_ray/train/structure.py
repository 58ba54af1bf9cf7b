"""Training the structure-posterior model (model/structure.py) on freshly simulated linear SCMs, without Ray.

Every step draws its d and N and a batch of new models (half Gaussian, half Beta noise), as a pure
function of (seed, step): a run stopped at any checkpoint and resumed reproduces the uninterrupted run.
The model needs no interventional samples to learn from, only each model's observational sample and its
graph, so a step costs the network's forward and backward and little simulation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from activa_ray.config import build_dataclass, deep_merge, parse_dotlist, read_yaml
from activa_ray.data.config import LinearSCMConfig
from activa_ray.data.scm import simulate_observational
from activa_ray.model.io import save_model
from activa_ray.model.structure import StructureActiva, StructureConfig, check_structure_config
from activa_ray.ranges import ConfigError, range_problems
from activa_ray.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


@dataclass
class StructureTrainConfig:
    steps: int = 20000
    batch_size: int = 32  # models per step
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    d_range: list[int] = field(default_factory=lambda: [2, 20])  # each step's d ~ U{low..high}
    n_samples_range: list[int] = field(default_factory=lambda: [20, 1000])  # N log-uniform
    seed: int = 0
    log_every: int = 50
    val_every: int = 500
    val_models: int = 128  # at d = 8 and N = 100, half of each noise
    ckpt_every: int = 250
    stop_at_step: int = 0  # > 0: checkpoint and stop there; the same command continues the run
    threads: int = 0  # torch threads (0: torch's default)
    device: str = "auto"  # cpu, cuda, cuda:1, or auto: the first GPU where there is one


@dataclass
class StructureRun:
    """A structure-model run's config: `architecture: structure` in its YAML sends `jobs/train.py` here."""

    name: str = "universal"
    architecture: str = "structure"
    model: StructureConfig = field(default_factory=StructureConfig)
    train: StructureTrainConfig = field(default_factory=StructureTrainConfig)
    scm: LinearSCMConfig = field(default_factory=LinearSCMConfig)  # the SCM family; each batch is half Gauss, half Beta


def load_structure_run(path: str | os.PathLike, overrides: list[str] | None = None) -> StructureRun:
    """defaults < YAML < `a.b=c` overrides, every key and range checked; ConfigError names what is wrong."""
    tree = deep_merge(read_yaml(path), parse_dotlist(overrides or []))
    run = build_dataclass(StructureRun, tree, "", str(path))
    train = run.train
    problems = check_structure_config(run.model) + range_problems(run.scm, "scm")
    for key in ("d_range", "n_samples_range"):
        span = getattr(train, key)
        low = 2 if key == "d_range" else 4
        if len(span) != 2 or not low <= span[0] <= span[1]:
            problems.append(f"train.{key}={span}: must be [low, high] with {low} <= low <= high")
    for key in ("steps", "batch_size", "log_every", "val_every", "ckpt_every", "val_models"):
        if getattr(train, key) < 1:
            problems.append(f"train.{key}={getattr(train, key)}: must be >= 1")
    if run.architecture != "structure" or train.lr <= 0 or train.stop_at_step < 0:
        problems.append("architecture must be structure, train.lr > 0 and train.stop_at_step >= 0")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return run


def training_batch(rng: np.random.Generator, models: int, d: int, n: int, scm: LinearSCMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """obs (M, N, d) and graph (M, d, d) of `models` fresh linear SCMs, the first half Gaussian, the rest Beta."""
    parts = [simulate_observational(rng, count, d, n, dataclasses.replace(scm, noise=noise))
             for noise, count in (("gauss", models // 2), ("beta", models - models // 2)) if count]
    obs = np.concatenate([part[0] for part in parts])
    graph = np.concatenate([part[1] for part in parts])
    return torch.from_numpy(obs), torch.from_numpy(graph)


def step_shape(rng: np.random.Generator, cfg: StructureTrainConfig) -> tuple[int, int]:
    """This step's d (uniform over the range) and N (log-uniform over the range)."""
    d = int(rng.integers(cfg.d_range[0], cfg.d_range[1] + 1))
    low, high = (math.log(v) for v in cfg.n_samples_range)
    return d, int(round(math.exp(rng.uniform(low, high))))


def learning_rate(step: int, cfg: StructureTrainConfig) -> float:
    """Linear warm-up, then a cosine from cfg.lr to cfg.lr / 10."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


@torch.no_grad()
def validate(model: StructureActiva, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    model.eval()
    loss, parts = model.loss(*batch)
    model.train()
    return {"val/loss": float(loss), **{f"val/{key}": float(value) for key, value in parts.items()}}


def export_meta(run: StructureRun, step: int, val_batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """What predict reads of a run: the data it answers for (any d and N within the trained ranges, one
    target at a time), the training data's scale (unused: the model standardises) and the resolved config."""
    obs = val_batch[0]
    return {
        "name": run.name, "step": step, "examples_seen_total": step * run.train.batch_size,
        "data": {"kind": "linear-mixed", "d": 8, "n_samples": 100},
        "data_stats": {"obs_abs_mean": float(obs.abs().mean()), "obs_std": float(obs.std())},
        "config": {"name": run.name, "architecture": run.architecture,
                   "data": {"kind": "linear-mixed", "d_range": run.train.d_range,
                            "n_samples_range": run.train.n_samples_range,
                            "linear": dataclasses.asdict(run.scm) | {"targets_per_intervention": 1}},
                   "model": dataclasses.asdict(run.model), "train": dataclasses.asdict(run.train)},
    }


def train_structure(run: StructureRun, out: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) a run in `out`: config.json, checkpoints/, metrics.jsonl, export/ at the end."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = run.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    resolved = dataclasses.asdict(run)
    (out / "config.json").write_text(json.dumps(resolved, indent=1) + "\n")
    torch.manual_seed(cfg.seed)
    model = StructureActiva(run.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    latest = latest_checkpoint(out / "checkpoints")
    if latest is not None:
        start = load_checkpoint(latest, model, optimizer, resolved["model"])["step"]
        log(f"resumed from {latest} at step {start}")
    val_seed, train_seed = np.random.SeedSequence(cfg.seed).spawn(2)
    val_batch = tuple(t.to(device) for t in training_batch(np.random.default_rng(val_seed), cfg.val_models, 8, 100, run.scm))
    end = min(cfg.steps, cfg.stop_at_step) if cfg.stop_at_step else cfg.steps
    started, window = time.perf_counter(), []
    with (out / "metrics.jsonl").open("a") as metrics:
        for step in range(start, end):
            rng = np.random.default_rng([train_seed.entropy, step])
            d, n = step_shape(rng, cfg)
            obs, graph = (t.to(device) for t in training_batch(rng, cfg.batch_size, d, n, run.scm))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg)
            loss, parts = model.loss(obs, graph)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            window.append({"loss": float(loss.detach()), **{key: float(value) for key, value in parts.items()}})
            done = step + 1
            record = {}
            if done % cfg.log_every == 0 or done == end:
                record = {key: float(np.mean([w[key] for w in window])) for key in window[0]}
                record |= {"lr": learning_rate(step, cfg), "seconds": round(time.perf_counter() - started, 1)}
                window = []
            if done % cfg.val_every == 0 or done == cfg.steps:
                record |= validate(model, val_batch)
            if record:
                metrics.write(json.dumps({"step": done} | record) + "\n")
                metrics.flush()
                log(f"step {done}/{cfg.steps} " + " ".join(f"{k}={v:.4g}" for k, v in record.items()))
            if done % cfg.ckpt_every == 0 or done == end:
                save_checkpoint(out / "checkpoints" / f"step_{done:07d}", model, optimizer, done, resolved)
    if end == cfg.steps:
        save_model(model.cpu(), out / "export", export_meta(run, cfg.steps, val_batch))
        log(f"exported {out / 'export'}")
    return out
