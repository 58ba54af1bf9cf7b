"""The Ray Train worker: one DDP rank. It builds the replica (train/local.py, wrapped for DDP), picks its data source,
and turns the plain-torch loop's reports into metrics.jsonl lines, W&B entries, checkpoints and `ray.train.report`s."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import ray.train
import ray.train.torch
import torch

from activa_ray.config import Config, rebuild_config, to_dict
from activa_ray.data.examples import iter_examples_in_passes
from activa_ray.data.format import table_to_batch
from activa_ray.io_utils import append_jsonl
from activa_ray.logging import init_run
from activa_ray.train.checkpoint import save_checkpoint
from activa_ray.train.local import CHECKPOINT_DIR_PREFIX, build_replica
from activa_ray.train.loop import data_stats, run_steps, validation_set
from activa_ray.train.step import streamed_examples, torch_threads


def shard_examples(cfg: Config, n_examples: int, rank_models: int, rng: np.random.Generator) -> Iterator[dict]:
    """Endless example batches from this rank's Ray Data shard of `rank_models` models (every epoch a
    fresh pass; the shuffle buffer holds at most one)."""
    dataset = ray.train.get_dataset_shard("train")

    def model_batches():
        while True:
            for table in dataset.iter_batches(batch_size=64, batch_format="pyarrow"):
                yield table_to_batch(table, source="Ray Data shard of train split")

    yield from iter_examples_in_passes(model_batches(), rank_models, n_examples, rng, cfg.train.shuffle_buffer)


def train_loop_per_worker(loop_config: dict) -> None:
    cfg = rebuild_config(loop_config["config"], source="train loop config")  # the driver validated it
    run_dir = Path(loop_config["run_dir"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(torch_threads(cfg, context.get_local_world_size()))
    per_rank_batch = cfg.train.batch_size // world_size

    checkpoint = ray.train.get_checkpoint()  # Ray Train's latest of this RUN_DIR: a resumed run
    with checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext() as directory:
        replica, step, extra = build_replica(
            cfg, device, resume_from=directory, rank=rank, world_size=world_size,
            wrap=lambda module: ray.train.torch.prepare_model(module, move_to_device=False))
    model, optimizer = replica.model, replica.optimizer

    wandb_run, val_batch = None, None
    if rank == 0:
        wandb_run = init_run(cfg, run_dir)
        val_batch = validation_set(cfg)
        extra.setdefault("data_stats", data_stats(val_batch))
    extra["precision"] = replica.precision

    if cfg.data.source == "shards":
        rng = np.random.default_rng([cfg.train.seed, rank, step])
        shard_iter = shard_examples(cfg, per_rank_batch, loop_config["train_models"] // world_size, rng)
        next_examples = lambda _step: next(shard_iter)  # noqa: E731
    else:
        next_examples = lambda at: streamed_examples(cfg, rank, at, per_rank_batch)  # noqa: E731

    def report(at: int, metrics: dict, checkpoint_now: bool) -> bool:
        metrics["train/precision"] = replica.precision
        metrics["train/torch_threads"] = torch.get_num_threads()
        if rank == 0:
            append_jsonl(run_dir / "metrics.jsonl", metrics)
        if wandb_run is not None:
            loggable = {k: v for k, v in metrics.items() if not isinstance(v, (list, str))}
            loggable.update({f"train/kl_dim{i}": v for i, v in enumerate(metrics["train/kl_per_dim"])})
            # commit: the step's row is written now, not when a later step arrives (a stopped trial has none).
            wandb_run.log(loggable, step=at, commit=True)
        with tempfile.TemporaryDirectory() as tmp:
            report_checkpoint = None
            if checkpoint_now and rank == 0:
                save_checkpoint(Path(tmp) / "ckpt", model, optimizer, at, to_dict(cfg), extra=extra)
                report_checkpoint = ray.train.Checkpoint.from_directory(str(Path(tmp) / "ckpt"))
            ray.train.report(metrics, checkpoint=report_checkpoint,
                             checkpoint_dir_name=f"{CHECKPOINT_DIR_PREFIX}{at:08d}" if checkpoint_now else None)
        return False

    run_steps(cfg, replica, step, next_examples, report, val_batch)
    if wandb_run is not None:
        wandb_run.finish()
