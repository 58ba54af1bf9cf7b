"""The unit-free protocol: a value-conditioned model judged the way a user meets it.

Fresh linear SCMs (ER p = 0.3, weights ±U(0.5, 2), Gaussian or Beta noise) with every variable put in
arbitrary units (a log-uniform scale over four decades and an offset), one hard intervention
do(X_t = mean ± k SD) per variable of each model (the target exactly at the value), N observational rows, answered through the public predict API. Scores are
taken on the non-target variables, each in its own observational standard deviations, so that no
variable's units weigh in the sums: MMD / WSD / ERG over all of them, and WSD over the target's
descendants alone. Beside the model: no effect, the conditional baseline, GES + least squares over the
equivalence class, DirectLiNGAM + least squares, the true graph + least squares, the structure model's
own least-squares decoder given the true descendants (what a perfect structure posterior would predict),
and the noise floor (a second draw of the truth).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from activa_ray.data.config import LinearSCMConfig
from activa_ray.data.scm import simulate_linear
from activa_ray.eval.baselines import BASELINES
from activa_ray.eval.metrics import energy, mmd, wasserstein
from activa_ray.eval.pairs import descendant_masks, flatten_pairs
from activa_ray.io_utils import atomic_write_text
from activa_ray.model.structure import StructureConfig, descendants, least_squares_mixture, standardize

BASELINE_REFERENCES = ("no_effect", "baseline", "ges_mec", "lingam", "oracle_graph")  # eval/baselines.py
REFERENCES = ("no_effect", "baseline", "ges_mec", "lingam", "oracle_graph", "true_descendants")
SCORES = ("mmd", "wsd", "erg", "descendants_wsd")


@dataclass(frozen=True)
class ProtocolSet:
    d: int
    noise: str  # gauss | beta
    models: int
    n_samples: int = 100
    sd: float = 2.0  # each query's value is the target's mean plus or minus sd observational SDs (half each)

    @property
    def name(self) -> str:
        return f"d{self.d}_{self.noise}"


DEFAULT_SETS = (
    ProtocolSet(5, "gauss", 100), ProtocolSet(5, "beta", 100), ProtocolSet(8, "gauss", 100),
    ProtocolSet(8, "beta", 100), ProtocolSet(20, "gauss", 25), ProtocolSet(20, "beta", 25),
)


def simulate_set(spec: ProtocolSet, seed: int) -> dict[str, np.ndarray]:
    """The set's (model, condition) pairs (flatten_pairs) with int_ref, every model in arbitrary units."""
    rng = np.random.default_rng([seed, spec.d, spec.n_samples, 0 if spec.noise == "gauss" else 1])
    half = spec.models // 2
    parts = [
        simulate_linear(rng, count, spec.d, spec.n_samples,
                        LinearSCMConfig(noise=spec.noise, value_sd_range=[sign * spec.sd] * 2, jitter_var=0.0), with_ref=True)
        for sign, count in ((1.0, half), (-1.0, spec.models - half)) if count
    ]
    batch = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    scale = np.exp(rng.uniform(math.log(0.01), math.log(100.0), size=(spec.models, spec.d))).astype(np.float32)
    offset = (rng.uniform(-10, 10, size=(spec.models, spec.d)) * scale).astype(np.float32)
    for key in ("obs", "int", "int_ref"):
        extra = (slice(None),) + (None,) * (batch[key].ndim - 2)  # broadcast over conditions and samples
        batch[key] = batch[key] * scale[extra] + offset[extra]
    target = batch["targets"].argmax(-1)  # (M, C)
    batch["values"] = batch["values"] * np.take_along_axis(scale, target, 1) + np.take_along_axis(offset, target, 1)
    batch["model_id"] = np.arange(spec.models)
    return flatten_pairs(batch)


def predictor_samples(predictor, pairs: dict, prior_samples: int, seed: int) -> np.ndarray:
    """Each pair answered through Predictor.predict_many (one call per model, its conditions as the queries)
    and sampled N times: (P, N, d)."""
    n = pairs["int"].shape[1]
    out = np.zeros(pairs["int"].shape, dtype=np.float32)
    models = pairs["model_id"]
    for model in np.unique(models):
        rows = np.flatnonzero(models == model)
        names = list(pairs["var_names"][rows[0]])
        table = pd.DataFrame(pairs["obs"][rows[0]].astype(np.float64), columns=names)
        queries = [(names[int(pairs["targets"][p].argmax())], float(pairs["values"][p])) for p in rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the domain warnings are for users; the protocol is in-domain
            predictions = predictor.predict_many(table, queries, prior_samples=prior_samples, seed=seed + int(model))
        for p, prediction in zip(rows, predictions):
            out[p] = prediction.sample(n, seed=seed + int(p)).to_numpy()
    return out


def baseline_samples(pairs: dict, seed: int) -> dict[str, np.ndarray]:
    """The (P, N, d) samples of every reference of eval/baselines.py, the targets held at their value."""
    n = pairs["int"].shape[1]
    rng = np.random.default_rng(seed)
    out = {}
    for name in BASELINE_REFERENCES:
        extra = {"graph": pairs["graph"]} if name == "oracle_graph" else {}
        out[name] = BASELINES[name](pairs["obs"], pairs["targets"], pairs["values"], n, rng, point_mass=True,
                                   **extra).samples
    return out


def reference_samples(pairs: dict, seed: int, with_baselines: bool = True) -> dict[str, np.ndarray]:
    """Every reference's (P, N, d) samples (the baselines' only `with_baselines`), and the floor's (the second
    draw of the truth)."""
    out = baseline_samples(pairs, seed) if with_baselines else {}
    out["true_descendants"] = true_descendant_samples(pairs, seed)
    out["floor"] = pairs["int_ref"]
    return out


def true_descendant_samples(pairs: dict, seed: int) -> np.ndarray:
    """(P, N, d) samples of the structure model's least-squares decoder given each target's TRUE descendants:
    what the default model would predict with a perfect posterior over structures."""
    obs = torch.as_tensor(pairs["obs"], dtype=torch.float64)
    z, _, _ = standardize(obs)
    covariance = (z.transpose(1, 2) @ z / z.shape[1]).float()
    target = torch.as_tensor(pairs["targets"].argmax(-1))
    rows = torch.arange(len(target))
    keep = ~descendants(torch.as_tensor(pairs["graph"]))[rows, target]
    keep[rows, target] = False
    cfg = StructureConfig()
    mixture = least_squares_mixture(obs.float(), covariance, target, keep[:, None], torch.zeros(len(target), 1),
                                    torch.as_tensor(pairs["values"], dtype=torch.float32), cfg.ridge, cfg.cov_floor)
    return mixture.sample(pairs["int"].shape[1], torch.Generator().manual_seed(seed)).numpy()


def unit_free_scores(pairs: dict, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair (P,): MMD, WSD, ERG over the non-target variables and WSD over the descendants (NaN where the
    target has none), every variable divided by its observational SD."""
    sd = pairs["obs"].std(1).clip(1e-12)  # (P, d)
    non_target = 1.0 - pairs["targets"].astype(np.float64)  # (P, d)
    descendants, _ = descendant_masks(pairs["graph"], pairs["targets"])

    def scaled(x: np.ndarray, keep: np.ndarray) -> torch.Tensor:  # the kept coordinates in SD units, others 0
        return torch.as_tensor(np.nan_to_num(x / sd[:, None]) * keep[:, None], dtype=torch.float32)

    truth, predicted = scaled(pairs["int"], non_target), scaled(samples, non_target)
    failed = torch.as_tensor(~np.isfinite(samples).all(axis=(1, 2)))
    scores = {name: torch.where(failed, torch.nan, fn(truth, predicted)).numpy()
              for name, fn in (("mmd", mmd), ("wsd", wasserstein), ("erg", energy))}
    keep = descendants.astype(np.float64)
    below = wasserstein(scaled(pairs["int"], keep), scaled(samples, keep)).numpy()
    scores["descendants_wsd"] = np.where(descendants.any(1) & ~failed.numpy(), below, np.nan)
    return scores


def summarize(scores: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """{score: [mean, standard error, pairs]} over the pairs where it is defined."""
    out = {}
    for name, values in scores.items():
        finite = values[np.isfinite(values)]
        sem = float(finite.std(ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else float("nan")
        out[name] = [float(finite.mean()) if len(finite) else float("nan"), sem, int(len(finite))]
    return out


def run_protocol(predictor, sets=DEFAULT_SETS, prior_samples=(50, 1), seed: int = 0, known: dict | None = None,
                 log=print) -> dict:
    """{"seed", "sets": {name: {"spec", "methods": {method: {score: [mean, s.e., pairs]}}}}} for the model
    (activa_s50, activa_s1, ...) and the references on every set. `known`: an earlier run's results; a set with
    the same spec and seed takes the scores of eval/baselines.py's references from there instead of recomputing
    them (GES and LiNGAM cost seconds per model at d = 20; the references do not depend on the model)."""
    reusable = (known or {}).get("sets", {}) if (known or {}).get("seed") == seed else {}
    results = {"seed": seed, "sets": {}}
    for spec in sets:
        pairs = simulate_set(spec, seed)
        methods = {f"activa_s{s}": predictor_samples(predictor, pairs, s, seed) for s in prior_samples}
        scores = {name: summarize(unit_free_scores(pairs, samples)) for name, samples in methods.items()}
        earlier = reusable.get(spec.name, {})
        reuse = (earlier.get("spec") == dataclasses.asdict(spec)
                 and all(name in earlier["methods"] for name in BASELINE_REFERENCES))
        if reuse:
            scores |= {name: earlier["methods"][name] for name in BASELINE_REFERENCES}
        scores |= {name: summarize(unit_free_scores(pairs, samples))
                   for name, samples in reference_samples(pairs, seed, with_baselines=not reuse).items()}
        results["sets"][spec.name] = {"spec": dataclasses.asdict(spec), "methods": scores}
        log(f"{spec.name}: " + format_row(scores, f"activa_s{prior_samples[0]}"))
    return results


def format_row(by_method: dict, method: str) -> str:
    return " / ".join(f"{by_method[method][name][0]:.3f}" for name in SCORES)


def protocol_table(results: dict, methods: tuple[str, ...] | None = None) -> str:
    """A Markdown table: one row per set, one column per method, cells MMD / WSD / ERG / descendants' WSD,
    each mean ± s.e."""
    first = next(iter(results["sets"].values()))["methods"]
    methods = methods or tuple(first)
    lines = ["| set | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name, entry in results["sets"].items():
        by_method = entry["methods"]
        cells = [" / ".join(f"{by_method[m][s][0]:.3f} ± {by_method[m][s][1]:.3f}" for s in SCORES) for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_protocol_report(results: dict, out: str | os.PathLike, header: str) -> Path:
    """DIR/protocol.json (every number) and DIR/protocol.md (the table, under `header`); returns the .md path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "protocol.json", json.dumps(results, indent=1) + "\n")
    text = (f"{header}\n\nCells: MMD / WSD / ERG over the non-target variables / WSD over the target's descendants, "
            "each variable in its observational SDs; mean ± standard error over (model, condition) pairs.\n\n"
            + protocol_table(results) + "\n")
    atomic_write_text(out / "protocol.md", text)
    return out / "protocol.md"
