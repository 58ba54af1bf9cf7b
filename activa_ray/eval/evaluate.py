"""Evaluate an exported ACTIVA model on a split of shards, beside baselines and the noise floor.

For every (test model, condition) pair the truth is `int` (N samples). Each method predicts N
samples: ACTIVA's mixture with S prior samples for every S asked (`activa_s1`, `activa_s50`;
`activa` is the default S), the baselines (`baseline` = conditional MVN, `no_effect`,
`oracle_graph`, `lingam`, `ges_mec`) and the noise floor (`floor` = `int_ref`). Metrics are
computed over all variables and, separately, over the target's descendants and its
non-descendants (the other coordinates zeroed in both sample sets, which leaves every pairwise
distance, hence every metric, equal to the restricted one).

pairs.py flattens a shard into pairs, shard.py predicts and scores one shard, aggregate.py sums
the shards, report.py writes the tables, figures.py the figures.

Outputs in `out_dir`: results.md, results.csv, results.json ({method: {metric: {mean, sem, n}}}),
results_by_role.json ({role: {method: ...}}), per_pair.csv, run_info.json, figures/*.png.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tqdm import tqdm

import activa_ray
from activa_ray.data.format import read_manifest, read_shard, shard_paths
from activa_ray.data.kinds import kind_is_point_mass
from activa_ray.eval.aggregate import Totals
from activa_ray.eval.baselines import BASELINES
from activa_ray.eval.figures import evaluation_figures
from activa_ray.eval.pairs import EvaluationError, flatten_pairs
from activa_ray.eval.report import markdown_report, results_csv_rows, write_csv, write_json
from activa_ray.eval.shard import ACTIVA, FLOOR, Methods, activa_name, evaluate_shard
from activa_ray.io_utils import atomic_write_text
from activa_ray.model.io import load_model
from activa_ray.pretrained import resolve
from activa_ray.predict.domain import warn_if_other_d


def _check_methods(methods: Sequence[str]) -> list[str]:
    known = list(BASELINES)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise EvaluationError(f"unknown method(s) {unknown}; choose from {known} (ACTIVA and the floor always run)")
    return list(dict.fromkeys(methods))


def _check_prior_samples(prior_samples: Sequence[int], default: int) -> list[int]:
    counts = list(dict.fromkeys(int(s) for s in prior_samples))
    if default not in counts:
        counts.append(default)
    bad = [s for s in counts if s < 1]
    if bad:
        raise EvaluationError(f"prior samples must be >= 1, got {bad}")
    return counts


def _data_settings(manifest: dict, data_dir: Path) -> tuple[bool, float, int]:
    """(point_mass, jitter_var, d) of the data, from its manifest."""
    config = manifest.get("data_config") or {}
    kind = manifest.get("kind", config.get("kind"))
    d = manifest.get("d", config.get("d"))
    if kind is None or d is None:
        raise EvaluationError(f"{data_dir / 'manifest.json'}: no 'kind' / 'd' entries; rerun jobs/generate.py")
    point_mass = bool(manifest.get("point_mass_interventions", kind_is_point_mass(kind)))
    jitter_var = float((config.get("linear") or {}).get("jitter_var", 0.1))
    return point_mass, jitter_var, int(d)


def _model_batches(
    paths: list[Path], d: int, max_models: int | None, manifest_path: Path, bar: tqdm
) -> Iterator[tuple[Path, dict, int]]:
    """(path, batch, models to use) per shard, stopping after `max_models` models."""
    remaining = max_models
    for path in paths:
        if remaining is not None and remaining <= 0:
            return
        batch = read_shard(path)
        if batch["obs"].shape[-1] != d:
            raise EvaluationError(f"{path}: d={batch['obs'].shape[-1]}, but {manifest_path} says d={d}")
        models = len(batch["obs"]) if remaining is None else min(len(batch["obs"]), remaining)
        if models == 0:
            continue
        yield path, batch, models
        if remaining is not None:
            remaining -= models
        bar.update(models)


@dataclass
class _Run:
    """What one evaluation reads and reports on (the methods' own settings live in `Methods`)."""

    model_dir: str | os.PathLike
    meta: dict
    data_dir: Path
    out_dir: Path
    split: str
    manifest: dict
    d: int
    default_prior_samples: int
    permutations: int
    seed: int


def evaluate(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    prior_samples: Sequence[int] = (1, 50),
    default_prior_samples: int = 1,
    seed: int = 0,
    max_models: int | None = None,
    methods: Sequence[str] = ("baseline",),
    batch_size: int = 256,
    permutations: int = 100,
    ray_tasks: int = 0,
    figure_models: int = 3,
    device: str = "cpu",
    wandb_run: Any = None,
    progress: bool = True,
) -> dict:
    """Evaluate `model_dir` (an export folder, or a shipped model's name) and write the report files;
    returns {"results", "by_role", "failures", "timing_ms", ...}."""
    model_dir, data_dir, out_dir = resolve(model_dir), Path(data_dir), Path(out_dir)
    baselines = _check_methods(methods)
    counts = _check_prior_samples(prior_samples, default_prior_samples)
    if max_models is not None and max_models < 1:
        raise EvaluationError(f"max_models must be >= 1, got {max_models}")
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    manifest = read_manifest(data_dir)
    paths = shard_paths(data_dir, split)
    point_mass, jitter_var, d = _data_settings(manifest, data_dir)
    torch_device = torch.device(device)
    model, meta = load_model(model_dir, device=torch_device)
    model.eval()
    warn_if_other_d(d, (meta.get("data") or {}).get("d"), f"the data ({data_dir}, split {split})")
    runner = Methods(model, counts, baselines, point_mass, jitter_var, batch_size, permutations, ray_tasks,
                     torch_device).seed(seed)
    run = _Run(model_dir, meta, data_dir, out_dir, split, manifest, d, default_prior_samples, permutations, seed)

    totals = Totals(figure_models)
    listed = (manifest.get("splits", {}).get(split) or {}).get("models")
    bar = tqdm(total=min(x for x in (listed, max_models) if x is not None) if (listed or max_models) else None,
               unit="model", desc=f"evaluate {split}", disable=not progress)
    for path, batch, models in _model_batches(paths, d, max_models, data_dir / "manifest.json", bar):
        pairs = flatten_pairs(batch, models)
        totals.has_floor = totals.has_floor and "int_ref" in pairs
        totals.add(pairs, evaluate_shard(runner, pairs, totals.has_floor, str(path)), models, batch["targets"].shape[1])
    bar.close()
    if totals.pairs == 0:
        raise EvaluationError(f"split {split!r} of {data_dir} holds no models to evaluate")
    return _report(run, runner, totals, wandb_run)


def _report(run: _Run, runner: Methods, totals: Totals, wandb_run: Any) -> dict:
    """Summarise the totals, write every output file, log to W&B; the value `evaluate` returns."""
    # The default S is reported again as plain `activa`.
    totals.alias(ACTIVA, activa_name(run.default_prior_samples))
    order = [ACTIVA] + [activa_name(s) for s in runner.counts] + runner.baselines
    order += [FLOOR] if totals.has_floor else []
    arrays = totals.arrays(order)
    results, by_role = totals.tables(arrays)
    timing_ms = totals.timing_ms(order)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    _write_tables(run.out_dir, results, by_role, totals, timing_ms, _header(run, totals), runner.counts,
                  run.default_prior_samples)
    write_csv(run.out_dir / "per_pair.csv", *totals.per_pair_rows(arrays))
    figure_paths = evaluation_figures(run.out_dir / "figures", totals.kept, run.d,
                                      activa_name(run.default_prior_samples))
    info = _run_info(run, runner, totals, order, timing_ms, figure_paths)
    write_json(run.out_dir / "run_info.json", info)
    if wandb_run is not None:
        _log_wandb(wandb_run, results, by_role, timing_ms, figure_paths)
    return {"results": results, "by_role": by_role, "failures": totals.failures, "timing_ms": timing_ms,
            "pairs": totals.pairs, "info": info}


def _header(run: _Run, totals: Totals) -> dict:
    """The lines atop results.md."""
    header = {
        "model": str(Path(run.model_dir).resolve()),
        "data": f"{run.data_dir.resolve()} (split {run.split}, kind {run.manifest.get('kind')}, d={run.d})",
        "pairs": f"{totals.pairs} (model, condition) pairs",
        "samples per pair": totals.samples_per_pair,
        "permutations": run.permutations,
        "seed": run.seed,
    }
    if not totals.has_floor:
        header["noise floor"] = f"not available: split {run.split!r} has no int_ref"
    return header


def _run_info(run: _Run, runner: Methods, totals: Totals, order: list[str], timing_ms: dict,
              figure_paths: list[Path]) -> dict:
    """run_info.json: what was evaluated, how, and what failed."""
    return {
        "package_version": activa_ray.__version__,
        "model_dir": str(run.model_dir),
        "model_meta": run.meta,
        "data_dir": str(run.data_dir),
        "split": run.split,
        "kind": run.manifest.get("kind"),
        "d": run.d,
        "pairs": totals.pairs,
        "samples_per_pair": totals.samples_per_pair,
        "prior_samples": runner.counts,
        "default_prior_samples": run.default_prior_samples,
        "methods": order,
        "permutations": run.permutations,
        "seed": run.seed,
        "point_mass": runner.point_mass,
        "jitter_var": runner.jitter_var,
        "failures": totals.failures,
        "errors": {name: msgs[:20] for name, msgs in totals.errors.items() if msgs},
        "timing_ms_per_pair": timing_ms,
        "figures": [str(p.relative_to(run.out_dir)) for p in figure_paths],
    }


def _write_tables(
    out_dir: Path, results: dict, by_role: dict, totals: Totals, timing_ms: dict, header: dict,
    counts: list[int], default_prior_samples: int,
) -> None:
    """results.json, results_by_role.json, results.csv and results.md."""
    write_json(out_dir / "results.json", results)
    write_json(out_dir / "results_by_role.json", by_role)
    write_csv(out_dir / "results.csv", ["method", "role", "metric", "mean", "sem", "n", "failures"],
              results_csv_rows(results, by_role, totals.failures))
    labels = {ACTIVA: f"activa (S={default_prior_samples})", **{activa_name(s): f"activa, S={s}" for s in counts},
              "baseline": "baseline (conditional MVN)", FLOOR: "noise floor"}
    # The markdown shows the default S once (as `activa`); the JSON keeps both names for scripts.
    duplicate = activa_name(default_prior_samples)

    def shown(table: dict) -> dict:
        return {name: value for name, value in table.items() if name != duplicate}

    atomic_write_text(out_dir / "results.md", markdown_report(
        shown(results), {role: shown(t) for role, t in by_role.items()}, labels, totals.failures,
        shown(timing_ms), header,
    ))


def _log_wandb(run: Any, results: dict, by_role: dict, timing_ms: dict, figure_paths: list[Path]) -> None:
    logged: dict[str, Any] = {}
    for role, table in [("all", results), *by_role.items()]:
        for method, stats in table.items():
            for metric, entry in stats.items():
                if math.isfinite(entry["mean"]):
                    logged[f"eval/{role}/{method}/{metric}"] = entry["mean"]
    for method, ms in timing_ms.items():
        logged[f"eval/ms_per_query/{method}"] = ms
    try:
        import wandb

        for path in figure_paths:
            logged[f"eval/figures/{path.stem}"] = wandb.Image(str(path))
    except ImportError:
        pass
    run.log(logged)
