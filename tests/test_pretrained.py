"""Shipped models: every one loads by name from the installed package and records its budget and scores."""

from __future__ import annotations

import pytest
import torch

from activa_ray.model.io import ModelFileError, load_model
from activa_ray.pretrained import available, resolve, ship


def test_the_trained_presets_are_shipped():
    assert {"gauss2", "beta2", "gauss8", "beta8", "sergio", "universal"} <= set(available())


@pytest.mark.parametrize("name", available())
def test_a_shipped_model_loads_by_name_and_beats_the_conditional_baseline_on_its_test_split(name):
    model, meta = load_model(resolve(name))
    shipped = meta["shipped"]
    assert shipped["name"] == name and shipped["examples_seen"] > 0 and shipped["purpose"]
    scores = shipped["test_scores"]
    if scores.get("protocol") == "unit-free":  # scored on fresh SCMs in arbitrary units, per set
        assert sum(entry["pairs"] for entry in scores["sets"].values()) >= 1000
        for name_of_set, entry in scores["sets"].items():
            # What the README claims, S = 50: below the conditional baseline, no effect and GES + least squares on
            # MMD, WSD, ERG and the descendants' WSD, and within 1.25x of DirectLiNGAM + least squares on WSD.
            for reference in ("baseline", "no_effect", "ges_mec"):
                for metric in ("mmd", "wsd", "erg", "descendants_wsd"):
                    assert entry["activa_s50"][metric][0] < entry[reference][metric][0], (name_of_set, reference, metric)
            assert entry["activa_s50"]["wsd"][0] < 1.25 * entry["lingam"]["wsd"][0], name_of_set
    else:
        assert scores["pairs"] >= 1000
        # What README claims for every paper preset: below the conditional baseline on MMD and ERG.
        for metric in ("mmd", "erg"):
            assert scores["activa_s1"][metric][0] < scores["baseline"][metric][0], metric
        assert all(scores[method]["wsd"][0] > 0 for method in ("activa_s1", "baseline"))
    assert sum(p.numel() for p in model.parameters()) * 4 < 5.5e6  # at most ~5 MB of fp32 weights
    d = meta["data"]["d"]
    model.eval()
    mixture = model.predict(torch.randn(2, 30, d), torch.eye(d)[:2], torch.zeros(2, dtype=torch.long),
                            values=torch.full((2,), 5.0))
    assert torch.isfinite(mixture.mean).all()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_ship_refuses_a_name_that_is_not_a_plain_folder_name_and_deletes_nothing(name, tmp_path):
    before = available()
    with pytest.raises(ModelFileError, match="a shipped model's name is letters"):
        ship(tmp_path, name, tmp_path, "purpose")
    assert available() == before


def test_an_unknown_name_lists_what_is_shipped():
    with pytest.raises(ModelFileError, match="gauss2"):
        resolve("no-such-model")


def test_predict_loads_a_shipped_model_by_name_from_python_and_the_command_line(load_job, tmp_path):
    from activa_ray.predict import load

    predictor = load("gauss2")
    assert predictor.model.cfg.embed_dim == 64
    table = {"x": [0.1, -0.3, 0.5, 0.2], "y": [0.0, 0.4, -0.2, 0.1]}
    assert set(predictor.predict(table, target="x", value=5.0, seed=0).sample(10, seed=0)) == {"x", "y"}
    csv = tmp_path / "obs.csv"
    csv.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in zip(table["x"], table["y"])) + "\n")
    assert load_job("predict").main(["--model", "gauss2", "--data", str(csv), "--target", "x", "--value", "5",
                                "--out", str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "samples.csv").is_file()


def test_predict_without_a_model_uses_the_universal_model_in_any_units_and_at_any_value(load_job, tmp_path):
    import numpy as np
    import pandas as pd

    from activa_ray.predict import load

    predictor = load()
    assert predictor.model.cfg.intervention_encoding == "value" and predictor.model.cfg.standardize
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(40, 6)) * 300.0 + 1e4, columns=[f"g{j}" for j in range(6)])
    value = float(table["g2"].mean() - 2.5 * table["g2"].std())
    prediction = predictor.predict(table, "g2", value=value, seed=0)
    assert abs(prediction.mean["g2"] - value) < 0.5 * table["g2"].std()  # the target lands at the value asked
    csv = tmp_path / "obs.csv"
    table.to_csv(csv, index=False)
    assert load_job("predict").main(["--data", str(csv), "--target", "g2", "--value", str(value),
                                     "--out", str(tmp_path / "pred"), "--no-plot"]) == 0
    assert (tmp_path / "pred" / "summary.json").is_file()
