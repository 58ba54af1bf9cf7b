"""Reproduce one experiment of the paper: generate, train, evaluate (all resumable).

activa experiment --config configs/paper/gauss2.yaml --out results/gauss2
activa experiment --config configs/paper/sergio.yaml --out results/sergio --also-eval configs/paper/sergio_ood.yaml
"""

from __future__ import annotations

import argparse
import sys

from activa_ray.config import ConfigError, load_config
from activa_ray.data.format import ShardError
from activa_ray.eval.evaluate import EvaluationError
from activa_ray.experiment import run_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activa experiment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    # One file per flag (repeat it for more), so overrides after it stay overrides.
    parser.add_argument("--also-eval", action="append", default=[], metavar="CONFIG",
                        help="a further data config to evaluate on (repeatable)")
    parser.add_argument("--max-models", type=int, help="evaluate on the first M test models only")
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        outputs = run_experiment(cfg, args.out, args.also_eval, args.max_models, args.num_cpus)
    except (ConfigError, ShardError, EvaluationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0

