"""The unit-free protocol: models in arbitrary units, hard interventions, scores per variable in SD units,
every reference, reuse of the references, and the command line."""

from __future__ import annotations

import json

import numpy as np
import torch

from activa_ray.eval.unitfree import (ProtocolSet, REFERENCES, reference_samples, run_protocol, simulate_set,
                                      unit_free_scores)
from activa_ray.model.io import save_model
from activa_ray.model.structure import StructureActiva, StructureConfig
from activa_ray.predict.predictor import Predictor

SET = ProtocolSet(4, "beta", 6, n_samples=60)


def test_a_protocol_set_is_in_arbitrary_units_with_the_targets_held_at_mean_plus_or_minus_two_sds():
    pairs = simulate_set(SET, seed=0)
    sd = pairs["obs"].std(1)  # (P, d)
    assert sd.max() / sd.min() > 100  # units spread over decades
    target = pairs["targets"].argmax(-1)
    rows = np.arange(len(target))
    held = pairs["int"][rows, :, target]  # (P, N): a hard intervention, exactly the value
    np.testing.assert_allclose(held, pairs["values"][:, None].repeat(held.shape[1], 1), rtol=1e-5)
    standardized = (pairs["values"] - pairs["obs"][rows, :, target].mean(1)) / sd[rows, target]
    np.testing.assert_allclose(np.abs(standardized), 2.0, rtol=1e-3)
    assert (standardized > 0).any() and (standardized < 0).any()


def test_the_true_graph_scores_near_the_floor_and_far_below_no_effect_in_sd_units():
    pairs = simulate_set(SET, seed=1)
    samples = reference_samples(pairs, seed=1)
    scores = {name: {key: np.nanmean(v) for key, v in unit_free_scores(pairs, s).items()} for name, s in samples.items()}
    assert set(samples) == {*REFERENCES, "floor"}
    assert scores["floor"]["wsd"] < scores["oracle_graph"]["wsd"] < scores["no_effect"]["wsd"]
    assert scores["oracle_graph"]["descendants_wsd"] < 0.5 * scores["no_effect"]["descendants_wsd"]
    assert scores["floor"]["wsd"] < scores["true_descendants"]["wsd"] < scores["no_effect"]["wsd"]
    assert scores["true_descendants"]["descendants_wsd"] < 0.5 * scores["no_effect"]["descendants_wsd"]


def test_the_protocol_reports_every_method_and_reuses_the_references(tmp_path, load_job):
    torch.manual_seed(0)
    model = StructureActiva(StructureConfig(embed_dim=16, hidden_dim=16, layers=1, heads=2, hypotheses=2))
    predictor = Predictor(model, {"data": {"d": 4, "n_samples": 60}}, "test")
    first = run_protocol(predictor, [SET], prior_samples=(5, 1), seed=3, log=lambda _: None)
    methods = first["sets"][SET.name]["methods"]
    assert set(methods) == {"activa_s5", "activa_s1", *REFERENCES, "floor"}
    assert all(methods[m]["mmd"][2] == SET.models * SET.d for m in methods)
    again = run_protocol(predictor, [SET], prior_samples=(5, 1), seed=3, known=first, log=lambda _: None)
    assert again == first
    save_model(model, tmp_path / "export", {"data": {"d": 4, "n_samples": 60}})
    out = tmp_path / "protocol"
    assert load_job("evaluate").main(["--model", str(tmp_path / "export"), "--protocol", "unit-free",
                                      "--protocol-scale", "0.03", "--protocol-sets", "d5_beta", "--out", str(out)]) == 0
    results = json.loads((out / "protocol.json").read_text())
    assert list(results["sets"]) == ["d5_beta"] and results["sets"]["d5_beta"]["spec"]["models"] == 3
    assert "| d5_beta |" in (out / "protocol.md").read_text()
    assert load_job("evaluate").main(["--model", str(tmp_path / "export"), "--protocol", "unit-free",
                                      "--protocol-sets", "d7_gauss", "--out", str(tmp_path / "none")]) == 2


def test_the_protocol_refuses_a_model_that_knows_only_its_table_of_values(tmp_path, load_job, capsys):
    assert load_job("evaluate").main(["--model", "gauss2", "--protocol", "unit-free", "--out", str(tmp_path)]) == 2
    assert "needs a value-conditioned model" in capsys.readouterr().err
    assert not (tmp_path / "protocol.json").exists()

