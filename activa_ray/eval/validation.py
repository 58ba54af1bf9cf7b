"""Validation during training: ACTIVA's, the conditional baseline's and the posterior decoder's
mean MMD / WSD / ERG on a small in-memory batch."""

from __future__ import annotations

import numpy as np
import torch

from activa_ray.eval.baselines import conditional_mvn
from activa_ray.eval.metrics import mean_scores
from activa_ray.eval.pairs import flatten_pairs, model_value_index, predict_samples


def validation_metrics(
    model: torch.nn.Module,
    batch: dict,
    prior_samples: int = 1,
    generator: torch.Generator | None = None,
    jitter_var: float = 0.1,
) -> dict[str, float]:
    """ACTIVA's and the conditional baseline's mean MMD / WSD / ERG on a small in-memory batch.

    `batch` is a model batch (obs, int, targets, values, graph, var_names ...); the model is put
    in eval mode for the call and restored after. Keys: activa_mmd, activa_wsd, activa_erg,
    baseline_*, and posterior_* (the decoder at the posterior mean, which sees the truth: the gap
    activa_* − posterior_* is what the prior has still to learn from the observational data).
    """
    pairs = flatten_pairs(batch)
    device = next(model.parameters()).device
    n = pairs["int"].shape[1]
    generator = generator if generator is not None else torch.Generator(device).manual_seed(0)
    was_training = model.training
    model.eval()
    try:
        activa = predict_samples(
            model, pairs["obs"], pairs["targets"], pairs["values"], n, prior_samples,
            generator, len(pairs["obs"]), device, "validation batch",
        )
        index = model_value_index(pairs["values"], model.cfg, "validation batch")
        posterior = model.reconstruct(
            *(torch.as_tensor(pairs[key], dtype=torch.float32, device=device) for key in ("obs", "int", "targets")),
            torch.as_tensor(index, dtype=torch.long, device=device),
            torch.as_tensor(pairs["values"], dtype=torch.float32, device=device),
        ).sample(n, generator=generator).float()
    finally:
        model.train(was_training)
    baseline = conditional_mvn(
        pairs["obs"], pairs["targets"], pairs["values"], n, np.random.default_rng(generator.initial_seed()),
        point_mass=model.cfg.point_mass_interventions, jitter_var=jitter_var,
    ).samples
    truth = torch.as_tensor(pairs["int"], dtype=torch.float32, device=device)
    out = {}
    for name, samples in (("activa", activa), ("baseline", baseline), ("posterior", posterior)):
        prediction = torch.as_tensor(samples, dtype=torch.float32, device=device)
        out.update({f"{name}_{metric}": value for metric, value in mean_scores(truth, prediction).items()})
    return out
