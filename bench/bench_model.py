"""Model speed on CPU: training throughput of the Gauss 8 size and single-query prediction latency."""

from __future__ import annotations

import time

import torch

from activa_ray.model.activa import Activa
from activa_ray.model.config import PRESETS


def _batch(batch: int, samples: int, variables: int, generator: torch.Generator):
    obs = torch.randn(batch, samples, variables, generator=generator)
    x = torch.randn(batch, samples, variables, generator=generator)
    targets = torch.zeros(batch, variables, dtype=torch.bool)
    targets[torch.arange(batch), torch.randint(variables, (batch,), generator=generator)] = True
    value_index = torch.zeros(batch, dtype=torch.long)
    return obs, x, targets, value_index


def model_train_gauss8(batch: int = 256, samples: int = 30, variables: int = 8, warmup: int = 1, steps: int = 2,
                       prior_nll_weight: float = 0.0) -> dict:
    """Forward + backward + NAdam step of PRESETS["gauss8"] at batch 256, d=8, N=N_obs=30, all CPU threads."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Activa(PRESETS["gauss8"]).train()
    optimizer = torch.optim.NAdam(model.parameters(), lr=5e-4)
    obs, x, targets, value_index = _batch(batch, samples, variables, generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(obs, x, targets, value_index, generator=generator, prior_nll_weight=prior_nll_weight)["loss"].backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    cpu_seconds = (time.process_time() - cpu_start) / steps  # CPU time of all threads: less sensitive to other load
    return {
        "examples_per_s": round(batch / seconds, 1),
        "s_per_step": round(seconds, 3),
        "cpu_s_per_step": round(cpu_seconds, 3),
        "batch": batch,
        "prior_nll_weight": prior_nll_weight,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def model_predict_d8(samples: int = 30, variables: int = 8, prior_samples: int = 50, repeats: int = 30) -> dict:
    """One query (d=8, N_obs=30) -> 50-prior-sample mixture, on ONE CPU thread; median latency."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        model = Activa(PRESETS["gauss8"]).eval()
        obs, _, targets, value_index = _batch(1, samples, variables, generator)
        for _ in range(3):
            model.predict(obs, targets, value_index, prior_samples=prior_samples, generator=generator)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict(obs, targets, value_index, prior_samples=prior_samples, generator=generator)
            times.append(time.perf_counter() - start)
        times.sort()
        return {
            "ms_per_query": round(1000 * times[len(times) // 2], 2),
            "ms_min": round(1000 * times[0], 2),
            "prior_samples": prior_samples,
            "target_ms": 20,
        }
    finally:
        torch.set_num_threads(threads)


def predict_universal(variables: int, rows: int = 100, prior_samples: int = 50, repeats: int = 20) -> dict:
    """The shipped universal model through the user's API (Predictor.predict on a DataFrame, one query,
    S = 50, effects included), on ONE CPU thread: median latency at d = `variables`, N = `rows`."""
    import numpy as np
    import pandas as pd

    from activa_ray.predict import load

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = load("universal")
        columns = [f"v{j}" for j in range(variables)]
        table = pd.DataFrame(np.random.default_rng(0).normal(size=(rows, variables)), columns=columns)
        value = float(table["v0"].mean() + 2 * table["v0"].std())
        for _ in range(3):
            predictor.predict(table, "v0", value, prior_samples=prior_samples).effects()
        times = []
        for seed in range(repeats):
            start = time.perf_counter()
            predictor.predict(table, "v0", value, prior_samples=prior_samples, seed=seed).effects()
            times.append(time.perf_counter() - start)
        times.sort()
        return {"d": variables, "rows": rows, "prior_samples": prior_samples,
                "ms_per_query": round(1000 * times[len(times) // 2], 1), "ms_min": round(1000 * times[0], 1)}
    finally:
        torch.set_num_threads(threads)


def predict_universal_d8() -> dict:
    return predict_universal(8)


def predict_universal_d20() -> dict:
    return predict_universal(20)


def model_train_gauss8_hybrid() -> dict:
    """model_train_gauss8 with the hybrid objective (α = 1): the extra cost of decoding one latent per prior component."""
    return model_train_gauss8(prior_nll_weight=1.0)


BENCHES = {"model_train_gauss8": model_train_gauss8, "model_train_gauss8_hybrid": model_train_gauss8_hybrid,
           "model_predict_d8": model_predict_d8, "predict_universal_d8": predict_universal_d8,
           "predict_universal_d20": predict_universal_d20}
