"""The figures a training run ends with, in RUN_DIR/figures: the exported model's predictions on a few held-out
models beside the conditional baseline's (figure 2 for d = 2, marginals otherwise), and the learning curve of
its validation metrics against the training step (from RUN_DIR/metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from activa_ray.config import Config
from activa_ray.data.simulate import shard_seed, simulate
from activa_ray.eval.baselines import conditional_mvn
from activa_ray.eval.curves import Segment, learning_curve
from activa_ray.eval.figures import figure2, marginals
from activa_ray.eval.pairs import flatten_pairs, predict_samples
from activa_ray.model.io import load_model


def prediction_figures(cfg: Config, export_dir: Path, out_dir: Path, n_models: int = 3) -> list[Path]:
    """Predictions of the exported model on a few held-out (test-seed) models, as PNGs."""
    model, _ = load_model(export_dir)
    model.eval()
    rng = np.random.default_rng(shard_seed(cfg.data, "test", 0))
    batch = simulate(cfg.data, rng, n_models)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(cfg.eval.seed)
    m, c, n, d = batch["int"].shape
    pairs = flatten_pairs(batch)  # one row per (model, condition): P = M * C
    activa = predict_samples(model, pairs["obs"], pairs["targets"], pairs["values"], n, cfg.eval.prior_samples,
                             generator, len(pairs["obs"]), torch.device("cpu")).reshape(m, c, n, d)
    baseline = conditional_mvn(
        pairs["obs"], pairs["targets"], pairs["values"], n, rng,
        point_mass=cfg.model.point_mass_interventions, jitter_var=cfg.data.linear.jitter_var,
    ).samples.reshape(m, c, n, d)
    paths = []
    for i in range(m):
        names = [str(v) for v in batch["var_names"][i]]
        if d == 2:
            path = figure2(batch["obs"][i], batch["int"][i], baseline[i], activa[i], out_dir / f"figure2_model{i}.png",
                           var_names=names)
        else:
            path = marginals(batch["int"][i], {"baseline": baseline[i], "ACTIVA": activa[i]},
                             out_dir / f"marginals_model{i}.png", var_names=names)
        paths.append(path)
    return paths


def has_validation(metrics_path: Path) -> bool:
    """True when the run's metrics.jsonl holds at least one report with a validation."""
    if not metrics_path.is_file():
        return False
    return any("val/activa_mmd" in json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip())


def run_figures(cfg: Config, export_dir: Path, run_dir: Path) -> list[Path]:
    """The prediction figures, then the learning curve (when the run validated at least once)."""
    paths = prediction_figures(cfg, export_dir, run_dir / "figures")
    metrics = run_dir / "metrics.jsonl"
    if has_validation(metrics):
        paths.append(learning_curve([Segment(metrics, cfg.train.batch_size)], None,
                                    f"{cfg.name}: validation on held-out models", run_dir / "figures" /
                                    "learning_curve.png", per_step=True))
    return paths
