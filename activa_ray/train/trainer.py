"""The driver side of training: build the TorchTrainer from the config, fit, export, then the figures
(drawn by eval/run_figures.py, logged to W&B by activa_ray.logging).

RUN_DIR layout:
  config.yaml             the resolved config
  checkpoints/step_*/     Ray Train checkpoints (the last `train.keep_ckpts`), plus Ray's run state
  export/                 model.safetensors + config.json, loadable without Ray
  figures/                PNGs of predictions on held-out models and the learning curve
  wandb/                  W&B files (offline runs without an API key)
Rerunning with the same RUN_DIR resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import ray
import ray.data
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from activa_ray.cluster import connect_or_start
from activa_ray.config import Config, ConfigError, save_config, to_dict, validate
from activa_ray.data.format import read_manifest
from activa_ray.eval.run_figures import run_figures
from activa_ray.logging import log_images
from activa_ray.model.activa import Activa
from activa_ray.train import local
from activa_ray.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    model_config_differences,
    read_checkpoint_state,
)
from activa_ray.train.progress import ProgressPrinter
from activa_ray.train.worker import train_loop_per_worker

# Ray Train blocks every report until the controller's next poll (2 s by default); training reports
# every `log_every` steps, so a short poll keeps reports cheap. Propagated to controller and workers.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def default_run_dir(cfg: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-{stamp}"


def check_shard_dir(cfg: Config) -> dict:
    """Refuse a shard directory that is missing or holds data of another kind/d/N; return its manifest."""
    root = Path(cfg.data.dir)
    if not (root / "manifest.json").is_file():
        raise ConfigError(f"data.dir={root}: no manifest.json; write shards with `activa generate` first")
    manifest = read_manifest(root)
    saved = manifest["config"]
    saved_data = saved.get("data", saved)
    for key in ("kind", "d", "n_samples"):
        if saved_data.get(key) != getattr(cfg.data, key):
            raise ConfigError(
                f"data.dir={root} holds data.{key}={saved_data.get(key)!r}, the config says {getattr(cfg.data, key)!r}"
            )
    return manifest


def build_trainer(cfg: Config, run_dir: Path, callbacks: list | None = None) -> TorchTrainer:
    use_gpu = cfg.train.use_gpu
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    resources = {"CPU": cfg.train.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = 1
    datasets = None
    loop_config = {"config": to_dict(cfg), "run_dir": str(run_dir.resolve())}
    if cfg.data.source == "shards":
        loop_config["train_models"] = check_shard_dir(cfg)["splits"]["train"]["models"]
        datasets = {"train": ray.data.read_parquet(str(Path(cfg.data.dir).resolve() / "train"))}
    # Ray Train restores its checkpoint state from storage_path/name by itself: the same RUN_DIR resumes.
    resume = latest_checkpoint(run_dir / "checkpoints")
    if resume is not None:
        differences = model_config_differences(read_checkpoint_state(resume), asdict(cfg.model))
        if differences:
            raise ConfigError(f"{run_dir} holds checkpoints of another model config ({differences}); use a new --out")
    return TorchTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name="checkpoints",
            storage_path=str(run_dir.resolve()),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_ckpts),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks,
        ),
        datasets=datasets,
    )


def export_model(cfg: Config, run_dir: Path) -> Path:
    """Turn the latest checkpoint into RUN_DIR/export (weights + config), loadable without Ray."""
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise RuntimeError(f"training wrote no checkpoint under {run_dir / 'checkpoints'}")
    model = Activa(cfg.model)
    state = load_checkpoint(checkpoint, model, None, asdict(cfg.model))
    return local.export_model(model, cfg, run_dir, state["step"], state["extra"])


def run_training(
    cfg: Config,
    run_dir: str | os.PathLike | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    ray_logs: bool = False,
) -> dict:
    """Train (or resume) into `run_dir`, export the model, draw figures; return where things are.

    `progress` prints one line per report (train/progress.py); `ray_logs` lets Ray's own worker log
    lines through to the console when this call starts or connects Ray.
    """
    # Every check a user's config can fail comes before the run directory is made or its config replaced. This is
    # the Python API's entry point (a config built or edited by hand); the workers rebuild it unchecked.
    validate(cfg)
    if cfg.data.source == "shards":
        check_shard_dir(cfg)
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if progress:  # Ray's start and the workers' first steps take ~30 s on a small machine: say what is happening
        print(f"{run_dir}: starting Ray and {cfg.train.workers} training worker(s); a line every "
              f"{cfg.train.log_every} steps", flush=True)
    connect_or_start(num_cpus, log_to_driver=ray_logs)
    trainer = build_trainer(cfg, run_dir)  # refuses a RUN_DIR holding checkpoints of another model config
    save_config(cfg, run_dir / "config.yaml")
    with ProgressPrinter(run_dir / "metrics.jsonl", cfg.train.steps) if progress else contextlib.nullcontext():
        result = trainer.fit()
    if result.error:
        raise result.error
    export_dir = export_model(cfg, run_dir)
    figures = run_figures(cfg, export_dir, run_dir)
    log_images(cfg, run_dir, figures, "figures")
    return {"run_dir": run_dir, "export": export_dir, "figures": figures, "metrics": result.metrics,
            "last_record": last_record(run_dir / "metrics.jsonl")}


def last_record(metrics_path: Path) -> dict:
    """The last report in a metrics.jsonl ({} when there is none)."""
    lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
    return json.loads(lines[-1]) if lines else {}
