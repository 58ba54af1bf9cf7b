"""Train ACTIVA with Ray Train: `activa train [--config FILE] [--out RUN_DIR] [a.b=c ...]`.

With no arguments: a small default (bivariate linear-Gaussian SCMs streamed from the simulator,
local Ray, W&B offline). Rerun with the same --out to resume from its latest checkpoint.
A config with `architecture: structure` (configs/universal.yaml) trains the structure model in this
process, without Ray (activa_ray/train/structure.py).
"""

from __future__ import annotations

import argparse
import sys
import time

from activa_ray.config import ConfigError, load_config, read_yaml


def train_structure_model(args: argparse.Namespace, started: float) -> int:
    """The structure model's run (no Ray); a bad config raises ConfigError for main to report."""
    from activa_ray.train.checkpoint import CheckpointError
    from activa_ray.train.structure import load_structure_run, train_structure

    run = load_structure_run(args.config, args.overrides)
    out = args.out or f"runs/{run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        train_structure(run, out, log=lambda line: print(line, flush=True))
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"trained {run.name} in {time.perf_counter() - started:.0f} s; export {out}/export; predict with "
          f"./run predict --model {out}/export --data TABLE.csv --target NAME --value V --out OUT")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activa train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (defaults < file < overrides)")
    parser.add_argument("--out", help="run directory (default: a new folder under runs/)")
    parser.add_argument("--num-cpus", type=int, help="logical CPUs of a local Ray (default: max(4, cores))")
    parser.add_argument("--ray-logs", action="store_true", help="show Ray's own worker log lines")
    parser.add_argument("overrides", nargs="*", help="config overrides such as train.steps=500")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.config and read_yaml(args.config).get("architecture") == "structure":
            return train_structure_model(args, started)
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # Imported once the config is good: torch and Ray take seconds to import, a typo should not wait for them.
    from activa_ray.train.checkpoint import CheckpointError
    from activa_ray.train.progress import summary
    from activa_ray.train.trainer import run_training

    try:
        result = run_training(cfg, args.out, num_cpus=args.num_cpus, ray_logs=args.ray_logs)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(result, started))
    return 0

