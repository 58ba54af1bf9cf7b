"""Stage 2, throughput.jsonl: examples/s, FLOPs and MFU of the Gauss 8 model per batch and precision."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from gpu.common import Sizes, device_name, log, preset_config, release


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


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

    from activa_ray.io_utils import append_jsonl
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
