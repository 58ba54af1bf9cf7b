"""Evaluate an exported ACTIVA model on a split of shards, beside baselines and the noise floor.

For every (test model, condition) pair the truth is `int` (N samples). Each method predicts N
samples: ACTIVA's mixture with S prior samples for every S asked (`activa_s1`, `activa_s50`;
`activa` is the default S), the baselines (`baseline` = conditional MVN, `no_effect`,
`oracle_graph`, `lingam`, `ges_mec`) and the noise floor (`floor` = `int_ref`). Metrics are
computed over all variables and, separately, over the target's descendants and its
non-descendants (the other coordinates zeroed in both sample sets, which leaves every pairwise
distance, hence every metric, equal to the restricted one).

Outputs in `out_dir`: results.md, results.csv, results.json ({method: {metric: {mean, sem, n}}}),
results_by_role.json ({role: {method: ...}}), per_pair.csv, run_info.json, figures/*.png.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

import activa_ray
from activa_ray.data.shards import read_manifest, read_shard, shard_paths
from activa_ray.eval import figures
from activa_ray.eval.baselines import BASELINES, conditional_mvn
from activa_ray.eval.metrics import METRIC_NAMES, all_metrics, energy, mmd, wasserstein
from activa_ray.eval.report import (
    markdown_report,
    results_csv_rows,
    summarize,
    write_csv,
    write_json,
    write_text,
)

ROLES = ("all", "descendants", "non_descendants")
FLOOR = "floor"
ACTIVA = "activa"


class EvaluationError(ValueError):
    """Inputs the evaluation cannot use; the message names the file or option."""


# ---------------------------------------------------------------------------------------
# pairs, roles, value tables


def descendant_masks(graph: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """graph (P, d, d) with graph[p, i, j] = i -> j, targets (P, d) -> (descendants, non-descendants)
    (P, d) bool; the targets themselves are in neither."""
    reach = graph.astype(bool)
    for _ in range(graph.shape[-1]):  # transitive closure: paths of every length up to d
        reach = reach | (reach.astype(np.int32) @ graph.astype(np.int32) > 0)
    held = targets.astype(bool)
    below = (held[:, :, None] & reach).any(axis=1)  # (P, d)
    descendants = below & ~held
    return descendants, ~below & ~held


def model_value_index(values: np.ndarray, table: Sequence[float], source: str) -> np.ndarray:
    """Index of each nominal value (P,) in the model's table of intervention values."""
    table_arr = np.asarray(table, dtype=np.float64)
    match = np.isclose(np.asarray(values, dtype=np.float64)[:, None], table_arr[None, :], atol=1e-6)
    unknown = np.unique(np.asarray(values)[~match.any(axis=1)])
    if unknown.size:
        raise EvaluationError(
            f"{source}: intervention value(s) {unknown.tolist()} are not in the model's table {list(table)}; "
            "the model can only answer queries for the values it was trained on"
        )
    return match.argmax(axis=1)


def flatten_pairs(batch: dict, n_models: int | None = None) -> dict[str, np.ndarray]:
    """A model batch (M models x C conditions) -> one row per pair (P = M * C)."""
    models = batch["obs"].shape[0] if n_models is None else n_models
    conditions = batch["targets"].shape[1]

    def per_model(array: np.ndarray) -> np.ndarray:
        return np.repeat(array[:models], conditions, axis=0)

    def per_condition(array: np.ndarray) -> np.ndarray:
        return array[:models].reshape(models * conditions, *array.shape[2:])

    pairs = {
        "obs": per_model(batch["obs"]),
        "graph": per_model(batch["graph"]),
        "int": per_condition(batch["int"]),
        "targets": per_condition(batch["targets"]),
        "values": per_condition(batch["values"]),
        "condition": np.tile(np.arange(conditions), models),
        "model_id": per_model(batch["model_id"]) if "model_id" in batch else np.repeat(np.arange(models), conditions),
        "var_names": per_model(batch["var_names"]),
    }
    if "int_ref" in batch:
        pairs["int_ref"] = per_condition(batch["int_ref"])
    return pairs


def predict_samples(
    model: torch.nn.Module,
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    prior_samples: int,
    generator: torch.Generator,
    batch_size: int,
    device: torch.device,
    source: str = "data",
) -> np.ndarray:
    """N samples from ACTIVA's predicted mixture for every pair: (P, n, d) float32."""
    index = model_value_index(values, model.cfg.intervention_values, source)
    out = []
    for start in range(0, len(obs), batch_size):
        stop = start + batch_size
        # torch.tensor copies: shard arrays are read-only views of Arrow buffers.
        mixture = model.predict(
            torch.tensor(obs[start:stop], dtype=torch.float32, device=device),
            torch.tensor(targets[start:stop], dtype=torch.float32, device=device),
            torch.tensor(index[start:stop], dtype=torch.long, device=device),
            prior_samples=prior_samples,
            generator=generator,
            values=torch.tensor(values[start:stop], dtype=torch.float32, device=device),
        )
        out.append(mixture.sample(n, generator=generator).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, n, obs.shape[-1]), dtype=np.float32)


def role_metrics(
    truth: torch.Tensor,
    prediction: torch.Tensor,
    masks: dict[str, torch.Tensor],
    permutations: int,
    generator: torch.Generator,
) -> dict[str, dict[str, np.ndarray]]:
    """{role: {metric: (P,)}}; for a role, the other coordinates are zeroed in both sets, and
    pairs where the role has no variable are NaN (skipped)."""
    out = {}
    for role in ROLES:
        if role == "all":
            x, y, present = truth, prediction, None
        else:
            keep = masks[role][:, None, :]  # (P, 1, d)
            x, y = torch.where(keep, truth, 0.0), torch.where(keep, prediction, 0.0)
            present = masks[role].any(dim=1)
        values = all_metrics(x, y, permutations=permutations, generator=generator)
        out[role] = {
            name: (torch.where(present, v, torch.nan) if present is not None else v).double().cpu().numpy()
            for name, v in values.items()
        }
    return out


# ---------------------------------------------------------------------------------------
# inputs


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
    point_mass = bool(manifest.get("point_mass_interventions", kind == "sergio"))
    jitter_var = float((config.get("linear") or {}).get("jitter_var", 0.1))
    return point_mass, jitter_var, int(d)


# ---------------------------------------------------------------------------------------
# the evaluation


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
    """Evaluate and write the report files; returns {"results", "by_role", "failures", "timing_ms", ...}."""
    from activa_ray.model.io import load_model

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    methods = _check_methods(methods)
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

    seeds = np.random.SeedSequence(seed)
    activa_seed, baseline_seed, metric_seed = seeds.spawn(3)
    activa_generators = {
        s: torch.Generator(torch_device).manual_seed(int(child.generate_state(1)[0]))
        for s, child in zip(counts, activa_seed.spawn(len(counts)))
    }
    baseline_rng = np.random.default_rng(baseline_seed)
    metric_generator = torch.Generator(torch_device).manual_seed(int(metric_seed.generate_state(1)[0]))

    activa_names = {s: f"{ACTIVA}_s{s}" for s in counts}
    per_pair: dict[str, dict[str, list[np.ndarray]]] = {}  # method -> role/metric -> chunks
    meta_rows: dict[str, list[np.ndarray]] = {"model_id": [], "condition": [], "targets": [], "values": []}
    failures: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    kept: list[dict] = []  # samples of the first `figure_models` models, for the figures
    has_floor = True
    remaining = max_models
    total_pairs = 0

    listed = (manifest.get("splits", {}).get(split) or {}).get("models")
    bar = tqdm(total=min(x for x in (listed, max_models) if x is not None) if (listed or max_models) else None,
               unit="model", desc=f"evaluate {split}", disable=not progress)
    for path in paths:
        if remaining is not None and remaining <= 0:
            break
        batch = read_shard(path)
        if batch["obs"].shape[-1] != d:
            raise EvaluationError(f"{path}: d={batch['obs'].shape[-1]}, but {data_dir / 'manifest.json'} says d={d}")
        models = len(batch["obs"]) if remaining is None else min(len(batch["obs"]), remaining)
        if models == 0:
            continue
        pairs = flatten_pairs(batch, models)
        has_floor = has_floor and "int_ref" in pairs
        n = pairs["int"].shape[1]
        predictions: dict[str, np.ndarray] = {}
        for s in counts:
            started = time.perf_counter()
            predictions[activa_names[s]] = predict_samples(
                model, pairs["obs"], pairs["targets"], pairs["values"], n, s, activa_generators[s], batch_size, torch_device, str(path)
            )
            seconds[activa_names[s]] = seconds.get(activa_names[s], 0.0) + time.perf_counter() - started
        for name in methods:
            extra = {"graph": pairs["graph"]} if name == "oracle_graph" else {}
            if name in ("lingam", "ges_mec"):
                extra["ray_tasks"] = ray_tasks
            result = BASELINES[name](
                pairs["obs"], pairs["targets"], pairs["values"], n, baseline_rng, point_mass=point_mass, jitter_var=jitter_var, **extra
            )
            predictions[name] = result.samples
            failures[name] = failures.get(name, 0) + result.failures
            seconds[name] = seconds.get(name, 0.0) + result.seconds
            errors.setdefault(name, []).extend(
                f"model {pairs['model_id'][p]} condition {pairs['condition'][p]}: {msg}" for p, msg in result.errors.items()
            )
        if has_floor:
            predictions[FLOOR] = pairs["int_ref"]

        descendants, non_descendants = descendant_masks(pairs["graph"], pairs["targets"])
        masks = {
            "descendants": torch.as_tensor(descendants, device=torch_device),
            "non_descendants": torch.as_tensor(non_descendants, device=torch_device),
        }
        truth = torch.tensor(pairs["int"], dtype=torch.float32, device=torch_device)
        for name, samples in predictions.items():
            prediction = torch.tensor(samples, dtype=torch.float32, device=torch_device)
            computed = role_metrics(truth, prediction, masks, permutations, metric_generator)
            slot = per_pair.setdefault(name, {})
            for role, values in computed.items():
                for metric, array in values.items():
                    slot.setdefault(f"{role}/{metric}", []).append(array)
        meta_rows["model_id"].append(pairs["model_id"])
        meta_rows["condition"].append(pairs["condition"])
        meta_rows["targets"].append(np.array(["+".join(pairs["var_names"][p][pairs["targets"][p].astype(bool)]) for p in range(len(pairs["obs"]))]))
        meta_rows["values"].append(pairs["values"])
        conditions = batch["targets"].shape[1]
        for m in range(min(models, figure_models - len(kept))):
            rows = slice(m * conditions, (m + 1) * conditions)
            kept.append({
                "model_id": int(pairs["model_id"][rows.start]),
                "obs": pairs["obs"][rows.start],
                "truth": pairs["int"][rows],
                "targets": pairs["targets"][rows],
                "values": pairs["values"][rows],
                "var_names": list(pairs["var_names"][rows.start]),
                "predictions": {name: samples[rows] for name, samples in predictions.items() if name != FLOOR},
            })
        total_pairs += len(pairs["obs"])
        if remaining is not None:
            remaining -= models
        bar.update(models)
    bar.close()
    if total_pairs == 0:
        raise EvaluationError(f"split {split!r} of {data_dir} holds no models to evaluate")

    # The default S is reported again as plain `activa`.
    per_pair[ACTIVA] = per_pair[activa_names[default_prior_samples]]
    seconds[ACTIVA] = seconds[activa_names[default_prior_samples]]
    order = [ACTIVA] + [activa_names[s] for s in counts] + methods + ([FLOOR] if has_floor else [])
    arrays = {name: {key: np.concatenate(chunks) for key, chunks in per_pair[name].items()} for name in order}

    def table(role: str) -> dict:
        return {name: summarize({m: arrays[name][f"{role}/{m}"] for m in METRIC_NAMES}) for name in order}

    results = table("all")
    by_role = {role: table(role) for role in ROLES[1:]}
    timing_ms = {name: 1000.0 * seconds[name] / total_pairs for name in order if name in seconds}
    labels = {ACTIVA: f"activa (S={default_prior_samples})", **{v: f"activa, S={s}" for s, v in activa_names.items()},
              "baseline": "baseline (conditional MVN)", FLOOR: "noise floor"}
    header = {
        "model": str(Path(model_dir).resolve()),
        "data": f"{data_dir.resolve()} (split {split}, kind {manifest.get('kind')}, d={d})",
        "pairs": f"{total_pairs} (model, condition) pairs",
        "samples per pair": int(n),
        "permutations": permutations,
        "seed": seed,
    }
    if not has_floor:
        header["noise floor"] = f"not available: split {split!r} has no int_ref"

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    write_json(out_dir / "results_by_role.json", by_role)
    write_csv(out_dir / "results.csv", ["method", "role", "metric", "mean", "sem", "n", "failures"], results_csv_rows(results, by_role, failures))
    # The markdown shows the default S once (as `activa`); the JSON keeps both names for scripts.
    duplicate = activa_names[default_prior_samples]

    def shown(table: dict) -> dict:
        return {name: value for name, value in table.items() if name != duplicate}

    write_text(out_dir / "results.md", markdown_report(
        shown(results), {role: shown(t) for role, t in by_role.items()}, labels, failures, shown(timing_ms), header
    ))
    _write_per_pair(out_dir / "per_pair.csv", order, arrays, meta_rows)
    figure_paths = _figures(out_dir / "figures", kept, d, activa_names[default_prior_samples])
    info = {
        "package_version": activa_ray.__version__,
        "model_dir": str(model_dir),
        "model_meta": meta,
        "data_dir": str(data_dir),
        "split": split,
        "kind": manifest.get("kind"),
        "d": d,
        "pairs": total_pairs,
        "samples_per_pair": int(n),
        "prior_samples": counts,
        "default_prior_samples": default_prior_samples,
        "methods": order,
        "permutations": permutations,
        "seed": seed,
        "point_mass": point_mass,
        "jitter_var": jitter_var,
        "failures": failures,
        "errors": {name: msgs[:20] for name, msgs in errors.items() if msgs},
        "timing_ms_per_pair": timing_ms,
        "figures": [str(p.relative_to(out_dir)) for p in figure_paths],
    }
    write_json(out_dir / "run_info.json", info)
    if wandb_run is not None:
        _log_wandb(wandb_run, results, by_role, timing_ms, figure_paths)
    return {"results": results, "by_role": by_role, "failures": failures, "timing_ms": timing_ms, "pairs": total_pairs, "info": info}


def _write_per_pair(path: Path, order: list[str], arrays: dict, meta_rows: dict) -> None:
    meta = {key: np.concatenate(chunks) for key, chunks in meta_rows.items()}
    header = ["model_id", "condition", "targets", "value", "method", "role", *METRIC_NAMES]
    rows = []
    for name in order:
        for role in ROLES:
            columns = [arrays[name][f"{role}/{m}"] for m in METRIC_NAMES]
            for p in range(len(meta["model_id"])):
                rows.append([int(meta["model_id"][p]), int(meta["condition"][p]), meta["targets"][p], float(meta["values"][p]),
                             name, role, *(float(c[p]) for c in columns)])
    write_csv(path, header, rows)


def _figures(folder: Path, kept: list[dict], d: int, activa_default: str) -> list[Path]:
    """Marginal plots of every kept model; the paper's figure 2 too when d = 2."""
    written = []
    for entry in kept:
        predictions = entry["predictions"]
        names = np.asarray(entry["var_names"])
        condition_labels = [f"do({'+'.join(names[t.astype(bool)])}={v:g})" for t, v in zip(entry["targets"], entry["values"])]
        written.append(figures.marginals(
            entry["truth"], predictions, folder / f"marginals_model{entry['model_id']}.png",
            var_names=entry["var_names"], condition_labels=condition_labels, title=f"model {entry['model_id']}",
        ))
        targets = entry["targets"].astype(bool)
        if d != 2 or "baseline" not in predictions:
            continue
        # Paper figure 2: the first do(X) and the first do(Y) condition.
        do_x, do_y = np.flatnonzero(targets[:, 0] & ~targets[:, 1]), np.flatnonzero(targets[:, 1] & ~targets[:, 0])
        if len(do_x) and len(do_y):
            chosen = [do_x[0], do_y[0]]
            written.append(figures.figure2(
                entry["obs"], entry["truth"][chosen], predictions["baseline"][chosen], predictions[activa_default][chosen],
                folder / f"figure2_model{entry['model_id']}.png", var_names=entry["var_names"],
                value=float(entry["values"][chosen[0]]),
            ))
    return written


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


# ---------------------------------------------------------------------------------------
# validation during training


def validation_metrics(
    model: torch.nn.Module,
    batch: dict,
    prior_samples: int = 1,
    generator: torch.Generator | None = None,
    jitter_var: float = 0.1,
) -> dict[str, float]:
    """ACTIVA's and the conditional baseline's mean MMD / WSD / ERG on a small in-memory batch.

    `batch` is a model batch (obs, int, targets, values, graph, var_names ...); the model is put
    in eval mode for the call and restored after. Keys: activa_mmd, activa_wsd, activa_erg,
    baseline_*, and posterior_* (the decoder at the posterior mean, which sees the truth: the gap
    activa_* − posterior_* is what the prior has still to learn from the observational data).
    """
    pairs = flatten_pairs(batch)
    device = next(model.parameters()).device
    n = pairs["int"].shape[1]
    generator = generator if generator is not None else torch.Generator(device).manual_seed(0)
    was_training = model.training
    model.eval()
    try:
        activa = predict_samples(
            model, pairs["obs"], pairs["targets"], pairs["values"], n, prior_samples,
            generator, len(pairs["obs"]), device, "validation batch",
        )
        index = model_value_index(pairs["values"], model.cfg.intervention_values, "validation batch")
        posterior = model.reconstruct(
            *(torch.as_tensor(pairs[key], dtype=torch.float32, device=device) for key in ("obs", "int", "targets")),
            torch.as_tensor(index, dtype=torch.long, device=device),
        ).sample(n, generator=generator).float()
    finally:
        model.train(was_training)
    baseline = conditional_mvn(
        pairs["obs"], pairs["targets"], pairs["values"], n, np.random.default_rng(generator.initial_seed()),
        point_mass=model.cfg.point_mass_interventions, jitter_var=jitter_var,
    ).samples
    truth = torch.as_tensor(pairs["int"], dtype=torch.float32, device=device)
    out = {}
    for name, samples in (("activa", activa), ("baseline", baseline), ("posterior", posterior)):
        prediction = torch.as_tensor(samples, dtype=torch.float32, device=device)
        for metric, fn in (("mmd", mmd), ("wsd", wasserstein), ("erg", energy)):
            out[f"{name}_{metric}"] = float(torch.nanmean(fn(truth, prediction)).item())
    return out


# ---------------------------------------------------------------------------------------
# command line


def cli(argv: list[str] | None = None) -> int:
    """`python jobs/evaluate.py --model RUN_DIR/export --data SHARDS_DIR --out DIR [options]`."""
    import argparse
    import sys

    from activa_ray.config import ConfigError, config_from_dict
    from activa_ray.data.shards import ShardError
    from activa_ray.model.io import ModelFileError

    parser = argparse.ArgumentParser(
        prog="jobs/evaluate.py",
        description="Evaluate an exported ACTIVA model against baselines and the noise floor.",
    )
    parser.add_argument("--model", required=True, help="exported model directory (RUN_DIR/export)")
    parser.add_argument("--data", required=True, help="shard root written by jobs/generate.py")
    parser.add_argument("--out", required=True, help="output directory for results.* and figures/")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test, the one with int_ref)")
    parser.add_argument("--prior-samples", type=int, nargs="+", default=[1, 50], help="prior sample counts S (default: 1 50)")
    parser.add_argument("--default-prior-samples", type=int, default=1, help="S reported as plain 'activa' (default: 1, as the paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-models", type=int, default=None, help="evaluate only the first M models")
    parser.add_argument("--methods", nargs="+", default=["baseline"], help=f"baselines, from {list(BASELINES)} (default: baseline)")
    parser.add_argument("--permutations", type=int, default=100, help="energy permutation test permutations (default: 100)")
    parser.add_argument("--batch-size", type=int, default=256, help="queries per ACTIVA forward pass")
    parser.add_argument("--ray-tasks", type=int, default=0, help="run lingam / ges_mec as this many parallel Ray tasks")
    parser.add_argument("--figure-models", type=int, default=3, help="models drawn in figures/ (default: 3)")
    parser.add_argument("--device", default="cpu", help="torch device for ACTIVA and the metrics (cpu, cuda, cuda:1)")
    parser.add_argument("--wandb", default="disabled", choices=["auto", "online", "offline", "disabled"], help="log to W&B (default: disabled)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    run = None
    try:
        if args.wandb != "disabled":
            from activa_ray.train.wandb_logging import init_run

            run = init_run(config_from_dict({"name": "evaluate", "wandb": {"mode": args.wandb}}), args.out, job_type="evaluate")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise EvaluationError(f"--device {args.device}: no CUDA device is available here")
        outcome = evaluate(
            args.model, args.data, args.out, split=args.split, prior_samples=args.prior_samples,
            default_prior_samples=args.default_prior_samples, seed=args.seed, max_models=args.max_models,
            methods=args.methods, batch_size=args.batch_size, permutations=args.permutations,
            ray_tasks=args.ray_tasks, figure_models=args.figure_models, device=args.device,
            wandb_run=run, progress=not args.no_progress,
        )
    except (EvaluationError, ShardError, ModelFileError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if run is not None:
            run.finish()
    out = Path(args.out).resolve()
    activa, baseline = outcome["results"][ACTIVA]["mmd"]["mean"], outcome["results"].get("baseline", {}).get("mmd", {}).get("mean")
    summary = f"MMD activa {activa:.4f}" + (f", baseline {baseline:.4f}" if baseline is not None else "")
    print(f"evaluated {outcome['pairs']} (model, condition) pairs: {summary}; report {out / 'results.md'}")
    return 0
