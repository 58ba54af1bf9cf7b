"""Training speed through Ray Train (data wait, workers) and how memory and throughput grow with d."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import torch

from activa_ray.config import load_config
from activa_ray.model.activa import Activa
from activa_ray.model.config import PRESETS
from activa_ray.train.step import LossModule, build_optimizer, resolve_precision, streamed_examples, to_torch, train_step

REPO = Path(__file__).resolve().parents[1]


# Before this release a worker trained in fp32 with dropout 0.1 on the one thread Ray gives it (OMP_NUM_THREADS=1).
OLD_SETTINGS = ("train.precision=fp32", "model.dropout=0.1", "train.threads_per_worker=1")


def _ray_train(workers: int, settings: tuple[str, ...] = (), steps: int = 12, batch: int = 64) -> dict:
    """A Gauss 8 (table 4 size) run with streamed data; figures from the last, steady-state window."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, str(REPO / "jobs" / "train.py"), "--config", str(REPO / "configs" / "paper" / "gauss8.yaml"),
            "--out", tmp, "wandb.mode=disabled", f"train.workers={workers}", f"train.batch_size={batch}",
            f"train.steps={steps}", f"train.log_every={steps // 2}", f"train.val_every={steps}",
            f"train.ckpt_every={steps}", "train.val_models=8", "train.cpus_per_worker=1", *settings,
        ]
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        last = json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[-1])
    return {"workers": workers, "batch": batch, "precision": last["train/precision"],
            "examples_per_s": round(last["train/examples_per_s"], 2),
            "data_wait_frac": round(last["train/data_wait_frac"], 4)}


def train_gauss8() -> dict:
    """`activa train` end to end: steady-state examples/s and data wait with 1 and 2 DDP workers, with the
    settings before this release (fp32, dropout 0.1, one thread per worker) and with today's defaults."""
    runs = [_ray_train(workers, settings) for workers in (1, 2) for settings in (OLD_SETTINGS, ())]
    old, new = runs[0::2], runs[1::2]
    return {"runs": runs, "workers": [1, 2], "examples_per_s_old": [r["examples_per_s"] for r in old],
            "examples_per_s": [r["examples_per_s"] for r in new],
            "x_speedup": [round(n["examples_per_s"] / o["examples_per_s"], 2) for o, n in zip(old, new)],
            "data_wait_frac": [r["data_wait_frac"] for r in new]}


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




def _matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a size³ matmul in `dtype` on this CPU (all torch threads)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_step_gauss8(batch: int = 256, rounds: int = 3) -> dict:
    """One Gauss 8 table-4 training step (configs/paper/gauss8.yaml data, hybrid objective, batch 256), two ways in
    one run: today's fp32 settings (fp32, dropout 0.1, SDPA) against the new defaults (precision auto,
    dropout 0, bf16 CPU attention path), alternated `rounds` times, best of each. MFU: the step's FLOPs
    (torch's flop counter) per second over the bf16 matmul peak measured in the same run."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_config(REPO / "configs" / "paper" / "gauss8.yaml")
    device = torch.device("cpu")
    examples = to_torch(streamed_examples(cfg, 0, 0, batch), device)
    setups = {"fp32": (replace(PRESETS["gauss8"], dropout=0.1), "fp32"),
              "new": (replace(PRESETS["gauss8"], dropout=0.0), resolve_precision("auto", device))}
    steps = {}
    for name, (model_cfg, precision) in setups.items():
        torch.manual_seed(0)
        model = Activa(model_cfg).train()
        loss_module = LossModule(model, cfg.train.prior_nll_weight)
        optimizer = build_optimizer(model, cfg)
        steps[name] = (lambda m=model, l=loss_module, o=optimizer, p=precision:
                       train_step(l, m, o, examples, 1e-4, p, 1.0))
        steps[name]()  # warm-up
    best = {name: min(_seconds(fn) for _ in range(rounds)) for name, fn in steps.items()}
    for _ in range(rounds - 1):  # interleave, so a burst of load elsewhere hits both alike
        for name, fn in steps.items():
            best[name] = min(best[name], _seconds(fn))
    with FlopCounterMode(display=False) as counter:
        steps["new"]()
    flops = counter.get_total_flops()
    peak_bf16, peak_fp32 = _matmul_peak(torch.bfloat16), _matmul_peak(torch.float32)
    return {
        "examples_per_s_fp32": round(batch / best["fp32"], 1),
        "examples_per_s": round(batch / best["new"], 1),
        "x_speedup": round(best["fp32"] / best["new"], 2),
        "mfu": round(flops / best["new"] / peak_bf16, 4),
        "gflop_per_step": round(flops / 1e9, 1),
        "peak_bf16_gflops": round(peak_bf16 / 1e9, 1),
        "peak_fp32_gflops": round(peak_fp32 / 1e9, 1),
        "precision": setups["new"][1],
        "batch": batch,
        "threads": torch.get_num_threads(),
    }


BENCHES = {"train_gauss8": train_gauss8, "train_scale_d": train_scale_d, "train_step_gauss8": train_step_gauss8}
