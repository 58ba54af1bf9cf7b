"""Totals over shards: per-pair metric arrays, pair labels, failures, errors and time per method,
and the samples of the first few models for the figures; then the summary tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from activa_ray.eval.metrics import METRIC_NAMES
from activa_ray.eval.report import summarize
from activa_ray.eval.shard import FLOOR, ROLES, ShardResult

LABELS = ("model_id", "condition", "targets", "values")


@dataclass
class Totals:
    figure_models: int  # how many models keep their samples for the figures
    metrics: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)  # method -> "role/metric" -> chunks
    labels: dict[str, list[np.ndarray]] = field(default_factory=lambda: {key: [] for key in LABELS})
    failures: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    kept: list[dict] = field(default_factory=list)
    has_floor: bool = True  # every shard so far had int_ref
    pairs: int = 0
    samples_per_pair: int = 0

    def add(self, pairs: dict, result: ShardResult, models: int, conditions: int) -> None:
        """Append one shard's result (its pairs: `models` models x `conditions` conditions)."""
        for name, values in result.metrics.items():
            slot = self.metrics.setdefault(name, {})
            for key, array in values.items():
                slot.setdefault(key, []).append(array)
        for name in result.failures:
            self.failures[name] = self.failures.get(name, 0) + result.failures[name]
        for name, messages in result.errors.items():
            self.errors.setdefault(name, []).extend(messages)
        for name, seconds in result.seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.labels["model_id"].append(pairs["model_id"])
        self.labels["condition"].append(pairs["condition"])
        self.labels["targets"].append(np.array([
            "+".join(pairs["var_names"][p][pairs["targets"][p].astype(bool)]) for p in range(len(pairs["obs"]))
        ]))
        self.labels["values"].append(pairs["values"])
        self._keep_for_figures(pairs, result, models, conditions)
        self.pairs += len(pairs["obs"])
        self.samples_per_pair = int(pairs["int"].shape[1])

    def _keep_for_figures(self, pairs: dict, result: ShardResult, models: int, conditions: int) -> None:
        for m in range(min(models, self.figure_models - len(self.kept))):
            rows = slice(m * conditions, (m + 1) * conditions)
            self.kept.append({
                "model_id": int(pairs["model_id"][rows.start]),
                "obs": pairs["obs"][rows.start],
                "truth": pairs["int"][rows],
                "targets": pairs["targets"][rows],
                "values": pairs["values"][rows],
                "var_names": list(pairs["var_names"][rows.start]),
                "predictions": {name: samples[rows] for name, samples in result.predictions.items() if name != FLOOR},
            })

    def alias(self, name: str, of: str) -> None:
        """Report method `of` again under `name` (the default S as plain `activa`)."""
        self.metrics[name] = self.metrics[of]
        self.seconds[name] = self.seconds[of]

    def arrays(self, order: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """method -> "role/metric" -> (P,) over all shards, for the methods in `order`."""
        return {name: {key: np.concatenate(chunks) for key, chunks in self.metrics[name].items()} for name in order}

    def tables(self, arrays: dict) -> tuple[dict, dict]:
        """(results over all variables, {role: results}) with results = {method: {metric: {mean, sem, n}}}."""
        def table(role: str) -> dict:
            return {name: summarize({m: values[f"{role}/{m}"] for m in METRIC_NAMES}) for name, values in arrays.items()}

        return table("all"), {role: table(role) for role in ROLES[1:]}

    def timing_ms(self, order: list[str]) -> dict[str, float]:
        """Milliseconds per (model, condition) pair for every method that has a time."""
        return {name: 1000.0 * self.seconds[name] / self.pairs for name in order if name in self.seconds}

    def per_pair_rows(self, arrays: dict) -> tuple[list[str], list[list]]:
        """per_pair.csv: one row per (pair, method, role)."""
        labels = {key: np.concatenate(chunks) for key, chunks in self.labels.items()}
        header = ["model_id", "condition", "targets", "value", "method", "role", *METRIC_NAMES]
        rows = []
        for name, values in arrays.items():
            for role in ROLES:
                columns = [values[f"{role}/{m}"] for m in METRIC_NAMES]
                for p in range(len(labels["model_id"])):
                    rows.append([int(labels["model_id"][p]), int(labels["condition"][p]), labels["targets"][p],
                                 float(labels["values"][p]), name, role, *(float(c[p]) for c in columns)])
        return header, rows
