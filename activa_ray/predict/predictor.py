"""An exported ACTIVA model answering queries on observational tables (no Ray).

The model is trained on raw, unstandardised values (as in the paper) and the intervention value
is an absolute value in the data's units (do(X = 5.0)), so the table is fed as it is; no
standardisation is applied or inverted. A warning (not an error) says when the table's scale,
its number of variables d or rows N lie far from what the model was trained on.
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
from activa_ray.predict.prediction import Prediction
from activa_ray.predict.tables import PredictError, as_table
from activa_ray.pretrained import resolve

# The data's mean |x| or std this many times above or below the training data's triggers a warning.
SCALE_FACTOR = 5.0
# N outside [n_samples / ROWS_FACTOR, n_samples * ROWS_FACTOR] triggers a warning.
ROWS_FACTOR = 2.0


def warn_if_other_d(d: int, trained_d: int | None, what: str, stacklevel: int = 2) -> None:
    """Warn when data of d variables meets a model trained on another d (None: unknown, no check)."""
    if trained_d is not None and d != trained_d:
        warnings.warn(
            f"{what} has d = {d} variables; the model was trained on d = {trained_d} "
            "(it accepts any d, but accuracy away from the trained d is not guaranteed)",
            stacklevel=stacklevel,
        )


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


class Predictor:
    """An exported ACTIVA model ready to answer queries on observational tables."""

    def __init__(self, model: Activa, meta: dict | None = None, source: str = "model") -> None:
        self.model = model.eval()
        self.meta = meta or {}
        self.source = source
        self.device = next(model.parameters()).device
        missing = [
            name for name, value in (
                ("data.d", self.trained_d),
                ("data.n_samples", self.trained_n_samples),
                ("data_stats.obs_abs_mean", _get(self.meta, "data_stats", "obs_abs_mean")),
                ("data_stats.obs_std", _get(self.meta, "data_stats", "obs_std")),
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
    def trained_d(self) -> int | None:
        return _get(self.meta, "data", "d")

    @property
    def trained_n_samples(self) -> int | None:
        return _get(self.meta, "data", "n_samples")

    @property
    def targets_per_intervention(self) -> int | None:
        return _get(self.meta, "config", "data", "linear", "targets_per_intervention")

    def value_index(self, value: float | None) -> tuple[int, float]:
        """(index, value) of `value` in the model's table; None means the table's only value."""
        table = self.intervention_values
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise PredictError(f"value must be a number from the model's table {table}; got {value!r}")
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

    def check_scale(self, table: pd.DataFrame) -> None:
        """Warn when d, N or the data's scale lie far from the training data (the model sees raw values)."""
        n_rows, d = table.shape
        warn_if_other_d(d, self.trained_d, "the table", stacklevel=5)
        trained_n = self.trained_n_samples
        if trained_n is not None and not trained_n / ROWS_FACTOR <= n_rows <= trained_n * ROWS_FACTOR:
            warnings.warn(
                f"the table has N = {n_rows} rows; the model was trained on N = {trained_n} observational samples "
                f"(it accepts any N, but accuracy beyond {ROWS_FACTOR:g}x of the trained N is not guaranteed)",
                stacklevel=4,
            )
        values = table.to_numpy()
        ours = {"mean |x|": float(np.abs(values).mean()), "std": float(values.std())}
        trained = {
            "mean |x|": _get(self.meta, "data_stats", "obs_abs_mean"),
            "std": _get(self.meta, "data_stats", "obs_std"),
        }
        far = [
            key for key in ours
            if trained[key] is not None and trained[key] > 0
            and not trained[key] / SCALE_FACTOR <= ours[key] <= trained[key] * SCALE_FACTOR
        ]
        if far:
            described = ", ".join(f"{key} {ours[key]:.3g} vs {trained[key]:.3g}" for key in far)
            warnings.warn(
                f"the data's scale is far from the training data's ({described}; more than {SCALE_FACTOR:g}x apart): "
                "the model works on raw, unstandardised values, so its predictions here are unreliable. "
                "Rescaling the data also rescales what do(target = value) means.",
                stacklevel=4,
            )

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
            parsed.append((target_names, mask, index, value))
        self.check_scale(table)

        batch = len(parsed)
        obs = torch.tensor(table.to_numpy(), dtype=torch.float32, device=self.device)
        obs = obs.unsqueeze(0).expand(batch, -1, -1)  # (B, N, d)
        targets = torch.as_tensor(np.stack([mask for _, mask, _, _ in parsed]), device=self.device)  # (B, d)
        value_index = torch.tensor([index for _, _, index, _ in parsed], dtype=torch.long, device=self.device)
        values = torch.tensor([value for _, _, _, value in parsed], dtype=torch.float32, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        mixture = self.model.predict(obs, targets, value_index, prior_samples=prior_samples,
                                     generator=generator, values=values)
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


def load(model: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """A Predictor from an exported model directory (model.safetensors + config.json) or the name of a
    shipped model (`activa_ray.pretrained.available()`, e.g. "gauss8")."""
    try:
        model_dir = resolve(model)
        network, meta = load_model(model_dir, device=device)
    except ModelFileError as error:
        raise PredictError(f"not an exported activa_ray model: {error}") from None
    return Predictor(network, meta, source=str(model_dir))

