"""How much a model leans on the data's units: the same test pairs, every variable but the target
rescaled by a random factor, the predictions mapped back to the original units and scored there.

Raw linear-SCM data carry their causal order in their variances, which grow downstream
("varsortability"); a model that reads the order from the variances loses it when the units change.
The target keeps its scale, so do(V_t = v) asks the same question in both units. The conditional
baseline is equivariant under rescaling, so its two scores agree: the reference for "no change".
"""

from __future__ import annotations

import numpy as np
import torch

from activa_ray.eval.baselines import conditional_mvn
from activa_ray.eval.metrics import mean_scores
from activa_ray.eval.pairs import predict_samples


def rescale(pairs: dict, rng: np.random.Generator, low: float = 0.2, high: float = 5.0) -> tuple[dict, np.ndarray]:
    """Pairs with obs and int multiplied per pair and variable by log-uniform factors in [low, high]
    (the target's factor is 1); returns the rescaled pairs and the factors (P, d)."""
    scales = np.exp(rng.uniform(np.log(low), np.log(high), size=pairs["targets"].shape))  # (P, d)
    scales = np.where(pairs["targets"].astype(bool), 1.0, scales).astype(np.float32)
    rescaled = dict(pairs, obs=pairs["obs"] * scales[:, None, :], int=pairs["int"] * scales[:, None, :])
    return rescaled, scales


def scale_sensitivity(model: torch.nn.Module, pairs: dict, seed: int = 0, batch_size: int = 256) -> dict:
    """MMD / WSD / ERG in the original units of ACTIVA and the conditional baseline, from the original
    pairs and from rescaled pairs (predictions divided by the factors), with the same random streams."""
    rescaled, scales = rescale(pairs, np.random.default_rng(seed))
    n, device = pairs["int"].shape[1], next(model.parameters()).device
    model.eval()
    out = {}
    for name, inputs, back in (("original", pairs, np.ones_like(scales)), ("rescaled", rescaled, scales)):
        generator = torch.Generator(device).manual_seed(seed)
        activa = predict_samples(model, inputs["obs"], inputs["targets"], inputs["values"], n, 1, generator,
                                 batch_size, device) / back[:, None, :]
        baseline = conditional_mvn(inputs["obs"], inputs["targets"], inputs["values"], n,
                                   np.random.default_rng(seed)).samples / back[:, None, :]
        truth = torch.as_tensor(pairs["int"], dtype=torch.float32)
        out[name] = {method: mean_scores(truth, torch.as_tensor(samples, dtype=torch.float32))
                     for method, samples in (("activa", activa), ("baseline", baseline))}
    return out
