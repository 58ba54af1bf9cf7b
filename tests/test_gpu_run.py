"""bench/gpu_run.sh --dry-run: every stage of the GPU-loan command at toy size on CPU, as a subprocess."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from activa_ray.model.io import load_model

REPO = Path(__file__).resolve().parent.parent


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_run_dry_run(tmp_path, ray_cluster):
    out = tmp_path / "out"
    # Its Ray Train step joins the session's Ray (as under `ray job submit`) instead of starting a second one.
    done = run(["--dry-run", "--out", str(out)], ray_address=ray_cluster.get_runtime_context().gcs_address)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    names = {str(p) for p in files}
    assert {"checks.txt", "throughput.jsonl", "metrics.jsonl", "summary.json", "gpu_run.log",
            "export/model.safetensors", "export/config.json"} <= names, names
    assert len(files) <= 8
    for path in files:
        assert len(path.parts) - 1 <= 2, path
        assert (out / path).stat().st_size <= 16 * 2**20, path

    checks = (out / "checks.txt").read_text()
    assert "dry run: the CUDA checks run on the CPU" in checks
    lines = [line for line in checks.splitlines() if not line.startswith("#")]
    assert not [line for line in lines if line.startswith("FAIL")], checks
    for name in ("train_step[gauss2]", "train_step[gauss8]", "train_step[sergio]", "Activa.predict fp32",
                 "metrics.all_metrics", "metrics.wasserstein", "train.loop.validate", "Ray Train step"):
        assert any(name in line for line in lines), (name, checks)

    rows = read_jsonl(out / "throughput.jsonl")
    assert rows[0]["kind"] == "matmul_peak" and rows[0]["peak_bf16_tflops"] > 0
    steps = [row for row in rows if row["kind"] == "train_step"]
    assert {(row["precision"], row["batch"]) for row in steps} == {(p, b) for p in ("bf16", "fp32") for b in (4, 8)}
    for row in steps:
        assert "error" not in row, row
        assert row["flops_per_step"] > 0 and row["examples_per_s"] > 0 and 0 < row["mfu"]

    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics and all(math.isfinite(m["train/loss"]) for m in metrics)
    assert [m["step"] for m in metrics] == sorted(m["step"] for m in metrics)
    assert all(0 <= m["train/data_wait_frac"] <= 1 and "sim/wait_frac" in m for m in metrics)
    assert any("val/loss" in m for m in metrics)

    summary = json.loads((out / "summary.json").read_text())
    train = summary["train"]
    assert train["steps"] == metrics[-1]["step"] and train["steps"] >= 3, train
    assert "output_problems" not in summary
    assert summary["modules_loaded"]["ray"] is False and summary["modules_loaded"]["wandb"] is False

    model, meta = load_model(out / "export")
    assert meta["gpu_run"] is True and meta["dry_run"] is True
    assert meta["steps"] == train["steps"] and meta["examples_seen"] == train["steps"] * train["batch"]
    assert meta["wall_s"] > 0 and meta["config"]["name"] == "gauss8"
    assert meta["data_stats"]["obs_std"] > 0  # predict's scale warning reads it
    assert model.cfg.embed_dim == 16  # the dry run's toy model

    # A second run continues from the export: its step counter, weights and examples carry on.
    again = tmp_path / "again"
    done = run(["--dry-run", "--skip-checks", "--skip-throughput", "--skip-ray", "--minutes", "0.05",
                "--init", str(out / "export"), "--out", str(again)])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    _, meta2 = load_model(again / "export")
    assert meta2["start_step"] == meta["step"] and meta2["step"] == meta["step"] + meta2["steps"] > meta["step"]
    assert meta2["examples_seen_total"] == meta["examples_seen_total"] + meta2["examples_seen"]
    assert meta2["init_kind"] == "export"
    assert read_jsonl(again / "metrics.jsonl")[0]["step"] > meta["step"]

    # The config's train.init_from (no --init) warm-starts a fresh run, as the Ray worker does.
    warm = tmp_path / "warm"
    done = run(["--dry-run", "--skip-checks", "--skip-throughput", "--skip-ray", "--minutes", "0.05",
                "--set", f"train.init_from={out / 'export'}", "--out", str(warm)])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    _, meta3 = load_model(warm / "export")
    assert meta3["start_step"] == 0 and meta3["init_kind"] == f"warm start {out / 'export'}"
    assert meta3["examples_seen_total"] == meta["examples_seen_total"] + meta3["examples_seen"]


def run(args: list[str], ray_address: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "RAY_ADDRESS")}
    env["PYTHON"] = sys.executable
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_run.sh"), *args], capture_output=True, text=True,
                          timeout=600, env=env)
