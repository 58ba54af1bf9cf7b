"""Stage 3, metrics.jsonl and export/: a timed training run fed by a pool of simulator processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from gpu.common import Sizes, device_name, log


# A simulator process's config, set once by the pool's initializer; the pool sends the two functions
# below by name, so they stay at module level here.
_WORKER_CFG = None


def _init_simulator(cfg_dict: dict) -> None:
    global _WORKER_CFG
    import torch

    from activa_ray.config import rebuild_config

    torch.set_num_threads(1)
    _WORKER_CFG = rebuild_config(cfg_dict, source="gpu_run simulator")  # checked by the driver


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


def build_init_replica(init: str | None, cfg, device, compile_now: bool):
    """The replica train/local.py builds: from --init (an export's weights, or a checkpoint's weights and
    optimizer state), else from the config (fresh, or warm-started from train.init_from)."""
    from activa_ray.model.io import load_model
    from activa_ray.train.checkpoint import latest_checkpoint
    from activa_ray.train.local import build_replica

    directory = Path(init) if init else None
    is_export = directory is not None and (directory / "config.json").is_file() and (
        directory / "model.safetensors").is_file()
    checkpoint = None
    if directory is not None and not is_export:
        checkpoint = directory if (directory / "state.json").is_file() else (
            latest_checkpoint(directory / "checkpoints") or latest_checkpoint(directory))
    # --init replaces the config's warm start; --compile (not train.compile) chooses compilation here.
    setup = replace(cfg, train=replace(cfg.train, compile=compile_now, init_from="" if init else cfg.train.init_from))
    replica, _, _ = build_replica(setup, device, resume_from=checkpoint)
    if is_export:
        loaded, _ = load_model(directory)
        differing = sorted(k for k, v in asdict(loaded.cfg).items() if asdict(cfg.model)[k] != v)
        if differing:
            raise SystemExit(f"--init {init}: the export's model differs from the config's in {differing}")
        replica.model.load_state_dict(loaded.state_dict())
    return replica


def export(model, cfg, out: Path, meta: dict) -> float:
    from activa_ray.train.local import export_model

    start = time.perf_counter()
    # This run's own record (meta: its steps, examples counted from its start) over a Ray run's fields.
    export_model(model, cfg, out, meta["step"], {"data_stats": meta["data_stats"]}, meta)
    return time.perf_counter() - start


def resolve_training_precision(cfg, device) -> str:
    """The training stage's precision on `device`; the throughput stage's rates for --batch auto are in it."""
    from activa_ray.train.step import resolve_precision

    return resolve_precision(cfg.train.precision, device)


def step_costs(calls: dict[int, float], report_at: dict[int, float], start_step: int, calibration: int, step: int,
               t0: float) -> tuple[float, float, int]:
    """(median s per step over the calibration's second half, s of the last report's validation and report, steps
    measured) from the times each step's batch was asked for and each report came."""
    measured = [calls[s + 1] - calls[s] for s in range(start_step + calibration // 2, step - 1)
                if s + 1 in calls and s in calls]
    if not measured:
        measured = [(time.perf_counter() - t0) / max(1, step - start_step)]
    step_s = sorted(measured)[len(measured) // 2]
    end_cost = report_at.get(step, time.perf_counter()) - calls.get(step - 1, t0) - step_s  # validate + report
    return step_s, max(0.0, end_cost), len(measured)


def stretch_report_intervals(cfg, step_s: float, chosen: set[str]) -> None:
    """Report every ~2 s and validate every ~20 s at most, except where --set chose the interval."""
    t = cfg.train
    if "train.log_every" not in chosen:
        t.log_every = max(t.log_every, int(2.0 / step_s))
    if "train.val_every" not in chosen:
        t.val_every = max(t.val_every, -(-int(20.0 / step_s) // t.log_every) * t.log_every)


def run_training(args, cfg, sizes: Sizes, device, out: Path, prefetcher: Prefetcher, start_step: int,
                 examples_before: int, init_kind: str, budget_s: float, hard_deadline: float) -> dict:
    """Stage 3: train for `budget_s` (ending by `hard_deadline`), exporting on the way; returns summary["train"]."""
    from activa_ray.io_utils import append_jsonl
    from activa_ray.train.loop import data_stats, run_steps, validation_set

    replica = build_init_replica(args.init, cfg, device, args.compile)
    model, precision = replica.model, replica.precision
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
    step_s, val_s, measured = step_costs(prefetcher.calls, state["report_at"], start_step, calibration, step, t0)
    if not sizes.dry:  # report every ~2 s and validate every ~20 s at most, unless --set chose otherwise
        stretch_report_intervals(cfg, step_s, {item.split("=", 1)[0].strip() for item in args.overrides})
    per_step = step_s + val_s / cfg.train.val_every
    remaining = deadline - time.perf_counter() - val_s - state["export_s"] - (0.5 if sizes.dry else 2.0)
    planned = max(1, int(0.95 * remaining / per_step))
    cfg.train.stop_at_step = 0
    cfg.train.steps = step + planned
    log(f"calibration: {step_s * 1e3:.1f} ms/step (median of {measured}), validation {val_s:.2f} s, export "
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
