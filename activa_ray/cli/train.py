"""Train ACTIVA with Ray Train: `activa train [--config FILE] [--out RUN_DIR] [a.b=c ...]`.

With no arguments: a small default (bivariate linear-Gaussian SCMs streamed from the simulator,
local Ray, W&B offline). Rerun with the same --out to resume from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time

from activa_ray.config import ConfigError, load_config


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

