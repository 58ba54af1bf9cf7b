"""An exported ACTIVA model answering queries on observational tables (no Ray).

A paper-style model works on raw values and answers do(X = v) for the v in its table of values;
a standardising, value-encoded model (the `universal` preset) takes any units and any value in
its trained range, and maps its prediction back to the table's units. Either way the table is
passed as it is; `TrainedDomain` (predict/domain.py) warns when d, N, the scale or the value lie
outside what the model was trained on. A table with more rows than the model was trained on is
split into equal random chunks, each answered, and the answers pooled as one equal-weight mixture.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from activa_ray.model.activa import Activa
from activa_ray.model.io import ModelFileError, load_model
from activa_ray.model.mixture import GaussianMixture
from activa_ray.predict.domain import TrainedDomain, meta_value
from activa_ray.predict.prediction import Prediction
from activa_ray.predict.tables import PredictError, as_table
from activa_ray.pretrained import DEFAULT_MODEL, resolve


def observation_chunks(values: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """(N, d) -> (k, n, d): k = ceil(N / max_rows) disjoint random chunks of n = N // k rows (the N mod k
    rows left over are dropped); one chunk of everything when N <= max_rows or max_rows is unknown."""
    n_rows = len(values)
    if max_rows is None or n_rows <= max_rows:
        return values[None]
    chunks = -(-n_rows // max_rows)
    size = n_rows // chunks
    order = np.random.default_rng(seed).permutation(n_rows)[: chunks * size]
    return values[order].reshape(chunks, size, values.shape[1])


def pool_chunks(mixture: GaussianMixture, chunks: int) -> GaussianMixture:
    """Mixtures of queries (B · k, M, ...) answered from k chunks each (query-major) -> (B, k · M, ...),
    each chunk's mixture weighing 1/k (their log-weights are normalised, so a softmax over all is)."""
    if chunks == 1:
        return mixture
    batch = mixture.batch_size // chunks
    components, dim = chunks * mixture.num_components, mixture.dim
    pinned_mask = None if mixture.pinned_mask is None else mixture.pinned_mask[::chunks]
    pinned_values = None if mixture.pinned_values is None else mixture.pinned_values[::chunks]
    return GaussianMixture(
        torch.log_softmax(mixture.logits, -1).reshape(batch, components),
        mixture.means.reshape(batch, components, dim),
        mixture.scale_tril.reshape(batch, components, dim, dim),
        pinned_mask,
        pinned_values,
    )


class Predictor:
    """An exported ACTIVA model ready to answer queries on observational tables."""

    def __init__(self, model: Activa, meta: dict | None = None, source: str = "model") -> None:
        self.model = model.eval()
        self.meta = meta or {}
        self.source = source
        self.device = next(model.parameters()).device
        self.domain = TrainedDomain.from_meta(self.meta, model.cfg)
        missing = [
            name for name, value in (
                ("data.d", self.domain.d),
                ("data.n_samples", self.domain.n_samples),
                ("data_stats.obs_abs_mean", self.domain.obs_abs_mean),
                ("data_stats.obs_std", self.domain.obs_std),
                ("config.data.linear.targets_per_intervention", self.targets_per_intervention),
            ) if value is None
        ]
        if missing:
            warnings.warn(
                f"{source}: the model's meta lacks {', '.join(missing)}; the checks that need them are skipped "
                "(multi-target queries are refused without targets_per_intervention)",
                stacklevel=3,
            )

    @property
    def intervention_values(self) -> list[float]:
        return [float(v) for v in self.model.cfg.intervention_values]

    @property
    def targets_per_intervention(self) -> int | None:
        return meta_value(self.meta, "config", "data", "linear", "targets_per_intervention")

    @property
    def value_encoded(self) -> bool:
        return self.model.cfg.intervention_encoding == "value"

    def value_index(self, value: float | None) -> tuple[int, float]:
        """(index, value) of `value` in the model's table; None means the table's only value.
        A value-encoded model takes any finite value (index 0)."""
        table = self.intervention_values
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value)):
            expected = "a finite number" if self.value_encoded else f"a number from the model's table {table}"
            raise PredictError(f"value must be {expected}; got {value!r}")
        if self.value_encoded:
            if value is None:
                raise PredictError("this model answers do(target = value) for any value: give one with value=")
            return 0, float(value)
        if value is None:
            if len(table) == 1:
                return 0, table[0]
            raise PredictError(f"the model knows several intervention values {table}; choose one with value=")
        for index, known in enumerate(table):
            if math.isclose(float(value), known, rel_tol=1e-6, abs_tol=1e-9):
                return index, known
        raise PredictError(
            f"value {value:g} is not in the model's table of intervention values {table}: "
            f"the model predicts do(target = v) only for v in that table"
        )

    def _target_mask(self, target: str | Sequence[str], columns: list[str]) -> tuple[list[str], np.ndarray]:
        names = [target] if isinstance(target, str) else list(target)
        if not names or not all(isinstance(name, str) for name in names):
            raise PredictError(f"target must be a column name or a list of column names; got {target!r}")
        unknown = [name for name in names if name not in columns]
        if unknown:
            shown = columns if len(columns) <= 20 else columns[:20] + ["..."]
            raise PredictError(f"unknown target {unknown[0]!r}: the table's columns are {shown}")
        if len(set(names)) != len(names):
            raise PredictError(f"target lists a column twice: {names}")
        trained = self.targets_per_intervention
        if len(names) > 1 and (trained is None or trained <= 1):
            raise PredictError(
                f"several targets {names} need a model trained on multi-target interventions "
                f"(config data.linear.targets_per_intervention > 1); this model's is {trained}"
            )
        if trained is not None and trained > 1 and len(names) != trained:
            warnings.warn(
                f"the model was trained on interventions on {trained} variables at once; this query has {len(names)}",
                stacklevel=4,
            )
        mask = np.zeros(len(columns), dtype=np.float32)
        mask[[columns.index(name) for name in names]] = 1.0
        return names, mask

    def predict_many(
        self,
        obs_table: pd.DataFrame | Mapping[str, Any] | np.ndarray,
        queries: Sequence[tuple[str | Sequence[str], float | None]],
        prior_samples: int = 50,
        seed: int = 0,
        columns: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """One Prediction per (target, value) query, all from one batched forward pass."""
        table = as_table(obs_table, columns)
        names = list(table.columns)
        if not queries:
            raise PredictError("predict_many needs at least one (target, value) query")
        if not isinstance(prior_samples, int) or prior_samples < 1:
            raise PredictError(f"prior_samples must be a positive integer; got {prior_samples!r}")
        parsed = []
        for query in queries:
            if not isinstance(query, (tuple, list)) or len(query) != 2:
                raise PredictError(f"each query must be a (target, value) pair; got {query!r}")
            target_names, mask = self._target_mask(query[0], names)
            index, value = self.value_index(query[1])
            self.domain.check_value(table, target_names[0], value, stacklevel=3)
            parsed.append((target_names, mask, index, value))
        self.domain.check_table(table, stacklevel=3)

        chunks = torch.tensor(observation_chunks(table.to_numpy(), self.domain.max_rows, seed),
                              dtype=torch.float32, device=self.device)  # (k, n, d)
        k, batch = len(chunks), len(parsed)
        obs = chunks.unsqueeze(0).expand(batch, -1, -1, -1).flatten(0, 1)  # (B · k, n, d), query-major
        targets = torch.as_tensor(np.stack([mask for _, mask, _, _ in parsed]), device=self.device)  # (B, d)
        value_index = torch.tensor([index for _, _, index, _ in parsed], dtype=torch.long, device=self.device)
        values = torch.tensor([value for _, _, _, value in parsed], dtype=torch.float32, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        mixture = self.model.predict(obs, targets.repeat_interleave(k, 0), value_index.repeat_interleave(k),
                                     prior_samples=prior_samples, generator=generator,
                                     values=values.repeat_interleave(k))
        mixture = pool_chunks(mixture, k)
        std_floor = math.sqrt(self.model.cfg.cov_floor)
        return [
            Prediction(mixture.select(i), names, target_names, value, table, prior_samples, std_floor)
            for i, (target_names, _, _, value) in enumerate(parsed)
        ]

    def predict(
        self,
        obs_table: pd.DataFrame | Mapping[str, Any] | np.ndarray,
        target: str | Sequence[str],
        value: float | None = None,
        prior_samples: int = 50,
        seed: int = 0,
        columns: Sequence[str] | None = None,
    ) -> Prediction:
        """p(V | obs_table, do(target = value)); value None means the model's only table value."""
        return self.predict_many(obs_table, [(target, value)], prior_samples, seed, columns)[0]


def load(model: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> Predictor:
    """A Predictor from an exported model directory (model.safetensors + config.json) or the name of a
    shipped model (`activa_ray.pretrained.available()`, e.g. "gauss8"; default "universal")."""
    try:
        model_dir = resolve(model)
        network, meta = load_model(model_dir, device=device)
    except ModelFileError as error:
        raise PredictError(f"not an exported activa_ray model: {error}") from None
    return Predictor(network, meta, source=str(model_dir))

