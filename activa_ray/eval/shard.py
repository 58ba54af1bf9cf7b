"""One shard's work: every method's N samples for each (model, condition) pair, and the metrics
of each against the truth, over all variables and per role (descendants, non-descendants).

The random streams are drawn in a fixed order (ACTIVA for each S, then the baselines, then the
metrics), so a run is a pure function of its seed and its shards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from activa_ray.eval.baselines import BASELINES
from activa_ray.eval.metrics import all_metrics
from activa_ray.eval.pairs import descendant_masks, predict_samples

ROLES = ("all", "descendants", "non_descendants")
FLOOR = "floor"
ACTIVA = "activa"


def activa_name(prior_samples: int) -> str:
    """The method name of ACTIVA with S prior samples: activa_s1, activa_s50."""
    return f"{ACTIVA}_s{prior_samples}"


@dataclass
class Methods:
    """What predicts on every shard, with its random streams (one per ACTIVA S, baselines, metrics)."""

    model: torch.nn.Module
    counts: list[int]  # prior sample counts S
    baselines: list[str]
    point_mass: bool
    jitter_var: float
    batch_size: int
    permutations: int
    ray_tasks: int
    device: torch.device
    activa_generators: dict[int, torch.Generator] = field(default_factory=dict)
    baseline_rng: np.random.Generator | None = None
    metric_generator: torch.Generator | None = None

    def seed(self, seed: int) -> Methods:
        """Spawn the streams from `seed`: ACTIVA's (one per S), the baselines', the metrics'."""
        activa_seed, baseline_seed, metric_seed = np.random.SeedSequence(seed).spawn(3)
        self.activa_generators = {
            s: torch.Generator(self.device).manual_seed(int(child.generate_state(1)[0]))
            for s, child in zip(self.counts, activa_seed.spawn(len(self.counts)))
        }
        self.baseline_rng = np.random.default_rng(baseline_seed)
        self.metric_generator = torch.Generator(self.device).manual_seed(int(metric_seed.generate_state(1)[0]))
        return self


@dataclass
class ShardResult:
    predictions: dict[str, np.ndarray]  # method -> (P, N, d) samples
    metrics: dict[str, dict[str, np.ndarray]]  # method -> "role/metric" -> (P,)
    failures: dict[str, int]
    errors: dict[str, list[str]]  # method -> "model m condition c: message"
    seconds: dict[str, float]


def predict(methods: Methods, pairs: dict, with_floor: bool, source: str) -> ShardResult:
    """Every method's samples (P, N, d) for the shard's pairs; the floor is the reference draw int_ref."""
    n = pairs["int"].shape[1]
    result = ShardResult({}, {}, {}, {}, {})
    for s in methods.counts:
        started = time.perf_counter()
        result.predictions[activa_name(s)] = predict_samples(
            methods.model, pairs["obs"], pairs["targets"], pairs["values"], n, s, methods.activa_generators[s],
            methods.batch_size, methods.device, source,
        )
        result.seconds[activa_name(s)] = time.perf_counter() - started
    for name in methods.baselines:
        extra = {"graph": pairs["graph"]} if name == "oracle_graph" else {}
        if name in ("lingam", "ges_mec"):
            extra["ray_tasks"] = methods.ray_tasks
        baseline = BASELINES[name](
            pairs["obs"], pairs["targets"], pairs["values"], n, methods.baseline_rng,
            point_mass=methods.point_mass, jitter_var=methods.jitter_var, **extra,
        )
        result.predictions[name] = baseline.samples
        result.failures[name] = baseline.failures
        result.seconds[name] = baseline.seconds
        result.errors[name] = [
            f"model {pairs['model_id'][p]} condition {pairs['condition'][p]}: {msg}" for p, msg in baseline.errors.items()
        ]
    if with_floor:
        result.predictions[FLOOR] = pairs["int_ref"]
    return result


def role_metrics(
    truth: torch.Tensor,
    prediction: torch.Tensor,
    masks: dict[str, torch.Tensor],
    permutations: int,
    generator: torch.Generator,
) -> dict[str, dict[str, np.ndarray]]:
    """{role: {metric: (P,)}}; for a role, the other coordinates are zeroed in both sets, and
    pairs where the role has no variable are NaN (skipped)."""
    out = {}
    for role in ROLES:
        if role == "all":
            x, y, present = truth, prediction, None
        else:
            keep = masks[role][:, None, :]  # (P, 1, d)
            x, y = torch.where(keep, truth, 0.0), torch.where(keep, prediction, 0.0)
            present = masks[role].any(dim=1)
        values = all_metrics(x, y, permutations=permutations, generator=generator)
        out[role] = {
            name: (torch.where(present, v, torch.nan) if present is not None else v).double().cpu().numpy()
            for name, v in values.items()
        }
    return out


def score(methods: Methods, pairs: dict, result: ShardResult) -> ShardResult:
    """Fill result.metrics: each method's per-pair metrics against the truth, for every role."""
    descendants, non_descendants = descendant_masks(pairs["graph"], pairs["targets"])  # (P, d) each
    masks = {
        "descendants": torch.as_tensor(descendants, device=methods.device),
        "non_descendants": torch.as_tensor(non_descendants, device=methods.device),
    }
    truth = torch.tensor(pairs["int"], dtype=torch.float32, device=methods.device)  # (P, N, d)
    for name, samples in result.predictions.items():
        prediction = torch.tensor(samples, dtype=torch.float32, device=methods.device)
        computed = role_metrics(truth, prediction, masks, methods.permutations, methods.metric_generator)
        result.metrics[name] = {
            f"{role}/{metric}": array for role, values in computed.items() for metric, array in values.items()
        }
    return result


def evaluate_shard(methods: Methods, pairs: dict, with_floor: bool, source: str) -> ShardResult:
    """Predict with every method, then score every prediction."""
    return score(methods, pairs, predict(methods, pairs, with_floor, source))
