"""Draw a learning curve: `activa curve --segment RUN/metrics.jsonl:BATCH [--segment ...:BATCH:warm]
--results EVAL/results.json --title "Gauss 8" --out curve.png`.

Each --segment is one stretch of one model's training in order: its metrics.jsonl and batch size, and
`:warm` for a run warm-started from the previous segment's export (its steps count from 0 again).
--results (an evaluation's results.json) adds the test split's baseline, no-effect and noise floor lines.
"""

from __future__ import annotations

import argparse
import sys

from activa_ray.eval.curves import Segment, learning_curve


def parse_segment(text: str) -> Segment:
    metrics, _, batch = text.removesuffix(":warm").rpartition(":")
    if not metrics or not batch.isdigit() or int(batch) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected METRICS.jsonl:BATCH or METRICS.jsonl:BATCH:warm")
    return Segment(metrics, int(batch), warm_start=text.endswith(":warm"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activa curve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segment", type=parse_segment, action="append", required=True,
                        help="METRICS.jsonl:BATCH[:warm], in training order (repeatable)")
    parser.add_argument("--results", help="an evaluation's results.json: the test split's reference lines")
    parser.add_argument("--title", default="learning curve")
    parser.add_argument("--out", required=True, help="the figure's path (.png)")
    args = parser.parse_args(argv)
    try:
        path = learning_curve(args.segment, args.results, args.title, args.out)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0

