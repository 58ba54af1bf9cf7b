"""One experiment end to end on the real local cluster: shards, training, evaluation with every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activa_ray.config import load_config
from activa_ray.data.kinds import ALL_BASELINES
from activa_ray.experiment import run_experiment

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]


def test_smoke_experiment_writes_every_table(ray_cluster, tmp_path):
    cfg = load_config(REPO / "configs" / "smoke.yaml", [
        "wandb.mode=disabled", "train.steps=10", "train.log_every=5", "train.val_every=10",
        "train.ckpt_every=10", "train.val_models=4",
    ])
    outputs = run_experiment(cfg, tmp_path, max_models=4)
    results = json.loads((outputs["eval"] / "results.json").read_text())
    assert set(results) >= {"activa", "activa_s1", "activa_s50", "floor", *ALL_BASELINES}
    for method in results:
        assert set(results[method]) >= {"mmd", "wsd", "erg", "perm_pass"}
    by_role = json.loads((outputs["eval"] / "results_by_role.json").read_text())
    assert set(by_role) == {"descendants", "non_descendants"}
    # Rerunning resumes: shards kept, the finished training is not repeated.
    before = (outputs["run"] / "metrics.jsonl").read_text()
    run_experiment(cfg, tmp_path, max_models=4)
    assert (outputs["run"] / "metrics.jsonl").read_text() == before
