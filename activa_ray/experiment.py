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

from activa_ray.config import Config, load_config

METHODS = ("baseline", "no_effect", "oracle_graph", "lingam", "ges_mec")


def evaluation_methods(cfg: Config) -> tuple[str, ...]:
    """Linear kinds get every baseline; SERGIO has no linear mechanisms to fit, so only the model-free ones."""
    return METHODS if cfg.data.kind.startswith("linear") else ("baseline", "no_effect")


def run_experiment(
    cfg: Config,
    out_dir: str | Path,
    extra_eval_configs: Sequence[str | Path] = (),
    max_models: int | None = None,
    num_cpus: int | None = None,
) -> dict[str, Path]:
    from activa_ray.data.shards import generate
    from activa_ray.eval.evaluate import evaluate
    from activa_ray.cluster import connect_or_start
    from activa_ray.train.trainer import run_training

    out_dir = Path(out_dir)
    connect_or_start(num_cpus)
    generate(cfg, out_dir / "data")
    trained = run_training(cfg, out_dir / "run")
    outputs = {"run": trained["run_dir"], "eval": out_dir / "eval"}
    evaluate(trained["export"], out_dir / "data", out_dir / "eval", prior_samples=(1, 50),
             default_prior_samples=cfg.eval.prior_samples, seed=cfg.eval.seed, max_models=max_models,
             methods=evaluation_methods(cfg), permutations=cfg.eval.permutations)
    for extra in extra_eval_configs:
        extra_cfg = load_config(extra)
        name = Path(extra).stem
        generate(extra_cfg, out_dir / f"data_{name}")
        evaluate(trained["export"], out_dir / f"data_{name}", out_dir / f"eval_{name}", prior_samples=(1, 50),
                 default_prior_samples=cfg.eval.prior_samples, seed=cfg.eval.seed, max_models=max_models,
                 methods=evaluation_methods(extra_cfg), permutations=cfg.eval.permutations)
        outputs[f"eval_{name}"] = out_dir / f"eval_{name}"
    return outputs
