"""Evaluate an exported ACTIVA model on a split of shards against baselines and the noise floor,
or on a real interventional table.

    activa evaluate --model RUN_DIR/export|NAME --data SHARDS_DIR --out DIR \
        [--split test] [--prior-samples 1 50] [--seed S] [--max-models M] \
        [--methods baseline no_effect oracle_graph lingam ges_mec] [--device cuda] [--wandb offline]
    activa evaluate --model gauss8 --real TABLE.csv --out DIR [--max-obs 200] [--prior-samples 1 50] [--seed S]
    activa evaluate --model universal --protocol unit-free --out DIR [--protocol-scale 1.0] [--seed S]

Shards: writes DIR/results.md (the paper's tables 1-2 layout), results.csv, results.json,
results_by_role.json (descendants vs non-descendants of the target), per_pair.csv,
run_info.json and figures/*.png (activa_ray/eval/evaluate.py). A real table (the format of
activa_ray/eval/real.py): DIR/results.md, results.csv (per condition and method) and
results.json, against the baseline, no-effect and the floor. The unit-free protocol (for
value-conditioned models; activa_ray/eval/unitfree.py): DIR/protocol.md and protocol.json, the model
with S = 50 and S = 1 beside no effect, the conditional baseline, GES, DirectLiNGAM and the true graph
(each + least squares), the model's decoder given the true descendants, and the floor. A bad input: one
line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from activa_ray.config import ConfigError, config_from_dict
from activa_ray.data.format import ShardError
from activa_ray.eval.baselines import BASELINES
from activa_ray.eval.evaluate import ACTIVA, EvaluationError, evaluate
from activa_ray.eval.real import MAX_OBS, RealDataError, evaluate_real, read_real_table, write_real_report
from activa_ray.eval.unitfree import DEFAULT_SETS, run_protocol, write_protocol_report
from activa_ray.model.io import ModelFileError
from activa_ray.logging import init_run
from activa_ray.predict import PredictError, load


def evaluate_real_table(args: argparse.Namespace) -> int:
    """--real: score the model on a real interventional table; 2 on a bad input."""
    try:
        evaluation = evaluate_real(
            load(args.model), read_real_table(args.real), max_obs=args.max_obs,
            prior_samples=args.prior_samples, permutations=args.permutations, seed=args.seed,
        )
    except (RealDataError, PredictError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = write_real_report(evaluation, args.out).resolve()
    wsd = {method: stats["wsd"]["mean"] for method, stats in evaluation.summary.items()}
    shown = ", ".join(f"{method} {value:.4f}" for method, value in wsd.items())
    print(f"evaluated {evaluation.per_condition['condition'].nunique()} conditions: WSD {shown}; report {report}")
    return 0


def evaluate_unit_free(args: argparse.Namespace) -> int:
    """--protocol unit-free: score a value-conditioned model on fresh SCMs in arbitrary units; 2 on a bad input."""
    if args.protocol_scale <= 0:
        print(f"error: --protocol-scale must be > 0; got {args.protocol_scale}", file=sys.stderr)
        return 2
    try:
        predictor = load(args.model)
    except PredictError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not predictor.value_encoded:
        print(f"error: {args.model} answers only the values of its table {predictor.intervention_values}; the "
              "unit-free protocol asks do(X = mean ± 2 SD) and needs a value-conditioned model", file=sys.stderr)
        return 2
    names = [spec.name for spec in DEFAULT_SETS]
    unknown = sorted(set(args.protocol_sets or []) - set(names))
    if unknown:
        print(f"error: --protocol-sets {unknown}: the protocol's sets are {names}", file=sys.stderr)
        return 2
    sets = [dataclasses.replace(spec, models=max(2, round(spec.models * args.protocol_scale)))
            for spec in DEFAULT_SETS if not args.protocol_sets or spec.name in args.protocol_sets]
    counts = sorted(set(args.prior_samples), reverse=True)
    known = None
    if args.reuse_references:
        try:
            known = json.loads((Path(args.reuse_references) / "protocol.json").read_text())
        except (OSError, ValueError) as err:
            print(f"error: --reuse-references {args.reuse_references}: no readable protocol.json ({err})", file=sys.stderr)
            return 2
    results = run_protocol(predictor, sets, counts, seed=args.seed, known=known)
    header = (f"# {args.model}: the unit-free protocol\n\n`activa evaluate --model {args.model} --protocol "
              f"unit-free --protocol-scale {args.protocol_scale:g} --seed {args.seed} --out OUT`")
    print(f"report {write_protocol_report(results, args.out, header).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`activa evaluate --model RUN_DIR/export --data SHARDS_DIR --out DIR [options]`."""
    parser = argparse.ArgumentParser(
        prog="activa evaluate",
        description="Evaluate an exported ACTIVA model against baselines and the noise floor.",
    )
    parser.add_argument("--model", required=True, help="an exported model directory (RUN_DIR/export) or a shipped model's name (gauss8)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="shard root written by `activa generate`")
    source.add_argument("--real", help="a real interventional table, .csv or .parquet (format: activa_ray/eval/real.py)")
    source.add_argument("--protocol", choices=["unit-free"], help="fresh SCMs in arbitrary units, do(X = mean ± 2 SD), "
                        "scored per variable in SD units against every reference (value-conditioned models)")
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
    parser.add_argument("--max-obs", type=int, default=MAX_OBS, help=f"--real: observational rows given to the model (default: {MAX_OBS})")
    parser.add_argument("--protocol-scale", type=float, default=1.0,
                        help="--protocol: multiply every set's model count (default 1: 100 models at d = 5 and 8, 25 at d = 20)")
    parser.add_argument("--protocol-sets", nargs="+", help="--protocol: only these sets (default: all six, "
                        "d5/d8/d20 with Gaussian and Beta noise, e.g. d8_gauss)")
    parser.add_argument("--reuse-references", help="--protocol: an earlier protocol folder with the same sets and seed; "
                        "its references' scores are reused instead of recomputed")
    args = parser.parse_args(argv)
    if args.real is not None:
        return evaluate_real_table(args)
    if args.protocol is not None:
        return evaluate_unit_free(args)

    run = None
    try:
        if args.wandb != "disabled":
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

