"""Evaluate an exported ACTIVA model on a split of shards against baselines and the noise floor.

    python jobs/evaluate.py --model RUN_DIR/export --data SHARDS_DIR --out DIR \
        [--split test] [--prior-samples 1 50] [--seed S] [--max-models M] \
        [--methods baseline no_effect oracle_graph lingam ges_mec] [--device cuda] [--wandb offline]

Writes DIR/results.md (the paper's tables 1-2 layout), results.csv, results.json,
results_by_role.json (descendants vs non-descendants of the target), per_pair.csv,
run_info.json and figures/*.png.
"""

import sys

from activa_ray.eval.evaluate import cli

if __name__ == "__main__":
    sys.exit(cli())
