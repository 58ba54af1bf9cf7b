"""Simulate causal models into Parquet shards with Ray (activa_ray/data/generate.py).

    activa generate --config configs/paper/gauss8.yaml --out DIR [--overwrite] [--num-cpus N] [--in-process] [a.b=c ...]
    ray job submit -- activa generate --config configs/paper/gauss8.yaml --out DIR data.n_models=1000000

A bad config or directory: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from activa_ray.config import ConfigError, load_config
from activa_ray.data.format import ShardError
from activa_ray.data.generate import generate


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def main(argv: list[str] | None = None) -> int:
    """`activa generate --config FILE --out DIR [--overwrite] [--num-cpus N] [--in-process] [a.b=c ...]`."""
    parser = argparse.ArgumentParser(
        prog="activa generate", description="Simulate causal models into Parquet shards with Ray."
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/paper/gauss8.yaml")
    parser.add_argument("--out", required=True, help="output directory (manifest.json, train/, val/, test/)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards written under another config")
    parser.add_argument("--num-cpus", type=int, default=None, help="shards written in parallel")
    parser.add_argument("--in-process", action="store_true",
                        help="write the shards in this process, without Ray (small evaluation sets)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=c, e.g. data.n_models=1000000")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        manifest = generate(cfg, args.out, args.overwrite, args.num_cpus, progress=not args.no_progress,
                            in_process=args.in_process)
    except (ConfigError, ShardError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(
        f"{split} {plural(s['models'], 'model')} in {plural(s['shards'], 'shard')}"
        for split, s in manifest["splits"].items()
    )
    print(f"wrote {Path(args.out).resolve()}: {counts}; manifest {Path(args.out).resolve() / 'manifest.json'}")
    return 0

