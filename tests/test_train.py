"""Ray Train on a real local cluster (CPU): DDP, exact resume, fault recovery, W&B files, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from activa_ray.config import ConfigError, load_config
from activa_ray.model.activa import Activa
from activa_ray.model.io import load_model
from activa_ray.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from activa_ray.train.trainer import build_trainer, run_training
from wandb_records import wait_for_keys

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


def tiny(*overrides: str):
    return load_config(SMOKE, ["wandb.mode=offline", "train.val_models=4", *overrides])


def reports(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(ray_cluster, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp")
    cfg = tiny("train.workers=2", "train.cpus_per_worker=1", "train.steps=30", "train.log_every=10",
               "train.val_every=30", "train.ckpt_every=10", "train.keep_ckpts=2", "train.lr=0.003",
               "train.warmup_steps=5")
    return cfg, run_training(cfg, run_dir)


def test_two_worker_ddp_loss_falls_and_replicas_stay_identical(ddp_run):
    cfg, result = ddp_run
    history = reports(result["run_dir"])
    assert [r["step"] for r in history] == [10, 20, 30]
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    # Checksums of the parameters gathered from both ranks at every report agree exactly.
    assert all(r["train/param_divergence"] == 0.0 for r in history)
    assert all(r["train/nonfinite_grads"] == 0 for r in history)
    assert "val/loss" in history[-1]
    # Ray sets OMP_NUM_THREADS=1 in its workers; each of the two ranks gets half of this node's cores.
    assert all(r["train/torch_threads"] == max(1, os.cpu_count() // 2) for r in history)


def test_keeps_the_last_checkpoints_and_exports_a_model_that_loads_without_ray(ddp_run):
    cfg, result = ddp_run
    kept = sorted(p.name for p in (result["run_dir"] / "checkpoints").glob("step_*"))
    assert kept == ["step_00000020", "step_00000030"]
    exported, meta = load_model(result["export"])
    assert meta["step"] == 30 and meta["data"]["d"] == cfg.data.d
    assert meta["examples_seen_total"] == 30 * cfg.train.batch_size and "warm_start" not in meta
    from_checkpoint = Activa(cfg.model)
    load_checkpoint(latest_checkpoint(result["run_dir"] / "checkpoints"), from_checkpoint, None, asdict(cfg.model))
    exported.eval(), from_checkpoint.eval()
    obs = torch.randn(3, 20, cfg.data.d)
    targets = torch.eye(cfg.data.d)[:3]
    index = torch.zeros(3, dtype=torch.long)
    a = exported.predict(obs, targets, index, prior_samples=4, generator=torch.Generator().manual_seed(0))
    b = from_checkpoint.predict(obs, targets, index, prior_samples=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    assert all(p.is_file() and p.stat().st_size > 0 for p in result["figures"])
    # Three held-out models' predictions (d = 3: marginals), then the validation curve against the step.
    assert [p.name for p in result["figures"]] == [*(f"marginals_model{i}.png" for i in range(3)), "learning_curve.png"]


def test_wandb_offline_files_hold_the_logged_metrics(ddp_run):
    _, result = ddp_run
    run_files = sorted((result["run_dir"] / "wandb").glob("offline-run-*/run-*.wandb"))
    # Rank 0 only, and the figures logged after training resume the same run: one run id.
    assert len({path.stem for path in run_files}) == 1
    expected = {"train/loss", "train/kl", "lr", "train/examples_per_s", "train/grad_norm", "val/loss",
                "val/activa_mmd", "train/nonfinite_grads", "train/kl_dim0", "train/prior_weight_entropy"}
    keys = set(wait_for_keys(run_files, expected))
    assert expected <= keys
    for figure in ("figures/marginals_model0", "figures/learning_curve"):  # an image's keys: figures/NAME/...
        assert any(key.startswith(figure) for key in keys), figure


def _train_worker_pids() -> list[int]:
    """PIDs of this test session's Ray Train workers: children of our own raylet (other Ray instances
    on the machine keep theirs)."""
    import ray
    from ray._private import ray_constants

    raylet = ray._private.worker._global_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == raylet and b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                continue
    return pids


# A one-worker run that loses its worker once a report lies beyond the first checkpoint; W&B off (not checked).
KILLED = ("train.steps=60", "train.log_every=10", "train.ckpt_every=20", "train.val_every=60", "train.max_failures=2",
          "wandb.mode=disabled")


@pytest.fixture(scope="module")
def killed_run(ray_cluster, tmp_path_factory):
    """(config, run dir, the last step reported before the kill, run_training's result or {})."""
    run_dir = tmp_path_factory.mktemp("killed")
    cfg = tiny(*KILLED)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(run_training(cfg, run_dir)))
    thread.start()

    def last_step() -> int:
        path = run_dir / "metrics.jsonl"
        complete = path.read_text().split("\n")[:-1] if path.is_file() else []  # not a line being written
        return json.loads(complete[-1])["step"] if complete else 0

    # Kill once a report lies beyond the first checkpoint, so the restart must repeat some steps.
    deadline = time.time() + 120
    while last_step() <= cfg.train.ckpt_every and time.time() < deadline:
        time.sleep(0.1)
    pids = _train_worker_pids()
    assert pids, "no training worker process found"
    killed_after = last_step()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    return cfg, run_dir, killed_after, outcome


def test_a_killed_worker_restarts_from_the_last_checkpoint(killed_run):
    cfg, run_dir, killed_after, outcome = killed_run
    assert outcome, "training did not finish after the worker was killed"
    steps = [r["step"] for r in reports(run_dir)]
    assert steps[-1] == cfg.train.steps
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])
    # The restarted worker resumed from a checkpoint at most one interval behind the last report.
    assert steps[restart] >= killed_after - cfg.train.ckpt_every
    # Its first report is one interval past a checkpoint step: it did resume from one, not from step 0.
    assert (steps[restart] - cfg.train.log_every) % cfg.train.ckpt_every == 0 and steps[restart] > cfg.train.log_every


def test_a_stopped_run_resumes_with_the_same_losses(killed_run, tmp_path):
    """Stopped between two checkpoints, then rerun with the same RUN_DIR, a run reports at every step the
    loss the killed run reported last there (bit-identical: data and randomness are functions of (seed, step))."""
    _, killed_dir, _, outcome = killed_run
    assert outcome, "the reference (killed) run did not finish"
    run_training(tiny(*KILLED, "train.stop_at_step=30"), tmp_path)
    assert reports(tmp_path)[-1]["step"] == 30
    run_training(tiny(*KILLED), tmp_path)
    reference = {r["step"]: r["train/loss"] for r in reports(killed_dir)}  # a repeated step's last report wins
    resumed = {r["step"]: r["train/loss"] for r in reports(tmp_path)}
    assert sorted(resumed) == [10, 20, 30, 40, 50, 60]
    assert resumed == reference


def test_two_node_local_cluster_trains(tmp_path):
    """Two Ray nodes of 2 CPUs each; workers of 1.5 CPUs force one DDP rank per node."""
    script = REPO / "tests" / "two_node_training.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["nodes"] == 2 and summary["step"] == 10
    assert summary["param_divergence"] == 0.0


def test_a_warm_started_run_starts_from_the_export_and_counts_its_examples(ray_cluster, tmp_path, ddp_run):
    source_cfg, source = ddp_run
    cfg = tiny("wandb.mode=disabled", f"train.init_from={source['export']}", "train.steps=2", "train.log_every=2",
               "train.val_every=2", "train.ckpt_every=2", "train.lr=1e-12", "train.warmup_steps=0")
    result = run_training(cfg, tmp_path / "run")
    warm, meta = load_model(result["export"])
    seen_before = 30 * source_cfg.train.batch_size
    assert meta["warm_start"] == {"from": str(source["export"]), "examples_seen": seen_before}
    assert meta["examples_seen_total"] == seen_before + 2 * cfg.train.batch_size
    # Two steps at a vanishing learning rate leave the source's weights.
    exported, _ = load_model(source["export"])
    for name, tensor in exported.state_dict().items():
        torch.testing.assert_close(warm.state_dict()[name], tensor, rtol=0, atol=1e-6)


def test_training_from_shards_through_ray_data(ray_cluster, tmp_path):
    from activa_ray.data.generate import generate

    data_cfg = tiny(f"data.dir={tmp_path / 'data'}")
    generate(data_cfg, tmp_path / "data", progress=False)
    cfg = tiny("wandb.mode=disabled", "data.source=shards", f"data.dir={tmp_path / 'data'}", "train.steps=6",
               "train.log_every=3", "train.val_every=6", "train.ckpt_every=6")
    result = run_training(cfg, tmp_path / "run")
    history = reports(result["run_dir"])
    assert [r["step"] for r in history] == [3, 6]
    assert np.isfinite(history[-1]["train/loss"])


def test_run_training_refuses_a_bad_config_before_making_the_run_directory(tmp_path):
    bad = tiny()
    bad.train.batch_size = -3  # set by hand: load_config's checks never saw it
    with pytest.raises(ConfigError, match=r"^train\.batch_size=-3: must be >= 1$"):
        run_training(bad, tmp_path / "run")
    with pytest.raises(ConfigError, match="no manifest.json"):
        run_training(tiny("data.source=shards", f"data.dir={tmp_path / 'nothing'}"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_clear_errors_for_missing_shards_and_foreign_checkpoints(ray_cluster, tmp_path, ddp_run):
    with pytest.raises(ConfigError, match="no manifest.json"):
        build_trainer(tiny("data.source=shards", f"data.dir={tmp_path / 'nothing'}"), tmp_path)
    _, result = ddp_run
    other_model = tiny("model.embed_dim=8")
    with pytest.raises(ConfigError, match="another model config"):
        build_trainer(other_model, result["run_dir"])
    with pytest.raises(CheckpointError, match="model.embed_dim"):
        load_checkpoint(latest_checkpoint(result["run_dir"] / "checkpoints"), Activa(other_model.model), None,
                        asdict(other_model.model))
