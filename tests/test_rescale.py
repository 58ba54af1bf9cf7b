"""The units test: rescaled inputs, predictions mapped back, the equivariant baseline unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activa_ray.config import load_config
from activa_ray.data.simulate import simulate
from activa_ray.eval.pairs import flatten_pairs
from activa_ray.eval.rescale import rescale, scale_sensitivity
from activa_ray.model.activa import Activa


@pytest.fixture
def pairs():
    cfg = load_config(None, ["data.d=3", "data.n_samples=30"])
    return flatten_pairs(simulate(cfg.data, np.random.default_rng(0), 8))


def test_rescale_keeps_the_target_and_scales_the_rest(pairs):
    rescaled, scales = rescale(pairs, np.random.default_rng(1))
    targets = pairs["targets"].astype(bool)
    assert np.all(scales[targets] == 1.0) and np.all((scales >= 0.2) & (scales <= 5.0))
    np.testing.assert_allclose(rescaled["obs"], pairs["obs"] * scales[:, None, :], rtol=1e-6)
    np.testing.assert_allclose(rescaled["int"][..., targets[0]][0], pairs["int"][..., targets[0]][0])


def test_the_conditional_baseline_is_unchanged_by_units_and_the_model_is_scored_in_both(pairs, one_thread):
    torch.manual_seed(0)
    model = Activa(load_config(None, ["data.d=3"]).model)
    result = scale_sensitivity(model, pairs)
    for metric in ("mmd", "wsd", "erg"):
        assert result["rescaled"]["baseline"][metric] == pytest.approx(result["original"]["baseline"][metric], rel=1e-2)  # up to its ridge
        assert np.isfinite(result["rescaled"]["activa"][metric])
