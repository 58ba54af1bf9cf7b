"""Stage 1, checks.txt: PASS/FAIL/SKIP per CUDA path, none aborting the rest; last, one Ray Train step."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from gpu.common import REPO, Sizes, device_name, preset_config, release


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


def ray_check(checks: Checks, device, timeout_s: float) -> None:
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
    # The entry script, whose main runs ray_step for --ray-step.
    command = [sys.executable, str(REPO / "bench" / "gpu_run.py"), "--ray-step", backend]
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
