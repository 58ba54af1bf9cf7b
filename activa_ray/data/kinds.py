"""The data kinds, one entry each: how a kind is simulated, which intervention values it uses,
whether an intervention pins the target (point mass), and which baselines apply to it.

    linear-gauss  linear SCM, Gaussian noise (paper appendix A.1); do(X = v) for v in data.linear's table
    linear-beta   linear SCM, Beta noise
    linear-mixed  linear SCM, Gaussian or Beta noise per model (one model for both: the universal preset)
    sergio        SERGIO gene regulatory networks (data/sergio.py); knockouts do(X = 0), a point mass

The registry sits above the simulators (scm.py, sergio.py) and below the checks that ask it
(simulate.py, and config.py, which checks that a model's intervention settings fit its data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
import numpy as np

from activa_ray.data.config import DataConfig
from activa_ray.data.scm import simulate_linear
from activa_ray.data.sergio import simulate_sergio
from activa_ray.model.config import ModelConfig

ALL_BASELINES = ("baseline", "no_effect", "oracle_graph", "lingam", "ges_mec")


def _linear_simulator(noise: str) -> Callable[..., dict]:
    def simulate(data_cfg: DataConfig, rng: np.random.Generator, n_models: int, with_ref: bool) -> dict:
        if noise != "mixed":
            linear = dataclasses.replace(data_cfg.linear, noise=noise)
            return simulate_linear(rng, n_models, data_cfg.d, data_cfg.n_samples, linear, with_ref)
        # Each model's noise law is Gaussian or Beta with probability 1/2: two batches, stacked model-wise.
        n_beta = int(rng.binomial(n_models, 0.5))
        parts = [
            simulate_linear(rng, count, data_cfg.d, data_cfg.n_samples,
                            dataclasses.replace(data_cfg.linear, noise=law), with_ref)
            for law, count in (("gauss", n_models - n_beta), ("beta", n_beta)) if count
        ]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    return simulate


def _sergio_simulator(data_cfg: DataConfig, rng: np.random.Generator, n_models: int, with_ref: bool) -> dict:
    return simulate_sergio(rng, n_models, data_cfg.d, data_cfg.n_samples, data_cfg.sergio, with_ref)


@dataclass(frozen=True)
class Kind:
    name: str
    simulate: Callable[..., dict]  # (data_cfg, rng, n_models, with_ref) -> batch dict (see scm.py)
    noise: str | None  # the linear SCM's noise law; None: not a linear SCM (no weights, no data.linear)
    point_mass: bool  # interventions set the target to exactly the value (SERGIO knockouts)
    fixed_values: tuple[float, ...] | None  # the kind's own intervention values; None: data.linear's
    baselines: tuple[str, ...]  # evaluation methods that apply (SERGIO has no linear mechanisms to fit)

    @property
    def linear(self) -> bool:
        return self.noise is not None


KINDS: dict[str, Kind] = {
    "linear-gauss": Kind("linear-gauss", _linear_simulator("gauss"), "gauss", False, None, ALL_BASELINES),
    "linear-beta": Kind("linear-beta", _linear_simulator("beta"), "beta", False, None, ALL_BASELINES),
    "linear-mixed": Kind("linear-mixed", _linear_simulator("mixed"), "mixed", False, None, ALL_BASELINES),
    "sergio": Kind("sergio", _sergio_simulator, None, True, (0.0,), ("baseline", "no_effect")),
}


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"data kind must be one of {list(KINDS)}, got {name!r}")
    return KINDS[name]


def kind_is_point_mass(name: str) -> bool:
    """True where interventions set the target to exactly the value (an unknown kind: False)."""
    return name in KINDS and KINDS[name].point_mass


def intervention_table(data_cfg: DataConfig) -> list[float]:
    """The nominal intervention values a condition's `value_index` indexes."""
    fixed = kind_of(data_cfg.kind).fixed_values
    return list(fixed) if fixed is not None else [float(v) for v in data_cfg.linear.intervention_values]


def draws_relative_values(data_cfg: DataConfig) -> bool:
    """True where each condition's value is drawn relative to its target's spread (data.linear.value_sd_range)."""
    return kind_of(data_cfg.kind).linear and bool(data_cfg.linear.value_sd_range)


def values_per_variable(data_cfg: DataConfig) -> int:
    """Conditions per variable in a simulated model: one per table value, or one drawn value (value_sd_range)."""
    return 1 if draws_relative_values(data_cfg) else len(intervention_table(data_cfg))


def model_fit_problems(model_cfg: ModelConfig, data_cfg: DataConfig) -> list[str]:
    """`key=value: must be ...` lines where the model's intervention table or point-mass flag is not the data kind's:
    the data's value_index indexes the model's table of values, so the two must be the same list."""
    problems = []
    kind, values = kind_of(data_cfg.kind), intervention_table(data_cfg)
    if draws_relative_values(data_cfg) and model_cfg.intervention_encoding != "value":
        problems.append(f"model.intervention_encoding={model_cfg.intervention_encoding}: must be value for "
                        f"data.linear.value_sd_range={data_cfg.linear.value_sd_range} (values vary per condition)")
    if model_cfg.intervention_encoding == "index" and [float(v) for v in model_cfg.intervention_values] != values:
        source = "data.linear.intervention_values" if kind.linear else f"the values of data.kind={kind.name}"
        problems.append(f"model.intervention_values={list(model_cfg.intervention_values)}: must be {values} ({source})")
    if model_cfg.point_mass_interventions != kind.point_mass:
        problems.append(f"model.point_mass_interventions={model_cfg.point_mass_interventions}: must be "
                        f"{kind.point_mass} for data.kind={kind.name}")
    return problems
