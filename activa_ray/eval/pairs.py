"""(Test model, condition) pairs: a shard's model batch flattened to one row per pair, the
variables' roles towards each pair's target, and ACTIVA's samples for every pair."""

from __future__ import annotations

import numpy as np
import torch

from activa_ray.model.config import ModelConfig


class EvaluationError(ValueError):
    """Inputs the evaluation cannot use; the message names the file or option."""


def descendant_masks(graph: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """graph (P, d, d) with graph[p, i, j] = i -> j, targets (P, d) -> (descendants, non-descendants)
    (P, d) bool; the targets themselves are in neither."""
    reach = graph.astype(bool)
    for _ in range(graph.shape[-1]):  # transitive closure: paths of every length up to d
        reach = reach | (reach.astype(np.int32) @ graph.astype(np.int32) > 0)
    held = targets.astype(bool)
    below = (held[:, :, None] & reach).any(axis=1)  # (P, d)
    descendants = below & ~held
    return descendants, ~below & ~held


def model_value_index(values: np.ndarray, model_cfg: ModelConfig, source: str) -> np.ndarray:
    """Index of each nominal value (P,) in the model's table of intervention values (a value-encoded model: 0s)."""
    if model_cfg.intervention_encoding == "value":
        return np.zeros(len(values), dtype=np.int64)
    table = model_cfg.intervention_values
    table_arr = np.asarray(table, dtype=np.float64)
    match = np.isclose(np.asarray(values, dtype=np.float64)[:, None], table_arr[None, :], atol=1e-6)
    unknown = np.unique(np.asarray(values)[~match.any(axis=1)])
    if unknown.size:
        raise EvaluationError(
            f"{source}: intervention value(s) {unknown.tolist()} are not in the model's table {list(table)}; "
            "the model can only answer queries for the values it was trained on"
        )
    return match.argmax(axis=1)


def flatten_pairs(batch: dict, n_models: int | None = None) -> dict[str, np.ndarray]:
    """A model batch (M models x C conditions) -> one row per pair (P = M * C)."""
    models = batch["obs"].shape[0] if n_models is None else n_models
    conditions = batch["targets"].shape[1]

    def per_model(array: np.ndarray) -> np.ndarray:
        return np.repeat(array[:models], conditions, axis=0)

    def per_condition(array: np.ndarray) -> np.ndarray:
        return array[:models].reshape(models * conditions, *array.shape[2:])

    pairs = {
        "obs": per_model(batch["obs"]),
        "graph": per_model(batch["graph"]),
        "int": per_condition(batch["int"]),
        "targets": per_condition(batch["targets"]),
        "values": per_condition(batch["values"]),
        "condition": np.tile(np.arange(conditions), models),
        "model_id": per_model(batch["model_id"]) if "model_id" in batch else np.repeat(np.arange(models), conditions),
        "var_names": per_model(batch["var_names"]),
    }
    if "int_ref" in batch:
        pairs["int_ref"] = per_condition(batch["int_ref"])
    return pairs


def predict_samples(
    model: torch.nn.Module,
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    prior_samples: int,
    generator: torch.Generator,
    batch_size: int,
    device: torch.device,
    source: str = "data",
) -> np.ndarray:
    """N samples from ACTIVA's predicted mixture for every pair: (P, n, d) float32."""
    index = model_value_index(values, model.cfg, source)
    out = []
    for start in range(0, len(obs), batch_size):
        stop = start + batch_size
        # torch.tensor copies: shard arrays are read-only views of Arrow buffers.
        mixture = model.predict(
            torch.tensor(obs[start:stop], dtype=torch.float32, device=device),
            torch.tensor(targets[start:stop], dtype=torch.float32, device=device),
            torch.tensor(index[start:stop], dtype=torch.long, device=device),
            prior_samples=prior_samples,
            generator=generator,
            values=torch.tensor(values[start:stop], dtype=torch.float32, device=device),
        )
        out.append(mixture.sample(n, generator=generator).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, n, obs.shape[-1]), dtype=np.float32)
