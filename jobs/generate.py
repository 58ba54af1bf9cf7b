"""Simulate causal models into Parquet shards with Ray.

    python jobs/generate.py --config configs/gauss8.yaml --out DIR [--overwrite] [--num-cpus N] [a.b=c ...]
    ray job submit -- python jobs/generate.py --config configs/gauss8.yaml --out DIR data.n_models=1000000
"""

import sys

from activa_ray.data.shards import generate_cli

if __name__ == "__main__":
    sys.exit(generate_cli())
