"""One entry point for every simulator, the train/val/test split sizes, and the seed tree.

Seeds: every random draw of the data descends from `data.seed` through a SeedSequence whose
spawn key names what it is for, so the streams never overlap:
    (0, shard)        train shards        (1, shard)  val shards      (2, shard)  test shards
    (3, rank, step)   the training stream (models simulated on the fly by each worker)
A streamed training model therefore never repeats a test model, on any cluster.
"""

from __future__ import annotations

import numpy as np

from activa_ray.data.config import DataConfig
from activa_ray.data.kinds import kind_of
from activa_ray.data.sergio import check_config as check_sergio_config
from activa_ray.ranges import ConfigError, low_high_problems, range_problems

SPLITS = ("train", "val", "test")
_SPAWN_PREFIX = {"train": 0, "val": 1, "test": 2}
_STREAM_PREFIX = 3


def check_data_config(data_cfg: DataConfig) -> None:
    """Raise one ConfigError line naming every data field the simulators cannot use."""
    linear = data_cfg.linear
    problems = range_problems(data_cfg, "data")
    problems += bounds_problems("data.d_range", data_cfg.d_range, minimum=1)
    problems += bounds_problems("data.n_samples_range", data_cfg.n_samples_range, minimum=2)
    # Training draws every d in data.d_range: the simulators must take its ends, not only data.d.
    fewest, most = data_cfg.d_range if data_cfg.d_range and not problems else (data_cfg.d, data_cfg.d)
    if not kind_of(data_cfg.kind).linear:
        if not problems:
            check_sergio_config(data_cfg.sergio, data_cfg.d)
            if most != data_cfg.d:
                try:
                    check_sergio_config(data_cfg.sergio, most)
                except ConfigError as err:
                    raise ConfigError(f"data.d_range={data_cfg.d_range}: its largest d fails: {err}") from None
    else:
        problems += low_high_problems(linear, "data.linear", ("weight", "beta_param"))
        if not linear.intervention_values:
            problems.append("data.linear.intervention_values=[]: must hold at least one value")
        problems += bounds_problems("data.linear.value_sd_range", linear.value_sd_range)
        if linear.value_sd_range and linear.targets_per_intervention > 1:
            problems.append("data.linear.value_sd_range: values relative to the target's spread need "
                            "targets_per_intervention=1")
        if linear.targets_per_intervention > fewest:
            where = (f"data.d={data_cfg.d}" if fewest == data_cfg.d
                     else f"the smallest d of data.d_range={data_cfg.d_range}")
            problems.append(
                f"data.linear.targets_per_intervention={linear.targets_per_intervention}: must be <= {where}"
            )
    if problems:
        raise ConfigError("; ".join(problems))


def bounds_problems(key: str, bounds: list, minimum: float | None = None) -> list[str]:
    """The problem with an optional [low, high] list ([]: unset, fine), as one `key=value: must be ...` line."""
    at_least = "" if minimum is None else f"{minimum} <= "
    if bounds and (len(bounds) != 2 or bounds[0] > bounds[1] or (minimum is not None and bounds[0] < minimum)):
        return [f"{key}={bounds}: must be [low, high] with {at_least}low <= high"]
    return []


def simulate(data_cfg: DataConfig, rng: np.random.Generator, n_models: int, with_ref: bool = False) -> dict:
    """Simulate `n_models` causal models of `data_cfg.kind` (dict of numpy arrays, see scm.py)."""
    check_data_config(data_cfg)
    return kind_of(data_cfg.kind).simulate(data_cfg, rng, n_models, with_ref)


def split_sizes(data_cfg: DataConfig) -> dict[str, int]:
    """Models per split: test = round(n_models * test_frac); val = round(rest * val_frac)."""
    n_test = round(data_cfg.n_models * data_cfg.test_frac)
    n_trainval = data_cfg.n_models - n_test
    n_val = round(n_trainval * data_cfg.val_frac)
    return {"train": n_trainval - n_val, "val": n_val, "test": n_test}


def shard_seed(data_cfg: DataConfig, split: str, shard_index: int) -> np.random.SeedSequence:
    """The seed of shard `shard_index` of `split`: a pure function of the config's seed."""
    if split not in _SPAWN_PREFIX:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.SeedSequence(data_cfg.seed, spawn_key=(_SPAWN_PREFIX[split], shard_index))


def stream_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """Generator for the models worker `rank` simulates at training step `step` (disjoint
    from every shard's stream for the same seed)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_STREAM_PREFIX, rank, step))))


def shard_rng(data_cfg: DataConfig, split: str, shard_index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(shard_seed(data_cfg, split, shard_index)))
