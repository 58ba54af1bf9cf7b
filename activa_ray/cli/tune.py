"""Sweep hyperparameters with Ray Tune: `activa tune --config configs/tune/gauss2.yaml --out DIR [overrides]`.

Overrides `tune.x=...` set sweep settings (tune.num_samples=4); all others go to the base training
config (train.steps=500). Rerun with the same --out to resume an interrupted sweep.
"""

from __future__ import annotations

import argparse
import sys

from activa_ray.config import ConfigError
from activa_ray.train.tune import run_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activa tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="sweep YAML (base config, space, tune settings)")
    parser.add_argument("--out", required=True, help="sweep directory (resumed when it exists)")
    parser.add_argument("--num-cpus", type=int, help="logical CPUs of a local Ray (default: max(4, cores))")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        summary = run_sweep(args.config, args.out, args.overrides, num_cpus=args.num_cpus)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    best = summary["best"]
    print(f"{best['trials']} trials; table: {summary['out_dir'] / 'trials.csv'}")
    print(f"best {best['metric']} = {best['value']} with {best['params']}")
    print(f"best config: {summary['out_dir'] / 'best_config.yaml'} (checkpoint {best['checkpoint_path']})")
    return 0

