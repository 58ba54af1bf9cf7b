"""One prepared command for a short loan of one GPU: checks, throughput and MFU, a timed training run.

    bash bench/gpu_run.sh [--preset gauss8|beta8|sergio|universal_vae|gauss8_cpu|beta8_cpu] [--minutes 5]
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
  3. metrics.jsonl    a training run of the preset's config (gpu/common.py PRESET_FILES) for a wall-clock
  export/             budget through `activa_ray.train.loop.run_steps` (the Ray worker's loop, without Ray), on models
                      simulated by a pool of processes (batch of step s = streamed_examples(cfg, 0, s, batch)),
                      cfg.train.steps set from the measured step time so the cosine schedule ends in time;
                      export/ holds model.safetensors + config.json (activa_ray.model.io.save_model).
  summary.json        what ran, how long, the files written. (gpu_run.log is the wrapper's copy of stdout.)

At most 8 files, none over 16 MiB, nothing deeper than two folders: what the device machine gives back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

from gpu.checks import Checks, ray_check, ray_step, run_checks
from gpu.common import REPO, Sizes, device_name, log, preset_config
from gpu.throughput import run_throughput
from gpu.training import Prefetcher, init_start, resolve_training_precision, run_training

# bench/gpu imports as `gpu` because Python puts this script's folder first on sys.path; the repository
# goes there too, for activa_ray where it is not installed (the GPU machine has no .venv).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TRAIN_PRESETS = ("gauss8", "beta8", "sergio", "universal_vae", "gauss8_cpu", "beta8_cpu")
MAX_FILES, MAX_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2
# Dry run: the training stage's model and data at toy size (seconds on a 2-core CPU).
DRY_OVERRIDES = [
    "model.heads=2", "model.embed_dim=16", "model.hidden_dim=32", "model.encoder_layers=2", "model.decoder_layers=1",
    "data.n_samples=10", "train.warmup_steps=4", "train.log_every=2", "train.val_every=6", "train.ckpt_every=6",
    "train.val_models=2",
]


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
    parser.add_argument("--preset", choices=TRAIN_PRESETS, default="gauss8", help="the config to train, by its name (gpu/common.py PRESET_FILES)")
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
            ray_check(checks, device, deadline - time.perf_counter() - 5)
            summary["stages"]["ray_s"] = round(time.perf_counter() - stage, 1)
    finally:
        if prefetcher is not None:
            prefetcher.close()
    return finish(out, summary, checks, t_start)


def finish(out: Path, summary: dict, checks: Checks, t_start: float) -> int:
    """Write summary.json, audit what comes back from OUT, log the files; the exit status (1: a failure)."""
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
