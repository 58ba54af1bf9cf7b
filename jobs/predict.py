"""Predict an interventional distribution from an observational table with an exported ACTIVA model.

    python jobs/predict.py --model RUN_DIR/export --data obs.csv --target gene_3 --out pred/

Writes OUT/samples.csv (.parquet when the input is Parquet; the input's columns), OUT/summary.json
(per variable: mean, std, 5/50/95% quantiles, the effect summary; the mixture weights) and
OUT/marginals.png (observational vs predicted interventional marginals), and prints the effect
summary. The outputs are written to a temporary folder and moved into OUT only when all three
exist, so an error leaves OUT as it was. Any error: one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

OUTPUT_FILES = ("summary.json", "marginals.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="exported model directory (model.safetensors + config.json)")
    parser.add_argument("--data", required=True, help="observational table: .csv with a header row, or .parquet")
    parser.add_argument("--target", required=True, action="append",
                        help="column to intervene on; repeat for a multi-target intervention")
    parser.add_argument("--value", type=float, default=None,
                        help="intervention value, one of the model's table (default: its only value)")
    parser.add_argument("--samples", type=int, default=1000, help="samples to draw (default 1000)")
    parser.add_argument("--prior-samples", type=int, default=50, help="latent draws S from the prior (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", required=True, help="output directory (created; existing files of the same name replaced)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Predict and write the outputs; returns the printed effect summary and the warnings raised."""
    from activa_ray.predict import PredictError, load, read_table

    if args.samples < 1:
        raise PredictError(f"--samples must be >= 1; got {args.samples}")
    if args.prior_samples < 1:
        raise PredictError(f"--prior-samples must be >= 1; got {args.prior_samples}")
    data_path = Path(args.data)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PredictError(f"--out {out}: exists and is not a directory")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_table(data_path)
        predictor = load(args.model, device=args.device)
        target = args.target[0] if len(args.target) == 1 else args.target
        prediction = predictor.predict(table, target, args.value, prior_samples=args.prior_samples, seed=args.seed)
    messages = list(dict.fromkeys(str(warning.message) for warning in caught))

    samples = prediction.sample(args.samples, seed=args.seed)
    summary = prediction.summary(samples)
    summary.update({"model": str(args.model), "data": str(data_path), "samples": args.samples,
                    "seed": args.seed, "warnings": messages})
    samples_name = "samples.parquet" if data_path.suffix.lower() in (".parquet", ".pq") else "samples.csv"

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would otherwise become OUT's mode
    try:
        if samples_name.endswith(".parquet"):
            samples.to_parquet(staging / samples_name, index=False)
        else:
            samples.to_csv(staging / samples_name, index=False)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        prediction.plot_marginals(staging / "marginals.png", samples)
        if not out.exists():
            os.replace(staging, out)
        else:
            for name in (samples_name, *OUTPUT_FILES):
                os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return prediction.format_effects(), messages


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, messages = run(args)
    except (ValueError, OSError) as error:  # PredictError and the model's ModelFileError are ValueErrors
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # anything else is a bug, still reported in one line
        print(f"error: unexpected {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return 1
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
    print(report)
    print(f"wrote {args.out}/: samples, summary.json, marginals.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
