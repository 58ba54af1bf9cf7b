"""Shipped models: every one loads by name from the installed package and records its budget and scores."""

from __future__ import annotations

import pytest
import torch

from activa_ray.model.io import ModelFileError, load_model
from activa_ray.pretrained import available, resolve


def test_the_bivariate_presets_are_shipped():
    assert {"gauss2", "beta2"} <= set(available())


@pytest.mark.parametrize("name", available())
def test_a_shipped_model_loads_by_name_and_beats_the_conditional_baseline_on_its_test_split(name):
    model, meta = load_model(resolve(name))
    shipped = meta["shipped"]
    assert shipped["name"] == name and shipped["examples_seen"] > 0 and shipped["purpose"]
    scores = shipped["test_scores"]
    assert scores["pairs"] >= 1000
    for metric in ("mmd", "wsd", "erg"):
        assert scores["activa_s1"][metric][0] < scores["baseline"][metric][0], metric
    assert sum(p.numel() for p in model.parameters()) * 4 < 5.5e6  # at most ~5 MB of fp32 weights
    d = meta["data"]["d"]
    model.eval()
    mixture = model.predict(torch.randn(2, 30, d), torch.eye(d)[:2], torch.zeros(2, dtype=torch.long))
    assert torch.isfinite(mixture.mean).all()


def test_an_unknown_name_lists_what_is_shipped():
    with pytest.raises(ModelFileError, match="gauss2"):
        resolve("no-such-model")
