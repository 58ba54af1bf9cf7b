"""Ship a trained model inside the package under a name: `activa ship --export RUN/export --eval EVAL_DIR
--name gauss8 --purpose "..."`. It then loads with `activa_ray.predict.load("gauss8")` and `--model gauss8`."""

from __future__ import annotations

import argparse
import sys

from activa_ray.model.io import ModelFileError
from activa_ray.pretrained import ship


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activa ship", description=__doc__)
    parser.add_argument("--export", required=True, help="an exported model folder (RUN_DIR/export)")
    parser.add_argument("--eval", required=True, help="its evaluation folder (holds results.json)")
    parser.add_argument("--name", required=True, help="the name it loads by")
    parser.add_argument("--purpose", required=True, help="one line: what data it is for")
    args = parser.parse_args(argv)
    try:
        target = ship(args.export, args.name, args.eval, args.purpose)
    except (ModelFileError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"shipped {args.name}: {target}")
    return 0

