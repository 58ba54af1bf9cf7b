"""Training without Ray: one process, one device (a laptop, or a bare GPU box with no Ray).

The parts a run is made of, shared with the Ray worker (train/worker.py) and the GPU command
(bench/gpu_run.py): `build_replica` (the model, its optimizer and loss, started fresh, warm-started from
`train.init_from` or resumed from a checkpoint) and `export_model` (RUN_DIR/export, loadable without Ray).
`train_local` puts them around `run_steps` with the same RUN_DIR layout as a Ray run (config.yaml,
metrics.jsonl, checkpoints/step_*, export/): rerun it with the same RUN_DIR to resume.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from activa_ray.config import Config, ConfigError, save_config, to_dict
from activa_ray.io_utils import append_jsonl
from activa_ray.model.activa import Activa
from activa_ray.model.io import save_model, warm_start
from activa_ray.pretrained import export_examples_seen, resolve
from activa_ray.train.checkpoint import export_meta, latest_checkpoint, load_checkpoint, save_checkpoint
from activa_ray.train.loop import Replica, data_stats, run_steps, validation_set
from activa_ray.train.step import (
    LossModule,
    build_optimizer,
    compile_model,
    reference_values,
    resolve_precision,
    streamed_examples,
)

CHECKPOINT_DIR_PREFIX = "step_"
EXPORT_DIR = "export"


def build_replica(
    cfg: Config,
    device: torch.device,
    resume_from: str | Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
) -> tuple[Replica, int, dict]:
    """(replica, step to continue from, the run's extra record) of a fresh, warm-started or resumed run.

    Every rank seeds torch alike, so all start from identical weights. `resume_from`: a checkpoint folder
    (weights, optimizer, step, extra); else `train.init_from` warm-starts a fresh run and the extra record
    keeps where from and how many examples its weights saw. `wrap`: e.g. Ray's DDP `prepare_model`.
    """
    torch.manual_seed(cfg.train.seed)
    model = Activa(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg)
    step, extra = 0, {}
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, asdict(cfg.model))
        step, extra = state["step"], state["extra"]
    elif cfg.train.init_from:  # a fresh run only: a resumed one has its own weights
        _, source_meta = warm_start(model, resolve(cfg.train.init_from))
        # Kept in every checkpoint, so the export counts the examples its weights saw before this run.
        extra["warm_start"] = {"from": cfg.train.init_from, "examples_seen": export_examples_seen(source_meta)}
    if cfg.train.compile:
        compile_model(model)
    loss_module = LossModule(model, cfg.train.prior_nll_weight, reference_values(cfg))
    if wrap is not None:
        loss_module = wrap(loss_module)
    replica = Replica(model, loss_module, optimizer, device, resolve_precision(cfg.train.precision, device),
                      rank, world_size)
    return replica, step, extra


def export_model(model: Activa, cfg: Config, run_dir: Path, step: int, extra: dict, meta: dict | None = None) -> Path:
    """RUN_DIR/export: the weights and the run's record (export_meta, then `meta` over it)."""
    target = Path(run_dir) / EXPORT_DIR
    save_model(model, target, {**export_meta(cfg, step, extra), **(meta or {})})
    return target


def keep_latest(checkpoints: Path, keep: int) -> None:
    """Delete all but the `keep` newest step_* checkpoints."""
    for old in sorted(checkpoints.glob(f"{CHECKPOINT_DIR_PREFIX}*"))[:-keep]:
        shutil.rmtree(old)


def train_local(cfg: Config, run_dir: str | Path, device: torch.device | str = "cpu",
                progress: Callable[[str], None] | None = print) -> dict:
    """Train (or resume) into `run_dir` in this process on streamed models; export; return where things are."""
    if cfg.data.source != "stream":
        raise ConfigError("data.source=shards: training without Ray streams its models; use `activa train`")
    run_dir, device = Path(run_dir), torch.device(device)
    checkpoints = run_dir / "checkpoints"
    resume = latest_checkpoint(checkpoints)
    replica, step, extra = build_replica(cfg, device, resume_from=resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    val_batch = validation_set(cfg)
    extra.setdefault("data_stats", data_stats(val_batch))
    extra["precision"] = replica.precision

    def report(at: int, metrics: dict, checkpoint_now: bool) -> bool:
        metrics["train/precision"] = replica.precision
        metrics["train/torch_threads"] = torch.get_num_threads()
        append_jsonl(run_dir / "metrics.jsonl", metrics)
        if progress is not None:
            progress(f"step {at}/{cfg.train.steps}  loss {metrics['train/loss']:.4g}")
        if checkpoint_now:
            save_checkpoint(checkpoints / f"{CHECKPOINT_DIR_PREFIX}{at:08d}", replica.model, replica.optimizer, at,
                            to_dict(cfg), extra=extra)
            keep_latest(checkpoints, cfg.train.keep_ckpts)
        return False

    step = run_steps(cfg, replica, step, lambda at: streamed_examples(cfg, 0, at, cfg.train.batch_size), report,
                     val_batch)
    return {"run_dir": run_dir, "step": step, "export": export_model(replica.model, cfg, run_dir, step, extra)}
