"""Training speed through Ray Train (data wait, workers) and how memory and throughput grow with d."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ray_train(workers: int, steps: int = 12, batch: int = 64) -> dict:
    """A Gauss 8 (table 4 size) run with streamed data; figures from the last, steady-state window."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, str(REPO / "jobs" / "train.py"), "--config", str(REPO / "configs" / "gauss8.yaml"),
            "--out", tmp, "wandb.mode=disabled", f"train.workers={workers}", f"train.batch_size={batch}",
            f"train.steps={steps}", f"train.log_every={steps // 2}", f"train.val_every={steps}",
            f"train.ckpt_every={steps}", "train.val_models=8", "train.cpus_per_worker=1",
        ]
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        last = json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[-1])
    return {"workers": workers, "batch": batch, "examples_per_s": round(last["train/examples_per_s"], 2),
            "data_wait_frac": round(last["train/data_wait_frac"], 4)}


def train_gauss8() -> dict:
    """Steady-state examples/s and share of step time waiting for data, with 1 and 2 DDP workers."""
    runs = [_ray_train(workers) for workers in (1, 2)]
    return {"runs": runs, "examples_per_s": [r["examples_per_s"] for r in runs],
            "data_wait_frac": [r["data_wait_frac"] for r in runs], "workers": [1, 2]}


SCALE_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time, torch
    from activa_ray.model.activa import Activa
    from activa_ray.model.config import PRESETS
    d, batch, n = int(sys.argv[1]), int(sys.argv[2]), 30
    torch.manual_seed(0)
    model = Activa(PRESETS["gauss8"])
    optimizer = torch.optim.NAdam(model.parameters(), lr=5e-4)
    obs, x = torch.randn(batch, n, d), torch.randn(batch, n, d)
    targets = torch.zeros(batch, d); targets[:, 0] = 1
    index = torch.zeros(batch, dtype=torch.long)
    def step():
        optimizer.zero_grad(); model.loss(obs, x, targets, index)["loss"].backward(); optimizer.step()
    step()
    start = time.perf_counter()
    for _ in range(2):
        step()
    seconds = (time.perf_counter() - start) / 2
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"d": d, "batch": batch, "examples_per_s": round(batch / seconds, 2), "peak_rss_gib": round(peak, 2)}))
""")


def train_scale_d() -> dict:
    """Gauss 8 model size at d = 8, 20, 50 (N = 30), forward + backward + step, each in a fresh process."""
    rows = []
    for d, batch in ((8, 64), (20, 64), (50, 16)):
        done = subprocess.run([sys.executable, "-c", SCALE_SCRIPT, str(d), str(batch)], check=True,
                              capture_output=True, text=True, cwd=REPO)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"rows": rows, "d": [r["d"] for r in rows], "batch": [r["batch"] for r in rows],
            "examples_per_s": [r["examples_per_s"] for r in rows], "peak_rss_gib": [r["peak_rss_gib"] for r in rows]}


BENCHES = {"train_gauss8": train_gauss8, "train_scale_d": train_scale_d}
