"""Predict an interventional distribution from an observational table with an exported ACTIVA model.

    activa predict --data obs.csv --target gene_3 --value 5 --out runs/pred    # the universal model
    activa predict --model RUN_DIR/export --data obs.csv --target gene_3 --out runs/pred

Writes OUT/samples.csv (.parquet when the input is Parquet; the input's columns), OUT/summary.json
(per variable: mean, std, 5/50/95% quantiles, the effect summary; the mixture weights) and
OUT/marginals.png (observational vs predicted interventional marginals), and prints the effect
summary. The outputs are written to a temporary folder and moved into OUT only when all three
exist, so an error leaves OUT as it was (activa_ray/predict/outputs.py). Bad input: one line on
stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="activa predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="exported model directory (model.safetensors + config.json) or a shipped model's name, "
                             "e.g. gauss8 (default: universal, any d, N, units and value)")
    parser.add_argument("--data", required=True, help="observational table: .csv with a header row, or .parquet")
    parser.add_argument("--target", required=True, action="append",
                        help="column to intervene on; repeat for a multi-target intervention")
    parser.add_argument("--value", type=float, default=None,
                        help="intervention value: any number for a value-encoded model such as universal; for a "
                             "paper preset one of its table (default: its only value)")
    parser.add_argument("--samples", type=int, default=1000, help="samples to draw (default 1000)")
    parser.add_argument("--prior-samples", type=int, default=50, help="latent draws S from the prior (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", required=True, help="output directory (created; existing files of the same name replaced)")
    parser.add_argument("--no-plot", action="store_true", help="skip marginals.png (saves ~1.5 s of matplotlib)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Check the flags, predict and write the outputs; returns the effect summary and the warnings raised."""
    # Imported here: --help and a mistyped flag answer at once, without loading torch.
    from activa_ray.predict import PredictError, predict_to_folder
    from activa_ray.pretrained import DEFAULT_MODEL

    if args.samples < 1:
        raise PredictError(f"--samples must be >= 1; got {args.samples}")
    if args.prior_samples < 1:
        raise PredictError(f"--prior-samples must be >= 1; got {args.prior_samples}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PredictError(f"--out {out}: exists and is not a directory")
    return predict_to_folder(args.model or DEFAULT_MODEL, args.data, args.target, out, value=args.value, samples=args.samples,
                             prior_samples=args.prior_samples, seed=args.seed, device=args.device,
                             plot=not args.no_plot)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, messages = run(args)
    except (ValueError, OSError) as error:  # PredictError and the model's ModelFileError are ValueErrors
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # anything else is a bug, still reported in one line
        print(f"error: unexpected {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return 1
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
    print(report)
    plot = "" if args.no_plot else ", marginals.png"
    print(f"wrote {Path(args.out)}/: samples, summary.json{plot}")  # Path drops a trailing slash
    return 0

