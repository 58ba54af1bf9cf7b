"""One experiment end to end: generate the held-out shards, train (or resume), evaluate.

OUT/data/        shards of the experiment's data config (train/val/test; training streams its own models)
OUT/run/         the training run (checkpoints, export, metrics.jsonl, figures, W&B)
OUT/eval/        results.{md,csv,json}, results_by_role.json, per_pair.csv, figures
OUT/eval_<name>/ the same for every extra evaluation config (e.g. SERGIO's out-of-distribution set)
Every step is resumable: rerunning the command skips finished shards and continues the training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from activa_ray.cluster import connect_or_start
from activa_ray.config import Config, load_config
from activa_ray.data.generate import generate
from activa_ray.data.kinds import kind_of
from activa_ray.eval.evaluate import evaluate
from activa_ray.train.trainer import run_training


def evaluation_methods(cfg: Config) -> tuple[str, ...]:
    """The baselines that apply to the data's kind (SERGIO has no linear mechanisms to fit)."""
    return kind_of(cfg.data.kind).baselines


def run_experiment(
    cfg: Config,
    out_dir: str | Path,
    extra_eval_configs: Sequence[str | Path] = (),
    max_models: int | None = None,
    num_cpus: int | None = None,
) -> dict[str, Path]:
    out_dir = Path(out_dir)
    connect_or_start(num_cpus)
    # (data config, shard directory, report directory): the experiment's own test split first.
    evaluations = [(cfg, out_dir / "data", out_dir / "eval")]
    for extra in extra_eval_configs:
        name = Path(extra).stem
        evaluations.append((load_config(extra), out_dir / f"data_{name}", out_dir / f"eval_{name}"))
    for data_cfg, data_dir, _ in evaluations:
        generate(data_cfg, data_dir)
    trained = run_training(cfg, out_dir / "run")
    outputs = {"run": trained["run_dir"]}
    for data_cfg, data_dir, eval_dir in evaluations:
        evaluate(trained["export"], data_dir, eval_dir, prior_samples=(1, 50),
                 default_prior_samples=cfg.eval.prior_samples, seed=cfg.eval.seed, max_models=max_models,
                 methods=evaluation_methods(data_cfg), permutations=cfg.eval.permutations)
        outputs[eval_dir.name] = eval_dir
    return outputs
