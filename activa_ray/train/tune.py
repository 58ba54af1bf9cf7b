"""Hyperparameter sweeps: every trial is a full Ray Train run launched from a Tune function trainable.

A sweep file (configs/tune/gauss2.yaml) names a base training config (relative to the sweep file's
folder), overrides for it, the search space over dotted config keys, and the sweep settings:

    base: ../paper/gauss2.yaml
    overrides: [train.steps=2000]
    space:
      model.beta: {loguniform: [0.01, 1.0]}
      model.prior_components: {choice: [1, 2, 4]}
      train.lr: {grid: [0.001, 0.0003]}
    tune: {metric: val/activa_mmd, mode: min, num_samples: 8, search: random, ...}

Outputs under DIR: tuner/ (Tune's state, for restore), trials.csv (one row per trial),
best_config.yaml (accepted unchanged by `activa train --config`) and best.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from activa_ray.cluster import connect_or_start
from activa_ray.config import (
    Config,
    ConfigError,
    build_dataclass,
    deep_merge,
    parse_dotlist,
    read_yaml,
    resolve_base,
    config_from_dict,
    load_config,
    rebuild_config,
    save_config,
    to_dict,
)
from activa_ray.io_utils import atomic_write_text
from activa_ray.train.trainer import build_trainer
from activa_ray.ranges import AT_LEAST_0, AT_LEAST_1, Range, range_problems

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice", "grid")


# Reported beside the sweep's metric in trials.csv: the three metrics and the baseline they must beat.
TABLE_METRICS = ("val/activa_mmd", "val/activa_wsd", "val/activa_erg", "val/baseline_mmd", "val/baseline_wsd",
                 "val/baseline_erg", "train/examples_per_s")

# Keys that change what val/loss measures (it weighs the KL by β and adds α · prior NLL): a sweep over
# them must rank trials by something comparable, such as val/activa_mmd or val/elbo.
LOSS_WEIGHTS = ("model.beta", "train.prior_nll_weight")


@dataclass
class SweepSettings:
    metric: str = "val/activa_mmd"  # what inference delivers: MMD of predictions from the prior
    mode: Literal["min", "max"] = "min"
    num_samples: int = 8  # samples of the space (each grid point is repeated num_samples times)
    search: Literal["random", "optuna", "hyperopt"] = "random"
    scheduler: Literal["asha", "none"] = "asha"
    # ASHA: how long a trial runs before it can be stopped, in reports (or in seconds with budget_s).
    grace_period: int = 2
    reduction_factor: int = 2
    # >0: every trial gets this many seconds of wall clock and ASHA compares trials at equal seconds, so
    # the sweep ranks what learns most per CPU-hour (a small model or batch that takes more steps may win).
    budget_s: float = 0.0
    # >0: every trial logs and validates each this many examples, whatever its batch size, so validation
    # costs every trial the same share of its budget.
    report_every_examples: int = 0

    RANGES: ClassVar[dict[str, Range]] = {
        "num_samples": AT_LEAST_1, "grace_period": AT_LEAST_1, "reduction_factor": Range(2),
        "max_concurrent_trials": AT_LEAST_0, "budget_s": AT_LEAST_0, "report_every_examples": AT_LEAST_0,
    }
    max_concurrent_trials: int = 0  # 0: derived from the cluster and the workers per trial
    seed: int = 0


@dataclass
class SweepFile:
    base: str = ""
    overrides: list[str] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    tune: SweepSettings = field(default_factory=SweepSettings)


def _dotted_to_tree(params: dict[str, Any]) -> dict:
    return parse_dotlist([f"{k}={json.dumps(v)}" for k, v in params.items()])


def trial_config(base: dict, params: dict[str, Any], report_every_examples: int = 0) -> Config:
    tree = deep_merge(base, _dotted_to_tree(params))
    if report_every_examples:
        every = max(1, -(-report_every_examples // tree["train"]["batch_size"]))
        tree = deep_merge(tree, {"train": {"log_every": every, "val_every": every}})
    return config_from_dict(tree, source="sweep trial")


def _check_space(space: dict, base: dict, source: str) -> None:
    """Every key must exist in the config tree and every value the space can produce must be valid."""
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"space.{key} (from {source}): expected one of {{{', '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
        kind, args = next(iter(spec.items()))
        if kind in ("choice", "grid"):
            candidates = list(args)
        else:
            if not (isinstance(args, list) and len(args) == 2 and args[0] < args[1]):
                raise ConfigError(f"space.{key}.{kind} (from {source}): expected [low, high] with low < high")
            if kind == "loguniform" and args[0] <= 0:
                raise ConfigError(f"space.{key}.loguniform (from {source}): bounds must be positive")
            candidates = list(args)
        for value in candidates:
            try:
                trial_config(base, {key: value})
            except ConfigError as err:
                raise ConfigError(f"space.{key} (from {source}): value {value!r} is invalid: {err}") from None


def load_sweep(path: str | os.PathLike, overrides: list[str] | None = None) -> tuple[SweepFile, dict]:
    """Read the sweep file; CLI overrides `tune.x=...` set sweep settings, all others the base config."""
    tree = read_yaml(path)
    sweep_overrides = [o for o in overrides or [] if o.startswith("tune.")]
    train_overrides = [o for o in overrides or [] if not o.startswith("tune.")]
    if sweep_overrides:
        tree = deep_merge(tree, parse_dotlist(sweep_overrides))
    sweep = build_dataclass(SweepFile, tree, "", str(path))
    if not sweep.space:
        raise ConfigError(f"{path}: the sweep needs a non-empty `space`")
    problems = range_problems(sweep.tune, "tune")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    base_path = resolve_base(Path(path), sweep.base) if sweep.base else None  # relative to the sweep's folder
    base = to_dict(load_config(base_path, list(sweep.overrides) + train_overrides))
    _check_space(sweep.space, base, str(path))
    swept_weights = [key for key in LOSS_WEIGHTS if key in sweep.space]
    if sweep.tune.metric == "val/loss" and swept_weights:
        raise ConfigError(
            f"{path}: tune.metric val/loss is not comparable across trials that vary {', '.join(swept_weights)} "
            "(it is the weighted training loss); rank by val/activa_mmd (mode min) or val/elbo (mode max)"
        )
    return sweep, base


def _search_space(space: dict) -> dict:
    samplers = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
                "randint": lambda a: tune.randint(a[0], a[1] + 1), "choice": tune.choice,
                "grid": tune.grid_search}
    return {key: samplers[kind](args) for key, spec in space.items() for kind, args in spec.items()}


def run_trial(params: dict, base: dict, report_every_examples: int) -> None:
    """The Tune function trainable: one full Ray Train run with the trial's parameters."""
    cfg = trial_config(base, params, report_every_examples)
    run_dir = Path(tune.get_context().get_trial_dir())
    save_config(cfg, run_dir / "config.yaml")
    build_trainer(cfg, run_dir, callbacks=[TuneReportCallback()]).fit()


def concurrent_trials(cfg: Config, settings: SweepSettings) -> int:
    """As many trials at once as the cluster holds, given the workers each trial asks for."""
    if settings.max_concurrent_trials:
        return settings.max_concurrent_trials
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1 and cfg.train.use_gpu is not False:
        return max(1, int(resources["GPU"] // cfg.train.workers))
    return max(1, int(resources.get("CPU", 1) // (cfg.train.workers * cfg.train.cpus_per_worker)))


def _searcher(settings: SweepSettings):
    # Imported only when chosen: Optuna and HyperOpt are optional dependencies (the `sweep` extra).
    if settings.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=settings.seed)
    if settings.search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=settings.seed)
    return None


def run_sweep(sweep_path: str | os.PathLike, out_dir: str | os.PathLike, overrides: list[str] | None = None,
              num_cpus: int | None = None) -> dict:
    """Run (or resume) the sweep into `out_dir`; write the trials table and the best config."""
    sweep, base = load_sweep(sweep_path, overrides)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    base.setdefault("wandb", {})["group"] = base["wandb"].get("group") or f"sweep-{out_dir.name}"
    base_cfg = rebuild_config(base)  # load_sweep validated it; only wandb.group changed
    (out_dir / "sweep.yaml").write_text(yaml.safe_dump({"sweep": to_dict(sweep), "base": base}, sort_keys=False))
    connect_or_start(num_cpus)
    concurrent = concurrent_trials(base_cfg, sweep.tune)
    trial_base = base
    if base_cfg.train.threads_per_worker == 0:
        # A worker alone on its node would take all the node's cores; trials running side by side share them.
        # Only the trials get this: best_config.yaml keeps the base's 0 (all cores) for a run on its own.
        workers_per_node = concurrent * base_cfg.train.workers
        threads = max(1, (os.cpu_count() or 1) // workers_per_node)
        trial_base = deep_merge(base, {"train": {"threads_per_worker": threads}})
    # Tune's function trainable only launches the TorchTrainer; its workers hold the resources.
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=trial_base, report_every_examples=sweep.tune.report_every_examples),
        {"CPU": 0.1})
    tuner_path = out_dir / "tuner"
    if tune.Tuner.can_restore(str(tuner_path)):
        tuner = tune.Tuner.restore(str(tuner_path), trainable=trainable, resume_errored=True)
    else:
        budget_s = sweep.tune.budget_s
        scheduler = None
        if sweep.tune.scheduler == "asha":
            scheduler = ASHAScheduler(time_attr="time_total_s" if budget_s else "training_iteration",
                                      grace_period=sweep.tune.grace_period,
                                      reduction_factor=sweep.tune.reduction_factor,
                                      max_t=budget_s or max(sweep.tune.grace_period, _most_reports(base_cfg, sweep.space)))
        tuner = tune.Tuner(
            trainable,
            param_space=_search_space(sweep.space),
            tune_config=tune.TuneConfig(
                metric=sweep.tune.metric, mode=sweep.tune.mode, num_samples=sweep.tune.num_samples,
                search_alg=_searcher(sweep.tune), scheduler=scheduler,
                max_concurrent_trials=concurrent,
            ),
            run_config=tune.RunConfig(name="tuner", storage_path=str(out_dir),
                                      stop={"time_total_s": budget_s} if budget_s else None),
        )
    results = tuner.fit()
    return summarize(results, sweep, base, out_dir)


def _most_reports(cfg: Config, space: dict) -> int:
    """ASHA's max_t in reports: a bound on any trial's (ASHA stops a trial there). A trial reports at most
    once a step, whatever report interval its batch or the space gives it."""
    steps = space.get("train.steps")
    return max([cfg.train.steps] + ([int(v) for v in next(iter(steps.values()))] if steps else []))


def _metric_at_seconds(result, metric: str, seconds: float) -> float | None:
    """The metric at the trial's first report at or after `seconds` of its wall clock."""
    reports = result.metrics_dataframe
    if reports is None or metric not in reports or "time_total_s" not in reports:
        return None
    reached = reports[reports["time_total_s"] >= seconds]
    return None if reached.empty else float(reached[metric].iloc[0])


def summarize(results, sweep: SweepFile, base: dict, out_dir: Path) -> dict:
    """trials.csv (every trial), best_config.yaml and best.json (the best finished trial).

    A wall-clock sweep's table also holds the metric at ASHA's first rung (grace_period seconds),
    which every trial reached: the one comparison at equal seconds that includes stopped trials.
    """
    metric, mode = sweep.tune.metric, sweep.tune.mode
    first_rung = sweep.tune.grace_period if sweep.tune.budget_s else None
    rows = []
    for result in results:
        params = dict(result.config or {})
        metrics = result.metrics or {}
        step = metrics.get("step")
        batch_size = trial_config(base, params).train.batch_size
        row = {"trial": Path(result.path).name, **params, "step": step,
               "examples": step * batch_size if step is not None else None,
               "seconds": metrics.get("time_total_s"), metric: metrics.get(metric),
               **{key: metrics.get(key) for key in TABLE_METRICS if key != metric},
               "iterations": metrics.get("training_iteration"), "error": bool(result.error)}
        if first_rung is not None:
            row[f"{metric}@{first_rung}s"] = _metric_at_seconds(result, metric, first_rung)
        rows.append(row)
    pd.DataFrame(rows).to_csv(out_dir / "trials.csv", index=False)
    best = results.get_best_result(metric=metric, mode=mode, scope="last")
    best_params = dict(best.config)
    best_cfg = trial_config(base, best_params, sweep.tune.report_every_examples)
    save_config(best_cfg, out_dir / "best_config.yaml")
    summary = {"metric": metric, "mode": mode, "value": best.metrics.get(metric), "params": best_params,
               "checkpoint_path": best.metrics.get("checkpoint_path"), "trial_dir": best.path,
               "trials": len(rows)}
    atomic_write_text(out_dir / "best.json", json.dumps(summary, indent=2))
    return {"best": summary, "trials": rows, "out_dir": out_dir}
