"""What an exported model was trained on, read from its meta, and the warnings for a query outside it.

A fixed-shape model (the paper's presets) saw one d, one N, raw values in the simulator's units and
a table of intervention values. A model trained with `data.d_range` / `data.n_samples_range` saw
every d and N in them; a standardising model does not care about units; a value-encoded model
answers any value within `data.linear.value_sd_range` observational standard deviations of the
target's observational mean. A warning, not an error, says when a query leaves that domain.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from activa_ray.model.config import ModelConfig

# The data's mean |x| or std this many times above or below the training data's triggers a warning.
SCALE_FACTOR = 5.0
# A fixed-N model: fewer rows than n_samples / ROWS_FACTOR trigger a warning; more than n_samples * ROWS_FACTOR
# are answered from chunks of at most that many rows (predictor.observation_chunks).
ROWS_FACTOR = 2.0


def meta_value(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def warn_if_other_d(d: int, trained_d: int | None, what: str, stacklevel: int = 2) -> None:
    """Warn when data of d variables meets a model trained on another d (None: unknown, no check)."""
    if trained_d is not None and d != trained_d:
        warnings.warn(
            f"{what} has d = {d} variables; the model was trained on d = {trained_d} "
            "(it accepts any d, but accuracy away from the trained d is not guaranteed)",
            stacklevel=stacklevel,
        )


@dataclass
class TrainedDomain:
    d: int | None  # the nominal d (validation, evaluation)
    n_samples: int | None
    d_range: list[int]  # [] unless training drew d
    n_samples_range: list[int]
    value_sd_range: list[float]  # [] unless the values were drawn relative to the target's spread
    standardized: bool
    obs_abs_mean: float | None
    obs_std: float | None

    @classmethod
    def from_meta(cls, meta: dict, model_cfg: ModelConfig) -> TrainedDomain:
        data = meta_value(meta, "config", "data") or {}
        return cls(
            d=meta_value(meta, "data", "d"),
            n_samples=meta_value(meta, "data", "n_samples"),
            d_range=list(data.get("d_range") or []),
            n_samples_range=list(data.get("n_samples_range") or []),
            value_sd_range=list(meta_value(data, "linear", "value_sd_range") or []),
            standardized=model_cfg.standardize,
            obs_abs_mean=meta_value(meta, "data_stats", "obs_abs_mean"),
            obs_std=meta_value(meta, "data_stats", "obs_std"),
        )

    @property
    def max_rows(self) -> int | None:
        """The most observational rows the model was trained on (None: unknown)."""
        if self.n_samples_range:
            return self.n_samples_range[1]
        return None if self.n_samples is None else int(self.n_samples * ROWS_FACTOR)

    def check_table(self, table: pd.DataFrame, stacklevel: int) -> None:
        """Warn when the table's d, N or (for a raw-value model) scale lie outside the training data's."""
        n_rows, d = table.shape
        if self.d_range:
            if not self.d_range[0] <= d <= self.d_range[1]:
                warnings.warn(f"the table has d = {d} variables; the model was trained on d in {self.d_range} "
                              "(accuracy beyond that range is not guaranteed)", stacklevel=stacklevel)
        else:
            warn_if_other_d(d, self.d, "the table", stacklevel=stacklevel + 1)
        if self.n_samples_range:
            if n_rows < self.n_samples_range[0]:
                warnings.warn(f"the table has N = {n_rows} rows; the model was trained on N in "
                              f"{self.n_samples_range} (fewer rows than that is not guaranteed)", stacklevel=stacklevel)
        elif self.n_samples is not None and n_rows < self.n_samples / ROWS_FACTOR:
            warnings.warn(
                f"the table has N = {n_rows} rows; the model was trained on N = {self.n_samples} observational "
                f"samples (accuracy with fewer than 1/{ROWS_FACTOR:g} of the trained N is not guaranteed)",
                stacklevel=stacklevel,
            )
        if not self.standardized:
            self._check_scale(table.to_numpy(), stacklevel + 1)

    def _check_scale(self, values: np.ndarray, stacklevel: int) -> None:
        ours = {"mean |x|": float(np.abs(values).mean()), "std": float(values.std())}
        trained = {"mean |x|": self.obs_abs_mean, "std": self.obs_std}
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
                stacklevel=stacklevel,
            )

    def check_value(self, table: pd.DataFrame, target: str, value: float, stacklevel: int) -> None:
        """Warn when a value-encoded model's value lies outside the trained range of standard deviations."""
        if not self.value_sd_range:
            return
        column = table[target].to_numpy(dtype=np.float64)
        std = column.std()
        sds = (value - column.mean()) / std if std > 0 else np.inf
        low, high = self.value_sd_range
        if not low <= sds <= high:
            warnings.warn(
                f"do({target} = {value:g}) is {sds:+.3g} observational standard deviations from {target}'s mean; "
                f"the model was trained on values within [{low:g}, {high:g}] standard deviations",
                stacklevel=stacklevel,
            )
