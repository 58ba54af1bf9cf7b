"""What every stage of bench/gpu_run.py shares: the run's sizes, the log, the configs, the device."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def log(message: str) -> None:
    print(f"[gpu_run {time.strftime('%H:%M:%S')}] {message}", flush=True)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def release(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# A preset is a config's `name:`; its file under configs/ (the paper's presets, the sweep's recipes, universal).
PRESET_FILES = {**{name: f"paper/{name}.yaml" for name in ("gauss2", "beta2", "gauss8", "beta8", "sergio")},
                "universal_vae": "universal_vae.yaml", "gauss8_cpu": "recipes/gauss8.yaml", "beta8_cpu": "recipes/beta8.yaml"}


def preset_config(preset: str, overrides: list[str]):
    from activa_ray.config import load_config

    return load_config(REPO / "configs" / PRESET_FILES[preset], overrides)
