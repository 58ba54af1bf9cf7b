"""The data sections of the config tree: what the simulators draw, and how the models are split into shards.

Pure data (like model/config.py): the simulators (scm.py, sergio.py) import these classes, and the checks
that need a simulator's own knowledge (the kinds, the gene networks) live beside the simulators
(`activa_ray.data.simulate.check_data_config`). The top-level `activa_ray.config` composes these sections
with the model, train, eval and W&B sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from activa_ray.ranges import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, Range


@dataclass
class LinearSCMConfig:
    """Linear additive SCMs of paper appendix A.1."""

    graph: Literal["er_acyclify", "er_ordered"] = "er_acyclify"  # paper: ER(d, p) then drop random edges until acyclic
    edge_prob: float = 0.3
    weight_low: float = 0.5  # |β_ij| ~ U(weight_low, weight_high), random sign
    weight_high: float = 2.0
    noise: Literal["gauss", "beta"] = "gauss"
    noise_std: float = 0.5  # Gaussian noise N(0, noise_std²)
    beta_param_low: float = 0.5  # Beta(α_j, β_j) with α_j, β_j ~ U(low, high) per variable
    beta_param_high: float = 2.0
    intervention_values: list[float] = field(default_factory=lambda: [5.0])
    # [low, high]: each condition's value is instead the target's observational sample mean plus u of its
    # observational standard deviations, u ~ U(low, high) (for value-encoded models); []: intervention_values.
    value_sd_range: list[float] = field(default_factory=list)
    jitter_var: float = 0.1  # realised value = nominal + N(0, jitter_var) per sample
    targets_per_intervention: int = 1  # >1: multi-target interventions on random variable sets

    RANGES: ClassVar[dict[str, Range]] = {
        "edge_prob": FRACTION, "weight_low": AT_LEAST_0, "weight_high": AT_LEAST_0, "noise_std": POSITIVE,
        "beta_param_low": POSITIVE, "beta_param_high": POSITIVE, "jitter_var": AT_LEAST_0,
        "targets_per_intervention": AT_LEAST_1,
    }


@dataclass
class SergioConfig:
    """SERGIO steady-state simulation (activa_ray/data/sergio.py); defaults are the in-distribution ranges."""

    networks: list[str] = field(default_factory=lambda: ["ecoli", "yeast"])
    interaction_low: float = 1.0  # |k_ij| ~ U(low, high)
    interaction_high: float = 5.0
    sign_beta: float = 1.0  # P(activator) per regulator ~ Beta(sign_beta, sign_beta)
    basal_low: float = 0.0  # master regulators' production b ~ U(low, high)
    basal_high: float = 1.0
    hill: list[float] = field(default_factory=lambda: [1.9, 2.0, 2.1])
    decay: list[float] = field(default_factory=lambda: [0.7, 0.8, 0.9])
    noise_scale: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    dt: float = 0.01
    technical_noise: bool = False
    platform: Literal["10x"] = "10x"

    RANGES: ClassVar[dict[str, Range]] = {
        "interaction_low": AT_LEAST_0, "interaction_high": AT_LEAST_0, "sign_beta": POSITIVE,
        "basal_low": AT_LEAST_0, "basal_high": AT_LEAST_0, "dt": POSITIVE,
    }


@dataclass
class DataConfig:
    kind: Literal["linear-gauss", "linear-beta", "linear-mixed", "sergio"] = "linear-gauss"
    d: int = 2
    n_samples: int = 40  # samples per condition, observational and interventional alike
    # Streamed training only: [low, high] draws each step's d (and N) uniformly, one shape per step; the
    # batch then holds batch_size · (d · n_samples) / (its d · N) examples (the same number of values).
    # []: always d (n_samples). Validation, shards and evaluation keep d and n_samples.
    d_range: list[int] = field(default_factory=list)
    n_samples_range: list[int] = field(default_factory=list)
    n_models: int = 10_000  # train (incl. val) + test
    test_frac: float = 0.1  # 1.0: an evaluation-only set (e.g. SERGIO out-of-distribution)
    val_frac: float = 0.02  # of the training models, carved out for validation
    models_per_shard: int = 1_000
    seed: int = 0
    source: Literal["stream", "shards"] = "stream"  # training data: simulate on the fly, or read `dir`
    dir: str = ""  # shard root written by `activa generate` (source=shards, evaluation)
    linear: LinearSCMConfig = field(default_factory=LinearSCMConfig)
    sergio: SergioConfig = field(default_factory=SergioConfig)

    RANGES: ClassVar[dict[str, Range]] = {
        "d": AT_LEAST_1, "n_samples": Range(2), "n_models": AT_LEAST_1, "test_frac": FRACTION,
        "val_frac": Range(0, 1, high_open=True), "models_per_shard": AT_LEAST_1, "seed": AT_LEAST_0,
    }
