"""One prepared command for a short loan of one GPU (issue 15): checks, throughput and MFU, a timed training run.

    bash bench/gpu_run.sh [--preset gauss8|beta8|sergio|universal|gauss8_cpu|beta8_cpu] [--minutes 5]
                          [--batch 1024|auto] [--init DIR]
                          [--out DIR] [--set train.lr=0.001 ...]
    bash bench/gpu_run.sh --dry-run --out /tmp/gpu_dry      # every stage at toy size on CPU, seconds

Stages (each prints as it goes and writes its file at once, so a run cut short still leaves what it did):
  1. checks.txt       PASS/FAIL/SKIP per CUDA path, none aborting the rest: a bf16-autocast training step of
                      every preset in PRESETS, Activa.predict (fp32 and bf16 autocast), the evaluation metrics
                      on the device (checked against the same metrics on CPU), the loop's validation; at the
                      end, when `import ray` works, one Ray Train step (NCCL on a GPU, gloo on CPU).
  2. throughput.jsonl the Gauss 8 table-4 model (PRESETS["gauss8"], dropout 0) at batch 256, 1024, 4096 in bf16
                      and fp32: examples/s, s/step, FLOPs per step (FlopCounterMode), MFU against the bf16 matmul
                      peak measured in the same run, peak GPU memory; an OOM is recorded per setting.
  3. metrics.jsonl    a training run of configs/<preset>.yaml for a wall-clock budget through
  export/             `activa_ray.train.loop.run_steps` (the Ray worker's loop, without Ray), on models
                      simulated by a pool of processes (batch of step s = streamed_examples(cfg, 0, s, batch)),
                      cfg.train.steps set from the measured step time so the cosine schedule ends in time;
                      export/ holds model.safetensors + config.json (activa_ray.model.io.save_model).
  summary.json        what ran, how long, the files written. (gpu_run.log is the wrapper's copy of stdout.)

At most 8 files, none over 16 MiB, nothing deeper than two folders: what the device machine gives back.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TRAIN_PRESETS = ("gauss8", "beta8", "sergio", "universal", "gauss8_cpu", "beta8_cpu")
MAX_FILES, MAX_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2
EXPORT_DIR = "export"
# Dry run: the training stage's model and data at toy size (seconds on a 2-core CPU).
DRY_OVERRIDES = [
    "model.heads=2", "model.embed_dim=16", "model.hidden_dim=32", "model.encoder_layers=2", "model.decoder_layers=1",
    "data.n_samples=10", "train.warmup_steps=4", "train.log_every=2", "train.val_every=6", "train.ckpt_every=6",
    "train.val_models=2",
]


class Sizes:
    """Everything that differs between the real run and the dry run."""

    def __init__(self, dry: bool):
        self.dry = dry
        self.check_batch, self.check_samples, self.check_pairs = (4, 10, 6) if dry else (64, 30, 256)
        self.throughput_batches = (4, 8) if dry else (256, 1024, 4096)
        self.throughput_samples = 10 if dry else None  # None: the config's 30
        self.warmup_steps, self.min_timed_s, self.max_timed_steps = (1, 0.0, 2) if dry else (3, 1.5, 40)
        self.peak_size, self.peak_repeats = (256, 3) if dry else (8192, 10)
        self.calibration_steps = 3 if dry else 30
        self.default_train_s = 8.0 if dry else 300.0
        self.deadline_s = 600.0 if dry else 8.5 * 60  # the whole command, start to end
        self.tail_reserve_s = 60.0 if dry else 20.0  # after training: Ray check, audit


# ---------------------------------------------------------------------------------------------
# simulator processes


_WORKER_CFG = None


def _init_simulator(cfg_dict: dict) -> None:
    global _WORKER_CFG
    import torch

    from activa_ray.config import config_from_dict

    torch.set_num_threads(1)
    _WORKER_CFG = config_from_dict(cfg_dict, source="gpu_run simulator")


def _simulate_batch(step: int, batch: int) -> dict:
    from activa_ray.train.step import streamed_examples

    return streamed_examples(_WORKER_CFG, 0, step, batch)


class Prefetcher:
    """`next_examples(step)` for run_steps, computed `depth` steps ahead by a pool of simulator processes.

    The batch of step s is streamed_examples(cfg, 0, s, batch) whichever process made it, so a run is
    the same as with one process. `wait_s` sums the time the trainer waited for a batch.
    """

    def __init__(self, cfg, batch: int, processes: int, depth: int):
        from activa_ray.config import to_dict

        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        os.environ.update({k: "1" for k in saved})  # one thread per simulator process (inherited at spawn)
        try:
            # spawn: the parent may already hold a CUDA context, which a forked child must not inherit.
            self.pool = mp.get_context("spawn").Pool(processes, initializer=_init_simulator, initargs=(to_dict(cfg),))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.batch, self.depth, self.processes = batch, depth, processes
        self.pending: dict[int, object] = {}
        self.wait_s = 0.0
        self.calls: dict[int, float] = {}  # step -> time its batch was asked for (step timing)

    def prefetch(self, step: int) -> None:
        for s in range(step, step + self.depth):
            if s not in self.pending:
                self.pending[s] = self.pool.apply_async(_simulate_batch, (s, self.batch))

    def __call__(self, step: int) -> dict:
        now = time.perf_counter()
        self.calls[step] = now
        self.prefetch(step)
        examples = self.pending.pop(step).get()
        self.wait_s += time.perf_counter() - now
        return examples

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


# ---------------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    print(f"[gpu_run {time.strftime('%H:%M:%S')}] {message}", flush=True)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def release(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def preset_config(preset: str, overrides: list[str]):
    from activa_ray.config import load_config

    return load_config(REPO / "configs" / f"{preset}.yaml", overrides)


# ---------------------------------------------------------------------------------------------
# stage 1: checks


class Checks:
    """Runs named checks; each prints and appends one PASS/FAIL/SKIP line to checks.txt at once."""

    def __init__(self, path: Path):
        self.path = path
        self.results: list[dict] = []

    def record(self, status: str, name: str, seconds: float, detail: str) -> None:
        line = f"{status} {name} ({seconds:.1f} s): {detail}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")
        self.results.append({"status": status, "name": name, "seconds": round(seconds, 2), "detail": detail})

    def note(self, text: str) -> None:
        print(text, flush=True)
        with open(self.path, "a") as f:
            f.write(text + "\n")

    def run(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            detail = fn() or "ok"
            status = "PASS"
        except Exception as error:  # noqa: BLE001 -- a check reports every failure and the rest go on
            status, detail = "FAIL", f"{type(error).__name__}: {error}"
            traceback.print_exc()
        self.record(status, name, time.perf_counter() - start, detail)

    def skip(self, name: str, why: str) -> None:
        self.record("SKIP", name, 0.0, why)

    @property
    def failed(self) -> int:
        return sum(r["status"] == "FAIL" for r in self.results)


def check_preset_step(name: str, device, sizes: Sizes) -> str:
    import torch

    from activa_ray.model.activa import Activa
    from activa_ray.model.config import PRESETS
    from activa_ray.train.step import LossModule, build_optimizer, streamed_examples, to_torch, train_step

    cfg = preset_config(name, [f"data.n_samples={sizes.check_samples}"])
    torch.manual_seed(0)
    model = Activa(PRESETS[name]).to(device).train()
    optimizer = build_optimizer(model, cfg)
    batch = to_torch(streamed_examples(cfg, 0, 0, sizes.check_batch), device)
    result = train_step(LossModule(model, prior_nll_weight=1.0), model, optimizer, batch, 1e-4, "bf16", 1.0)
    loss = float(result.terms["loss"])
    if not math.isfinite(loss) or result.nonfinite_grads or not math.isfinite(result.grad_norm):
        raise RuntimeError(f"loss {loss}, grad norm {result.grad_norm}, {result.nonfinite_grads} non-finite grads")
    if any(not bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise RuntimeError("non-finite parameters after the optimizer step")
    return (f"loss {loss:.3f}, grad norm {result.grad_norm:.3f}, d={cfg.data.d}, batch {sizes.check_batch}, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters")


def predict_inputs(device, sizes: Sizes):
    import torch

    from activa_ray.model.activa import Activa
    from activa_ray.model.config import PRESETS
    from activa_ray.train.step import streamed_examples, to_torch

    cfg = preset_config("gauss8", [f"data.n_samples={sizes.check_samples}"])
    torch.manual_seed(0)
    model = Activa(replace(PRESETS["gauss8"], dropout=0.0)).to(device).eval()
    return model, to_torch(streamed_examples(cfg, 0, 0, sizes.check_pairs), device)


def check_predict(device, sizes: Sizes, state: dict, precision: str) -> str:
    import torch

    from activa_ray.train.step import autocast

    model, examples = predict_inputs(device, sizes)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad(), autocast(precision, device):
        mixture = model.predict(examples["obs"], examples["targets"], examples["value_index"], prior_samples=4,
                                generator=generator)
        samples = mixture.sample(sizes.check_samples, generator=generator).float()
    expected = tuple(examples["x"].shape)
    if tuple(samples.shape) != expected or samples.device.type != device.type:
        raise RuntimeError(f"samples {tuple(samples.shape)} on {samples.device}, expected {expected} on {device}")
    if not bool(torch.isfinite(samples).all()):
        raise RuntimeError("non-finite samples")
    if precision == "fp32":
        state["samples"], state["truth"] = samples, examples["x"]
    return f"{expected[0]} queries, 4 prior samples, mixture of {mixture.means.shape[1]} components, {samples.dtype}"


def check_metric(name: str, device, state: dict) -> str:
    import torch

    from activa_ray.eval import metrics

    if "samples" not in state:
        raise RuntimeError("no predictions to compare (the fp32 predict check failed)")
    x, y = state["samples"], state["truth"]
    if name == "all_metrics":
        on_device = metrics.all_metrics(x, y, permutations=100, generator=torch.Generator(device=device).manual_seed(0))
        on_cpu = metrics.all_metrics(x.cpu(), y.cpu(), permutations=100, generator=torch.Generator().manual_seed(0))
        compared = ("mmd", "wsd", "erg")  # perm_p depends on the device's random stream
        for key, value in on_device.items():
            if value.device.type != device.type or value.shape != (len(x),) or not bool(torch.isfinite(value).all()):
                finite = bool(torch.isfinite(value).all())
                raise RuntimeError(f"{key}: {tuple(value.shape)} on {value.device}, finite={finite}")
        state["all_metrics"] = on_device
    else:
        value = getattr(metrics, name)(x, y)
        key = {"mmd": "mmd", "wasserstein": "wsd", "energy": "erg"}[name]
        if value.device.type != device.type or not bool(torch.isfinite(value).all()):
            raise RuntimeError(f"{name}: on {value.device}, finite={bool(torch.isfinite(value).all())}")
        on_device = {key: value}
        on_cpu = {key: getattr(metrics, name)(x.cpu(), y.cpu())}
        compared = (key,)
        if "all_metrics" in state:  # the single metric agrees with all_metrics' value on the same device
            gap = float((value - state["all_metrics"][key]).abs().max())
            if gap > 1e-4 * (1 + float(value.abs().max())):
                raise RuntimeError(f"{name} differs from all_metrics['{key}'] by {gap:.3g}")
    gaps = {}
    for key in compared:
        a, b = on_device[key].double().cpu(), on_cpu[key].double()
        gaps[key] = float(((a - b).abs() / (1e-6 + b.abs())).max())
        if gaps[key] > 1e-3:
            raise RuntimeError(f"{key} on {device.type} differs from CPU by {gaps[key]:.3g} (relative)")
    means = ", ".join(f"{k} {float(on_device[k].mean()):.4f}" for k in compared)
    return f"{len(x)} pairs on {device.type}: {means}; max relative gap to CPU " + \
        ", ".join(f"{k} {g:.1e}" for k, g in gaps.items())


def check_validation(device, sizes: Sizes) -> str:
    import torch

    from activa_ray.model.activa import Activa
    from activa_ray.model.config import PRESETS
    from activa_ray.train.loop import validate, validation_set

    cfg = preset_config("gauss8", [f"data.n_samples={sizes.check_samples}", "train.val_models=4"])
    torch.manual_seed(0)
    model = Activa(replace(PRESETS["gauss8"], dropout=0.0)).to(device).train()
    values = validate(model, validation_set(cfg), cfg, device)
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"non-finite: {bad}")
    mmd = values.get("val/activa_mmd", float("nan"))
    return f"{len(values)} values, val/loss {values['val/loss']:.3f}, activa_mmd {mmd:.4f}"


def run_checks(checks: Checks, device, sizes: Sizes) -> None:
    from activa_ray.model.config import PRESETS

    where = device_name(device)
    if sizes.dry and device.type == "cpu":
        checks.note(f"# dry run: the CUDA checks run on the CPU, at toy size, so that they never rot ({where})")
    else:
        checks.note(f"# device: {where}")
    for name in PRESETS:
        checks.run(f"train_step[{name}] bf16 autocast on {device.type}",
                   lambda n=name: check_preset_step(n, device, sizes))
    state: dict = {}
    checks.run(f"Activa.predict fp32 on {device.type}", lambda: check_predict(device, sizes, state, "fp32"))
    checks.run(f"Activa.predict bf16 autocast on {device.type}", lambda: check_predict(device, sizes, state, "bf16"))
    for name in ("all_metrics", "mmd", "wasserstein", "energy"):
        checks.run(f"metrics.{name} on {device.type}", lambda n=name: check_metric(n, device, state))
    checks.run(f"train.loop.validate on {device.type}", lambda: check_validation(device, sizes))
    state.clear()
    release(device)


def ray_check(checks: Checks, device, out: Path, timeout_s: float) -> None:
    """One Ray Train step through the real worker (NCCL on a GPU), in a subprocess with a time limit."""
    try:
        import ray  # noqa: F401
    except ImportError as error:
        checks.skip("Ray Train step", f"Ray is not installed here ({error})")
        return
    if timeout_s < 20:
        checks.skip("Ray Train step", f"only {timeout_s:.0f} s left before the deadline")
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    start = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), "--ray-step", backend]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RAY_STEP ")]
        if done.returncode == 0 and lines:
            checks.record("PASS", f"Ray Train step ({backend})", time.perf_counter() - start, lines[-1][9:])
        else:
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            print("\n".join(tail), flush=True)
            checks.record("FAIL", f"Ray Train step ({backend})", time.perf_counter() - start,
                          f"exit {done.returncode}: {tail[-1] if tail else ''}")
    except subprocess.TimeoutExpired:
        checks.record("FAIL", f"Ray Train step ({backend})", time.perf_counter() - start,
                      f"no result in {timeout_s:.0f} s")


def ray_step(backend: str) -> int:
    """Child of `ray_check`: fit one step of the smoke config through build_trainer (the real Ray worker)."""
    import tempfile

    import ray

    from activa_ray.cluster import connect_or_start
    from activa_ray.config import load_config
    from activa_ray.train.trainer import build_trainer

    use_gpu = backend == "nccl"
    cfg = load_config(REPO / "configs" / "smoke.yaml", [
        "train.steps=1", "train.workers=1", f"train.use_gpu={str(use_gpu).lower()}", "train.log_every=1",
        "train.val_models=2", "train.max_failures=0", "wandb.mode=disabled", "data.source=stream",
    ])
    with tempfile.TemporaryDirectory(prefix="gpu_run_ray_") as tmp:
        connect_or_start(4)
        try:
            result = build_trainer(cfg, Path(tmp) / "run").fit()
        finally:
            ray.shutdown()
    if result.error:
        raise result.error
    metrics = result.metrics or {}
    if metrics.get("step") != 1:
        raise RuntimeError(f"expected a report at step 1, got {metrics.get('step')}")
    print(f"RAY_STEP step 1 on {backend}, train/loss {metrics.get('train/loss')}, "
          f"precision {metrics.get('train/precision')}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# stage 2: throughput


def matmul_peak(dtype, size: int, repeats: int, device) -> float:
    """Best FLOP/s of a size³ matmul in `dtype` on `device` (random data)."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / 3)
    return 2 * size**3 / best


def measure_setting(cfg, model_cfg, examples, precision: str, sizes: Sizes, device) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from activa_ray.model.activa import Activa
    from activa_ray.train.step import LossModule, build_optimizer, train_step

    torch.manual_seed(0)
    model = Activa(model_cfg).to(device).train()
    loss_module = LossModule(model, cfg.train.prior_nll_weight)
    optimizer = build_optimizer(model, cfg)

    def step():
        return train_step(loss_module, model, optimizer, examples, cfg.train.lr, precision, cfg.train.grad_clip)

    for _ in range(sizes.warmup_steps):
        step()
    synchronize(device)
    timed, start = 0, time.perf_counter()
    while timed < sizes.max_timed_steps and (timed < 5 or time.perf_counter() - start < sizes.min_timed_s):
        result = step()  # train_step reads the gradient norm: every step ends synchronised
        timed += 1
    synchronize(device)
    seconds = (time.perf_counter() - start) / timed
    with FlopCounterMode(display=False) as counter:
        step()
    synchronize(device)
    return {"s_per_step": seconds, "steps_timed": timed, "flops_per_step": counter.get_total_flops(),
            "loss": float(result.terms["loss"])}


def run_throughput(path: Path, device, sizes: Sizes, selected_precision: str) -> dict[int, float]:
    """Stage 2; returns {batch: examples/s} of `selected_precision`, for --batch auto."""
    import torch

    from activa_ray.model.config import PRESETS
    from activa_ray.train.step import streamed_examples, to_torch

    overrides = [f"data.n_samples={sizes.throughput_samples}"] if sizes.throughput_samples else []
    cfg = preset_config("gauss8", overrides)
    model_cfg = replace(PRESETS["gauss8"], dropout=0.0)
    peaks = {name: matmul_peak(dtype, sizes.peak_size, sizes.peak_repeats, device)
             for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    common = {"device": device_name(device), "model": "PRESETS['gauss8'] dropout 0", "d": cfg.data.d,
              "n_samples": cfg.data.n_samples, "prior_nll_weight": cfg.train.prior_nll_weight,
              "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32), "dry_run": sizes.dry}
    peak_line = {"kind": "matmul_peak", "size": sizes.peak_size, "peak_bf16_tflops": round(peaks["bf16"] / 1e12, 2),
                 "peak_fp32_tflops": round(peaks["fp32"] / 1e12, 2), **common}
    append_jsonl(path, peak_line)
    log(json.dumps(peak_line))
    rates: dict[int, float] = {}
    examples_cache: dict[int, dict] = {}
    for precision in ("bf16", "fp32"):
        for batch in sizes.throughput_batches:
            row = {"kind": "train_step", "precision": precision, "batch": batch}
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                if batch not in examples_cache:
                    examples_cache[batch] = streamed_examples(cfg, 0, 0, batch)
                figures = measure_setting(cfg, model_cfg, to_torch(examples_cache[batch], device), precision, sizes,
                                          device)
                seconds, flops = figures["s_per_step"], figures["flops_per_step"]
                row.update({
                    "examples_per_s": round(batch / seconds, 1), "s_per_step": round(seconds, 5),
                    "flops_per_step": flops, "tflops_per_s": round(flops / seconds / 1e12, 3),
                    "mfu": round(flops / seconds / peaks["bf16"], 4),
                    "mfu_vs_fp32_peak": round(flops / seconds / peaks["fp32"], 4),
                    "steps_timed": figures["steps_timed"], "loss": round(figures["loss"], 4),
                })
                if precision == selected_precision:
                    rates[batch] = batch / seconds
            except Exception as error:  # noqa: BLE001 -- an OOM (or anything) in one setting leaves the others
                first_line = (str(error).splitlines() or [""])[0][:300]
                row["error"] = ("OOM: " if is_oom(error) else f"{type(error).__name__}: ") + first_line
                error = None  # drop the traceback's frames (and their tensors) before emptying the cache
            if device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            release(device)
            row.update(common)
            append_jsonl(path, row)
            log(json.dumps({k: v for k, v in row.items() if k not in common}))
    return rates


# ---------------------------------------------------------------------------------------------
# stage 3: training


def init_start(path: str | None, cfg) -> tuple[int, int, str]:
    """(step to start at, examples seen before, kind) of --init: an export, a checkpoint, or a Ray run dir."""
    from activa_ray.model.io import read_export
    from activa_ray.pretrained import export_examples_seen, resolve
    from activa_ray.train.checkpoint import examples_seen, latest_checkpoint, read_checkpoint_state

    if not path and cfg.train.init_from:  # the config's warm start, as the Ray worker does it
        meta = read_export(resolve(cfg.train.init_from))["meta"]
        return 0, export_examples_seen(meta), f"warm start {cfg.train.init_from}"
    if not path:
        return 0, 0, "none"

    directory = Path(path)
    if (directory / "config.json").is_file() and (directory / "model.safetensors").is_file():
        meta = read_export(directory)["meta"]
        return int(meta.get("step", 0)), export_examples_seen(meta), "export"
    checkpoint = directory if (directory / "state.json").is_file() else (
        latest_checkpoint(directory / "checkpoints") or latest_checkpoint(directory))
    if checkpoint is None:
        raise SystemExit(f"--init {path}: neither an exported model (config.json + model.safetensors) nor a "
                         "training checkpoint (state.json), nor a run dir holding checkpoints/step_*")
    state = read_checkpoint_state(checkpoint)
    batch = state["config"].get("train", {}).get("batch_size", cfg.train.batch_size)
    step = int(state["step"])
    return step, examples_seen(step, int(batch), state.get("extra", {})), f"checkpoint {checkpoint}"


def load_init(path: str, model, optimizer, cfg) -> None:
    """Load --init's weights (and, from a training checkpoint, the optimizer state) into the replica."""
    from activa_ray.model.io import load_model
    from activa_ray.train.checkpoint import latest_checkpoint, load_checkpoint

    directory = Path(path)
    if (directory / "config.json").is_file() and (directory / "model.safetensors").is_file():
        loaded, _ = load_model(directory)
        differing = sorted(k for k, v in asdict(loaded.cfg).items() if asdict(cfg.model)[k] != v)
        if differing:
            raise SystemExit(f"--init {path}: the export's model differs from the config's in {differing}")
        model.load_state_dict(loaded.state_dict())
        return
    checkpoint = directory if (directory / "state.json").is_file() else (
        latest_checkpoint(directory / "checkpoints") or latest_checkpoint(directory))
    load_checkpoint(checkpoint, model, optimizer, asdict(cfg.model))


def export(model, cfg, out: Path, meta: dict) -> float:
    from activa_ray.model.io import save_model
    from activa_ray.train.checkpoint import export_meta

    start = time.perf_counter()
    # This run's own record (meta: its steps, examples counted from its start) over a Ray run's fields.
    save_model(model, out / EXPORT_DIR, {**export_meta(cfg, meta["step"], {"data_stats": meta["data_stats"]}), **meta})
    return time.perf_counter() - start


def run_training(args, cfg, sizes: Sizes, device, out: Path, prefetcher: Prefetcher, start_step: int,
                 examples_before: int, init_kind: str, budget_s: float, hard_deadline: float) -> dict:
    import torch

    from activa_ray.model.activa import Activa
    from activa_ray.train.loop import Replica, data_stats, run_steps, validation_set
    from activa_ray.train.step import LossModule, build_optimizer, compile_model, reference_values, resolve_precision

    torch.manual_seed(cfg.train.seed)
    model = Activa(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg)
    if args.init:
        load_init(args.init, model, optimizer, cfg)
    elif cfg.train.init_from:
        from activa_ray.model.io import warm_start
        from activa_ray.pretrained import resolve

        warm_start(model, resolve(cfg.train.init_from))
    if args.compile:
        compile_model(model)
    precision = resolve_precision(cfg.train.precision, device)
    loss_module = LossModule(model, cfg.train.prior_nll_weight, reference_values(cfg))
    replica = Replica(model, loss_module, optimizer, device, precision)
    val_batch = validation_set(cfg)
    stats = data_stats(val_batch)
    batch = cfg.train.batch_size
    metrics_path = out / "metrics.jsonl"
    # The budget is training time: it starts once the replica and the validation set are ready.
    t0 = time.perf_counter()
    deadline = min(t0 + budget_s, hard_deadline)
    budget_s = deadline - t0
    state = {"step": start_step, "last_export": -math.inf, "export_s": 0.0, "report_at": {}, "stopped_early": False,
             "last_report_t": t0, "last_wait": 0.0, "last": {}}

    def meta(step: int) -> dict:
        steps = step - start_step
        return {"step": step, "steps": steps, "start_step": start_step, "examples_seen": steps * batch,
                "examples_seen_total": examples_before + steps * batch, "wall_s": round(time.perf_counter() - t0, 1),
                "gpu_run": True, "dry_run": sizes.dry, "device": device_name(device), "precision": precision,
                "batch": batch, "init": args.init or None, "init_kind": init_kind, "data_stats": stats,
                "schedule_steps": cfg.train.steps, "stopped_early": state["stopped_early"]}

    def report(step: int, metrics: dict, checkpoint_now: bool) -> bool:
        now = time.perf_counter()
        state["report_at"][step] = now
        state["step"] = step
        window = now - state["last_report_t"]
        metrics.update({
            "train/precision": precision, "wall_s": round(now - t0, 2), "examples_seen": (step - start_step) * batch,
            "sim/wait_frac": (prefetcher.wait_s - state["last_wait"]) / window if window > 0 else 0.0,
            "sim/processes": prefetcher.processes, "schedule_steps": cfg.train.steps,
        })
        state["last_report_t"], state["last_wait"] = now, prefetcher.wait_s
        append_jsonl(metrics_path, metrics)
        state["last"] = metrics
        log(f"step {step}/{cfg.train.steps} loss {metrics.get('train/loss', float('nan')):.4f} "
            f"{metrics['train/examples_per_s']:.0f} ex/s, data wait {metrics['train/data_wait_frac']:.1%}, "
            f"sim wait {metrics['sim/wait_frac']:.1%}, val/loss {metrics.get('val/loss', float('nan')):.4f}")
        if checkpoint_now and now - state["last_export"] > (5 if sizes.dry else 60):
            state["export_s"] = export(model, cfg, out, meta(step))  # a run cut short still leaves a model
            state["last_export"] = time.perf_counter()
        if time.perf_counter() >= deadline and step < cfg.train.steps:
            state["stopped_early"] = True
            log(f"wall-clock budget spent at step {step}: stopping before the planned {cfg.train.steps}")
            return True
        return False

    # Phase 1: a few steps inside the warm-up (whose learning rate does not depend on train.steps) to time a step.
    calibration = sizes.calibration_steps
    cfg.train.stop_at_step = start_step + calibration
    # Provisional length: only a run resumed past the warm-up sees it, in these few steps.
    cfg.train.steps = start_step + calibration + max(1, int(budget_s / 0.05))
    log(f"training {cfg.name} on {device_name(device)}, {precision}, batch {batch}, {prefetcher.processes} simulator "
        f"processes, budget {budget_s:.0f} s, from step {start_step} ({init_kind})")
    step = run_steps(cfg, replica, start_step, prefetcher, report, val_batch)
    calls = prefetcher.calls
    measured = [calls[s + 1] - calls[s] for s in range(start_step + calibration // 2, step - 1)
                if s + 1 in calls and s in calls]
    if not measured:
        measured = [(time.perf_counter() - t0) / max(1, step - start_step)]
    step_s = sorted(measured)[len(measured) // 2]
    end_cost = state["report_at"].get(step, time.perf_counter()) - calls.get(step - 1, t0) - step_s  # validate + report
    val_s = max(0.0, end_cost)
    if not sizes.dry:  # report every ~2 s and validate every ~20 s at most, unless --set chose otherwise
        chosen = {item.split("=", 1)[0].strip() for item in args.overrides}
        t = cfg.train
        if "train.log_every" not in chosen:
            t.log_every = max(t.log_every, int(2.0 / step_s))
        if "train.val_every" not in chosen:
            t.val_every = max(t.val_every, -(-int(20.0 / step_s) // t.log_every) * t.log_every)
    per_step = step_s + val_s / cfg.train.val_every
    remaining = deadline - time.perf_counter() - val_s - state["export_s"] - (0.5 if sizes.dry else 2.0)
    planned = max(1, int(0.95 * remaining / per_step))
    cfg.train.stop_at_step = 0
    cfg.train.steps = step + planned
    log(f"calibration: {step_s * 1e3:.1f} ms/step (median of {len(measured)}), validation {val_s:.2f} s, export "
        f"{state['export_s']:.2f} s -> train.steps = {cfg.train.steps} ({planned} more in {remaining:.0f} s), "
        f"log_every {cfg.train.log_every}, val_every {cfg.train.val_every}")
    if not state["stopped_early"]:
        step = run_steps(cfg, replica, step, prefetcher, report, val_batch)
    wall = time.perf_counter() - t0
    export(model, cfg, out, meta(step))
    last = state["last"]
    return {"preset": cfg.name, "steps": step - start_step, "start_step": start_step, "final_step": step,
            "schedule_steps": cfg.train.steps, "examples_seen": (step - start_step) * batch, "batch": batch,
            "precision": precision, "wall_s": round(wall, 1),
            "examples_per_s": round((step - start_step) * batch / wall, 1),
            "calibration_ms_per_step": round(step_s * 1e3, 2), "validation_s": round(val_s, 3),
            "sim_wait_frac_total": round(prefetcher.wait_s / wall, 4), "simulator_processes": prefetcher.processes,
            "stopped_early": state["stopped_early"], "last_train_loss": last.get("train/loss"),
            "last_val_loss": last.get("val/loss"), "last_val_activa_mmd": last.get("val/activa_mmd")}


# ---------------------------------------------------------------------------------------------
# output audit and main


def audit(out: Path) -> list[str]:
    """Problems with what the device machine would give back (count, size, depth, names)."""
    files = [p for p in out.rglob("*") if p.is_file() or p.is_symlink()]
    problems = []
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files (at most {MAX_FILES} come back)")
    for path in files:
        relative = path.relative_to(out)
        if len(relative.parts) - 1 > MAX_DEPTH:
            problems.append(f"{relative}: deeper than {MAX_DEPTH} folders")
        if not all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in relative.parts):
            problems.append(f"{relative}: a name with characters other than letters, digits, '.', '_', '-'")
        if path.stat().st_size > MAX_BYTES:
            problems.append(f"{relative}: {path.stat().st_size / 2**20:.1f} MiB (over 16 MiB)")
    return problems


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    parser.add_argument("--preset", choices=TRAIN_PRESETS, default="gauss8", help="configs/<preset>.yaml to train")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training stage's wall-clock budget (default 5; dry run: 8 s)")
    parser.add_argument("--batch", default=None, help="training batch: a number, or 'auto' (the fastest of the "
                        "throughput stage in the training precision); default 1024 (dry run: 8)")
    parser.add_argument("--init", default=None, help="start from an exported model dir (model.safetensors + "
                        "config.json), a training checkpoint dir (state.json) or a run dir with checkpoints/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set train.lr=0.001 (repeatable)")
    parser.add_argument("--sim-processes", type=int, default=None,
                        help="simulator processes (default: cores - 3; dry run: 2)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto: cuda, or cpu for --dry-run")
    parser.add_argument("--deadline-minutes", type=float, default=None,
                        help="the whole command's wall-clock limit; training is shortened to fit (default 8.5)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for the training stage")
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="every stage at toy size on CPU (seconds)")
    parser.add_argument("--ray-step", choices=("nccl", "gloo"), help=argparse.SUPPRESS)  # child of the Ray check
    args = parser.parse_args(argv)
    if args.ray_step is None and not args.out:
        parser.error("no output folder: pass --out DIR or set OUT")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.ray_step:
        return ray_step(args.ray_step)
    t_start = time.perf_counter()
    sizes = Sizes(args.dry_run)
    deadline = t_start + (args.deadline_minutes * 60 if args.deadline_minutes else sizes.deadline_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("checks.txt", "throughput.jsonl", "metrics.jsonl", "summary.json"):
        (out / name).unlink(missing_ok=True)

    import torch

    device_kind = args.device if args.device != "auto" else ("cpu" if args.dry_run else "cuda")
    if device_kind == "cuda" and not torch.cuda.is_available():
        print("gpu_run: no CUDA device here; use --dry-run (or --device cpu) to run the stages on the CPU",
              file=sys.stderr)
        return 2
    device = torch.device(device_kind)
    processes = args.sim_processes or (2 if args.dry_run else max(2, (os.cpu_count() or 4) - 3))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - processes))
    summary: dict = {"argv": argv, "device": device_name(device), "torch": torch.__version__, "dry_run": args.dry_run,
                     "cuda": torch.version.cuda, "cpu_count": os.cpu_count(), "stages": {}}
    log(f"device {summary['device']}, torch {torch.__version__}, {os.cpu_count()} CPUs, out {out}")

    # The training config first, so the simulator pool can start (and prefetch) while the checks run.
    overrides = (DRY_OVERRIDES if args.dry_run else []) + list(args.overrides)
    cfg = preset_config(args.preset, overrides)
    batch_arg = args.batch or ("8" if args.dry_run else "1024")
    start_step, examples_before, init_kind = init_start(args.init, cfg)
    prefetcher = None

    def start_prefetcher(batch: int) -> Prefetcher:
        cfg.train.batch_size = batch
        p = Prefetcher(cfg, batch, processes, depth=2 * processes)
        p.prefetch(start_step)
        return p

    try:
        if batch_arg != "auto" and not args.skip_train:
            prefetcher = start_prefetcher(int(batch_arg))
        checks = Checks(out / "checks.txt")
        if not args.skip_checks:
            stage = time.perf_counter()
            run_checks(checks, device, sizes)
            summary["stages"]["checks_s"] = round(time.perf_counter() - stage, 1)
        rates: dict[int, float] = {}
        if not args.skip_throughput:
            stage = time.perf_counter()
            rates = run_throughput(out / "throughput.jsonl", device, sizes, resolve_training_precision(cfg, device))
            summary["stages"]["throughput_s"] = round(time.perf_counter() - stage, 1)
        if not args.skip_train:
            if batch_arg == "auto":
                batch = max(rates, key=rates.get) if rates else (8 if args.dry_run else 1024)
                log(f"--batch auto: {batch} ({'fastest measured' if rates else 'no throughput figures'})")
                prefetcher = start_prefetcher(batch)
            stage = time.perf_counter()
            budget = (args.minutes * 60) if args.minutes is not None else sizes.default_train_s
            hard_deadline = deadline - sizes.tail_reserve_s
            if hard_deadline - stage < 10:
                raise SystemExit(f"no time left to train ({hard_deadline - stage:.0f} s before the deadline)")
            try:
                summary["train"] = run_training(args, cfg, sizes, device, out, prefetcher, start_step,
                                                examples_before, init_kind, budget, hard_deadline)
            except Exception as error:  # noqa: BLE001 -- still run the Ray check and write the summary
                traceback.print_exc()
                summary["train"] = {"error": f"{type(error).__name__}: {error}"}
            summary["stages"]["train_s"] = round(time.perf_counter() - stage, 1)
            log(f"training: {json.dumps(summary['train'])}")
        if prefetcher is not None:
            prefetcher.close()
            prefetcher = None
        # Which optional packages the stages pulled in (before the Ray check): none may need ray or wandb.
        summary["modules_loaded"] = {name: name in sys.modules for name in
                                     ("ray", "wandb", "pyarrow", "pandas", "matplotlib", "scipy", "tqdm")}
        if not args.skip_checks and not args.skip_ray:
            stage = time.perf_counter()
            ray_check(checks, device, out, deadline - time.perf_counter() - 5)
            summary["stages"]["ray_s"] = round(time.perf_counter() - stage, 1)
    finally:
        if prefetcher is not None:
            prefetcher.close()
    summary["checks"] = {"failed": checks.failed, "results": checks.results}
    summary["total_s"] = round(time.perf_counter() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    problems = audit(out)
    if problems:
        summary["output_problems"] = problems
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    log(f"done in {summary['total_s']} s: {checks.failed} failed checks; files: {', '.join(files)}"
        + (f"; OUTPUT PROBLEMS: {problems}" if problems else ""))
    failed_training = "error" in summary.get("train", {})
    return 1 if checks.failed or failed_training or problems else 0


def resolve_training_precision(cfg, device) -> str:
    from activa_ray.train.step import resolve_precision

    return resolve_precision(cfg.train.precision, device)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
