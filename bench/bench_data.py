"""Data benchmarks: the linear-SCM simulator against raw RNG and a naive loop, and the
end-to-end Ray generation job (1,000,000 d=8 models to Parquet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from activa_ray.data.config import LinearSCMConfig
from activa_ray.data.graphs import topological_order
from activa_ray.data.scm import simulate_linear

ROOT = Path(__file__).resolve().parent.parent
D, N_SAMPLES, MODELS_PER_CALL, REPEATS = 8, 30, 4000, 7


def _best_time(fn, repeats: int) -> tuple[float, float]:
    """Best wall time of `repeats` calls, and the CPU/wall ratio over all of them (1.0 = one core)."""
    best, wall, cpu = float("inf"), 0.0, 0.0
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        elapsed = time.perf_counter() - start
        best, wall, cpu = min(best, elapsed), wall + elapsed, cpu + time.process_time() - start_cpu
    return best, cpu / wall


def _naive_models(rng: np.random.Generator, n_models: int, cfg: LinearSCMConfig) -> None:
    """A generic SCM library's way: per model, per condition, per sample, per variable in
    causal order, x_j = sum over parents + a scalar noise draw."""
    from activa_ray.data.graphs import er_acyclify

    for _ in range(n_models):
        graph = er_acyclify(rng, 1, D, cfg.edge_prob)[0]
        weights = np.where(graph == 1, rng.uniform(cfg.weight_low, cfg.weight_high, (D, D)), 0.0)
        weights *= np.where(rng.random((D, D)) < 0.5, -1.0, 1.0)
        beta_params = rng.uniform(cfg.beta_param_low, cfg.beta_param_high, (2, D))
        order = topological_order(graph[None])[0][0]
        parents = [np.nonzero(graph[:, j])[0] for j in range(D)]
        for target in [None, *range(D)]:
            for _sample in range(N_SAMPLES):
                x = [0.0] * D
                for j in order:
                    if j == target:
                        x[j] = 5.0 + rng.normal(0.0, np.sqrt(cfg.jitter_var))
                    elif cfg.noise == "gauss":
                        x[j] = sum(weights[i, j] * x[i] for i in parents[j]) + rng.normal(0.0, cfg.noise_std)
                    else:
                        x[j] = sum(weights[i, j] * x[i] for i in parents[j]) + rng.beta(*beta_params[:, j])


def _scm_bench(noise: str) -> dict:
    cfg = LinearSCMConfig(noise=noise)
    rng = np.random.default_rng(0)
    shape = (MODELS_PER_CALL, D + 1, N_SAMPLES, D)  # obs + d interventions, as many numbers as the output
    if noise == "gauss":
        def draw_only():
            rng.standard_normal(shape, dtype=np.float32)
    else:
        a = rng.uniform(0.5, 2.0, (MODELS_PER_CALL, 1, 1, D))
        b = rng.uniform(0.5, 2.0, (MODELS_PER_CALL, 1, 1, D))

        def draw_only():
            rng.beta(a, b, size=shape)

    simulate_linear(rng, MODELS_PER_CALL, D, N_SAMPLES, cfg)  # warm-up
    ours, cpu_per_wall = _best_time(lambda: simulate_linear(rng, MODELS_PER_CALL, D, N_SAMPLES, cfg), REPEATS)
    draw, _ = _best_time(draw_only, REPEATS)
    naive_models = 5
    naive, _ = _best_time(lambda: _naive_models(rng, naive_models, cfg), 3)
    per_model = ours / MODELS_PER_CALL
    return {
        "models_per_s": round(MODELS_PER_CALL / ours),
        "x_rng": round(ours / draw, 2),
        "x_naive": round(naive / naive_models / per_model),
        "cpu_per_wall": round(cpu_per_wall, 2),
        "d": D,
        "n_samples": N_SAMPLES,
        "conditions": D + 1,
    }


def scm_gauss_d8() -> dict:
    return _scm_bench("gauss")


def scm_beta_d8() -> dict:
    return _scm_bench("beta")


def _process_tree(root_pid: int) -> list[int]:
    """root_pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; PSS splits shared pages (the object store, libraries)
    among the processes that map them, so PSS sums to the machine's real use."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    fields = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()[1:] if line.split()[-1] == "kB"}
    return fields.get("Rss", 0), fields.get("Pss", 0)


def generate_1m_d8() -> dict:
    """1,000,000 d=8 Gaussian models (gauss8 preset) to Parquet with Ray on all local cores;
    wall time and the peak memory of the job's whole process tree (driver, raylet, GCS, workers)."""
    n_models, models_per_shard = 1_000_000, 5_000
    out = Path(tempfile.mkdtemp(prefix="generate_1m_"))
    command = [
        sys.executable, str(ROOT / "jobs" / "generate.py"), "--config", str(ROOT / "configs" / "paper" / "gauss8.yaml"),
        "--out", str(out), "--no-progress", f"data.n_models={n_models}", f"data.models_per_shard={models_per_shard}",
    ]
    log = out / "job.log"  # a file, not a pipe: a full pipe would stall the job
    try:
        start = time.perf_counter()
        with open(log, "w") as log_file:
            job = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
            peak_rss = peak_pss = 0
            while job.poll() is None:
                usage = [_memory_kib(pid) for pid in _process_tree(job.pid)]
                peak_rss = max(peak_rss, sum(u[0] for u in usage))
                peak_pss = max(peak_pss, sum(u[1] for u in usage))
                time.sleep(0.5)
        seconds = time.perf_counter() - start
        if job.returncode != 0:
            raise RuntimeError(f"generate failed: {log.read_text()[-2000:]}")
        written = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(peak_pss / 2**20, 2),
        "peak_rss_sum_gib": round(peak_rss / 2**20, 2),
        "models_per_s": round(n_models / seconds),
        "gib_written": round(written / 2**30, 2),
        "models_per_shard": models_per_shard,
        "cpus": os.cpu_count(),
    }


BENCHES = {"scm_gauss_d8": scm_gauss_d8, "scm_beta_d8": scm_beta_d8, "generate_1m_d8": generate_1m_d8}
