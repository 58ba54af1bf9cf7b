"""Train on a two-node local Ray cluster (ray.cluster_utils.Cluster); print a JSON summary.

Run by tests/test_train.py in its own process: a multi-node cluster cannot share the test session's Ray.
Usage: python tests/two_node_training.py RUN_DIR
"""

import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from activa_ray.config import load_config
from activa_ray.train.trainer import run_training

run_dir = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
cluster.add_node(num_cpus=2)
ray.init(address=cluster.address)
try:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml", [
        "wandb.mode=disabled", "train.workers=2", "train.cpus_per_worker=1.5", "train.steps=10",
        "train.log_every=5", "train.val_every=10", "train.ckpt_every=10", "train.val_models=4",
    ])
    result = run_training(cfg, run_dir)
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    print(json.dumps({"nodes": nodes, "step": last["step"], "param_divergence": last["train/param_divergence"]}))
finally:
    ray.shutdown()
    cluster.shutdown()
