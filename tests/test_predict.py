"""activa_ray.predict and jobs/predict.py on tiny exported models (no Ray)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate, stats

from activa_ray.model.activa import Activa
from activa_ray.model.config import ModelConfig
from activa_ray.model.io import save_model
from activa_ray.model.mixture import GaussianMixture
from activa_ray.predict import (
    Prediction,
    PredictError,
    Predictor,
    as_table,
    hellinger_gaussian,
    load,
    read_table,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "obs_small.csv"
EXAMPLE_COLUMNS = ["gene_1", "gene_2", "gene_3", "gene_4", "gene_5"]


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig(embed_dim=16, hidden_dim=32, heads=2, encoder_layers=2, decoder_layers=1, **overrides)


def full_meta(targets_per_intervention: int = 1, values=(5.0,)) -> dict:
    """The meta the training code exports, sized like the shipped example (d = 5, N = 200)."""
    return {
        "name": "tiny",
        "step": 0,
        "data": {"kind": "linear-gauss", "d": 5, "n_samples": 200, "intervention_values": list(values)},
        "data_stats": {"obs_abs_mean": 0.6, "obs_std": 0.8},
        "config": {"data": {"linear": {"targets_per_intervention": targets_per_intervention}}},
    }


def export(directory: Path, cfg: ModelConfig, meta: dict | None) -> Path:
    torch.manual_seed(0)
    return save_model(Activa(cfg), directory, meta)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("linear"), tiny_config(), full_meta())


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    return load(model_dir)


@pytest.fixture(scope="module")
def example() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE)


@pytest.fixture(scope="module")
def cli(load_job):
    return load_job("predict")


# ----- the shipped example --------------------------------------------------------------


def test_shipped_example_is_a_small_clean_table(example):
    table = read_table(EXAMPLE)
    assert list(table.columns) == EXAMPLE_COLUMNS
    assert table.shape == (200, 5)
    np.testing.assert_allclose(table.to_numpy(), example.to_numpy())
    # The SCM behind it: gene_4 depends on gene_2 and gene_3, gene_5 is independent of everything.
    correlation = example.corr().to_numpy()
    assert abs(correlation[1, 3]) > 0.5 and np.all(np.abs(correlation[4, :4]) < 0.2)


# ----- the API -------------------------------------------------------------------------


def test_dataframe_prediction_keeps_names_and_its_moments_match_its_samples(predictor, example):
    prediction = predictor.predict(example, target="gene_3", value=5.0, prior_samples=20, seed=1)
    assert prediction.targets == ["gene_3"] and prediction.value == 5.0
    samples = prediction.sample(20_000, seed=2)
    assert list(samples.columns) == EXAMPLE_COLUMNS
    for frame in (prediction.marginals(), prediction.effects(), prediction.covariance):
        assert list(frame.index) == EXAMPLE_COLUMNS
    assert list(prediction.covariance.columns) == EXAMPLE_COLUMNS
    assert list(prediction.mean.index) == EXAMPLE_COLUMNS
    assert prediction.weights.shape == (20,) and math.isclose(prediction.weights.sum(), 1.0, rel_tol=1e-5)

    std = prediction.std.to_numpy()
    np.testing.assert_allclose(samples.mean().to_numpy(), prediction.mean.to_numpy(), atol=4 * std.max() / math.sqrt(20_000))
    np.testing.assert_allclose(samples.cov().to_numpy(), prediction.covariance.to_numpy(), atol=0.05 * std.max() ** 2)
    marginals = prediction.marginals()
    for column in ("q05", "q50", "q95"):
        empirical = samples.quantile(int(column[1:]) / 100).to_numpy()
        np.testing.assert_allclose(marginals[column].to_numpy(), empirical, atol=0.05 * std.max())
    np.testing.assert_allclose(marginals["std"].to_numpy(), std)


def test_numpy_dict_and_dataframe_inputs_agree(predictor, example):
    reference = predictor.predict(example, "gene_2", prior_samples=5, seed=3)
    from_numpy = predictor.predict(example.to_numpy(), "gene_2", prior_samples=5, seed=3, columns=EXAMPLE_COLUMNS)
    from_dict = predictor.predict({name: example[name].to_list() for name in EXAMPLE_COLUMNS}, "gene_2",
                                  prior_samples=5, seed=3)
    for other in (from_numpy, from_dict):
        assert other.columns == EXAMPLE_COLUMNS
        pd.testing.assert_series_equal(other.mean, reference.mean)
    unnamed = predictor.predict(example.to_numpy(), "V1", prior_samples=5, seed=3)
    assert unnamed.columns == ["V0", "V1", "V2", "V3", "V4"]
    np.testing.assert_allclose(unnamed.mean.to_numpy(), reference.mean.to_numpy())


def test_the_query_matters(predictor, example):
    first = predictor.predict(example, "gene_1", prior_samples=1, seed=0)
    fifth = predictor.predict(example, "gene_5", prior_samples=1, seed=0)
    assert not np.allclose(first.mean.to_numpy(), fifth.mean.to_numpy())


@pytest.mark.parametrize("d, n", [(1, 2), (3, 7), (9, 61)])
def test_any_d_and_n(predictor, d, n):
    rng = np.random.default_rng(d * 100 + n)
    columns = [f"x{j}" for j in range(d)]
    table = pd.DataFrame(rng.normal(0.0, 0.8, size=(n, d)), columns=columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # d and N differ from the training data on purpose
        prediction = predictor.predict(table, columns[-1], prior_samples=4, seed=0)
    assert prediction.mixture.means.shape == (1, 4, d)
    samples = prediction.sample(50, seed=0)
    assert list(samples.columns) == columns and samples.shape == (50, d)
    assert np.isfinite(prediction.log_prob(samples)).all()
    assert np.isfinite(prediction.effects().to_numpy()).all()


def test_same_seed_same_answer_other_seed_other_answer(predictor, example):
    first = predictor.predict(example, "gene_3", prior_samples=10, seed=7)
    again = predictor.predict(example, "gene_3", prior_samples=10, seed=7)
    other = predictor.predict(example, "gene_3", prior_samples=10, seed=8)
    pd.testing.assert_series_equal(first.mean, again.mean)
    pd.testing.assert_frame_equal(first.sample(100, seed=1), again.sample(100, seed=1))
    assert not np.allclose(first.mean.to_numpy(), other.mean.to_numpy())
    assert not np.allclose(first.sample(100, seed=1).to_numpy(), first.sample(100, seed=2).to_numpy())


def test_log_prob_matches_the_mixture_and_reads_columns_by_name(predictor, example):
    prediction = predictor.predict(example, "gene_4", prior_samples=3, seed=0)
    samples = prediction.sample(30, seed=0)
    expected = prediction.mixture.log_prob(torch.tensor(samples.to_numpy(), dtype=torch.float32)[None])[0].numpy()
    np.testing.assert_allclose(prediction.log_prob(samples), expected, rtol=1e-5)
    np.testing.assert_allclose(prediction.log_prob(samples[EXAMPLE_COLUMNS[::-1]]), expected, rtol=1e-5)
    np.testing.assert_allclose(prediction.log_prob(samples.to_numpy()[:1]), expected[:1], rtol=1e-5)
    with pytest.raises(PredictError, match="lacks column"):
        prediction.log_prob(samples.drop(columns="gene_2"))


def test_predict_many_answers_each_query(predictor, example):
    queries = [("gene_1", 5.0), ("gene_3", None), ("gene_5", 5.0)]
    predictions = predictor.predict_many(example, queries, prior_samples=6, seed=0)
    assert [p.targets for p in predictions] == [["gene_1"], ["gene_3"], ["gene_5"]]
    assert all(p.value == 5.0 and p.mixture.num_components == 6 for p in predictions)
    means = np.stack([p.mean.to_numpy() for p in predictions])
    assert not np.allclose(means[0], means[1]) and not np.allclose(means[1], means[2])
    with pytest.raises(PredictError, match="at least one"):
        predictor.predict_many(example, [])


def test_point_mass_target_is_pinned_and_never_counts_as_no_effect(tmp_path, example):
    knockout = load(export(tmp_path / "ko", tiny_config(intervention_values=[0.0], point_mass_interventions=True),
                           full_meta(values=(0.0,))))
    prediction = knockout.predict(example, "gene_2", prior_samples=5, seed=0)
    samples = prediction.sample(200, seed=0)
    assert (samples["gene_2"] == 0.0).all() and samples["gene_1"].std() > 0
    marginals = prediction.marginals().loc["gene_2"]
    assert marginals["std"] == 0.0
    np.testing.assert_allclose(marginals[["q05", "q50", "q95"]].to_numpy(dtype=float), 0.0, atol=1e-9)
    effects = prediction.effects().loc["gene_2"]
    assert effects["p_no_effect"] == 0.0
    assert math.isclose(effects["shift"], -example["gene_2"].mean(), rel_tol=1e-6)
    with pytest.raises(PredictError, match=r"not in the model's table of intervention values \[0.0\]"):
        knockout.predict(example, "gene_2", value=5.0)


def test_multi_target_only_for_multi_target_models(tmp_path, predictor, example):
    with pytest.raises(PredictError, match="multi-target"):
        predictor.predict(example, ["gene_1", "gene_2"])
    multi = load(export(tmp_path / "multi", tiny_config(), full_meta(targets_per_intervention=2)))
    prediction = multi.predict(example, ["gene_1", "gene_4"], prior_samples=3, seed=0)
    assert prediction.targets == ["gene_1", "gene_4"]
    with pytest.warns(UserWarning, match="2 variables at once; this query has 1"):
        single = multi.predict(example, "gene_1", prior_samples=3, seed=0)
    assert not np.allclose(prediction.mean.to_numpy(), single.mean.to_numpy())
    with pytest.warns(UserWarning, match="3 variables at once; this query has 2"):
        load(export(tmp_path / "multi3", tiny_config(), full_meta(targets_per_intervention=3))).predict(
            example, ["gene_1", "gene_4"], prior_samples=1)


def test_several_values_need_an_explicit_choice(tmp_path, example):
    two = load(export(tmp_path / "two", tiny_config(intervention_values=[-5.0, 5.0]), full_meta(values=(-5.0, 5.0))))
    with pytest.raises(PredictError, match=r"several intervention values \[-5.0, 5.0\]"):
        two.predict(example, "gene_1")
    low = two.predict(example, "gene_1", value=-5.0, prior_samples=2, seed=0)
    high = two.predict(example, "gene_1", value=5, prior_samples=2, seed=0)
    assert low.value == -5.0 and high.value == 5.0
    assert not np.allclose(low.mean.to_numpy(), high.mean.to_numpy())


# ----- warnings --------------------------------------------------------------------------


def test_matching_data_gives_no_warning(predictor, example):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor.predict(example, "gene_3", prior_samples=2)


def test_scale_d_and_n_warnings(predictor, example):
    with pytest.warns(UserWarning, match="scale is far from the training data") as record:
        predictor.predict(example * 100.0, "gene_3", prior_samples=2)
    assert any("mean |x|" in str(w.message) and "std" in str(w.message) for w in record)
    with pytest.warns(UserWarning, match="scale is far"):
        predictor.predict(example / 100.0, "gene_3", prior_samples=2)
    with pytest.warns(UserWarning, match=r"d = 4 variables; the model was trained on d = 5"):
        predictor.predict(example.iloc[:, :4], "gene_3", prior_samples=2)
    with pytest.warns(UserWarning, match=r"N = 50 rows; the model was trained on N = 200"):
        predictor.predict(example.iloc[:50], "gene_3", prior_samples=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # more rows than trained are read in chunks of at most 2N: no warning
        predictor.predict(pd.concat([example] * 3, ignore_index=True), "gene_3", prior_samples=2)


def test_missing_meta_warns_and_refuses_multi_target(tmp_path, example):
    directory = export(tmp_path / "bare", tiny_config(), None)
    with pytest.warns(UserWarning, match="meta lacks data.d, data.n_samples"):
        bare = load(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checks that need the meta are skipped, silently
        prediction = bare.predict(example * 100.0, "gene_1", prior_samples=2)
    assert prediction.columns == EXAMPLE_COLUMNS
    with pytest.raises(PredictError, match="multi-target"):
        bare.predict(example, ["gene_1", "gene_2"])


# ----- effects on a hand-built mixture with a known answer ------------------------------


def standardised_observations(n: int, d: int) -> pd.DataFrame:
    """Observations whose columns have mean exactly 0 and sample std (ddof=1) exactly 1."""
    x = np.random.default_rng(0).normal(size=(n, d))
    x = (x - x.mean(0)) / x.std(0, ddof=1)
    return pd.DataFrame(x, columns=["a", "b", "c"])


def hand_built(means, stds, weights, pinned_mask=None, pinned_values=None) -> GaussianMixture:
    means = torch.tensor([means], dtype=torch.float64)  # (1, M, d)
    scale_tril = torch.diag_embed(torch.tensor([stds], dtype=torch.float64))  # (1, M, d, d)
    logits = torch.tensor([weights], dtype=torch.float64).log()
    return GaussianMixture(logits, means, scale_tril, pinned_mask, pinned_values)


def test_effects_on_a_hand_built_mixture():
    # Four components (weights .1 .2 .3 .4) over a, b, c; the observational law is N(0, 1) for each.
    # a: means 0, 0, 0.2, 0.4 (Hellinger 0, 0, 0.071, 0.140): no effect with weight .1 + .2 + .3.
    # b: stds 1.1, 1.5, -, 1 and means 0, 0, -5, 0 (Hellinger 0.048, 0.198, ~1, 0): weight .1 + .4.
    # c: every component moved by +2: an effect for sure, shift exactly 2.
    mixture = hand_built(
        means=[[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [0.2, -5.0, 2.0], [0.4, 0.0, 2.0]],
        stds=[[1.0, 1.1, 1.0], [1.0, 1.5, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
        weights=[0.1, 0.2, 0.3, 0.4],
    )
    prediction = Prediction(mixture, ["a", "b", "c"], ["c"], 2.0, standardised_observations(500, 3))
    effects = prediction.effects()
    np.testing.assert_allclose(effects["p_no_effect"].to_numpy(), [0.6, 0.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(effects["shift"].to_numpy(), [0.3 * 0.2 + 0.4 * 0.4, -1.5, 2.0], atol=1e-9)
    np.testing.assert_allclose(effects[["shift_low", "shift_high"]].to_numpy(), [[0.0, 0.4], [-5.0, 0.0], [2.0, 2.0]],
                               atol=1e-9)
    # A looser tolerance takes in a's component at Hellinger 0.140; b's at 0.198 still stays out.
    np.testing.assert_allclose(prediction.effects(tolerance=0.15)["p_no_effect"].to_numpy(), [1.0, 0.5, 0.0], atol=1e-9)
    # A narrower interval (central 30%: the 35% and 65% quantiles) of a's shifts {0: .3, 0.2: .3, 0.4: .4}.
    np.testing.assert_allclose(prediction.effects(interval=0.3).loc["a", ["shift_low", "shift_high"]].to_numpy(dtype=float),
                               [0.2, 0.4], atol=1e-9)

    summary = prediction.summary()
    json.dumps(summary)  # JSON-ready
    assert summary["variables"]["b"]["p_no_effect"] == pytest.approx(0.5)
    assert summary["mixture"]["weights"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert "c (target)" in prediction.format_effects()


def test_effects_pinned_target_and_constant_column():
    # c pinned at 5: a point mass never matches the observational law; shift = 5 - 0.
    mixture = hand_built(means=[[0.0, 0.005, 1.0]], stds=[[1.0, 0.03, 1.0]], weights=[1.0],
                         pinned_mask=torch.tensor([[False, False, True]]),
                         pinned_values=torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64))
    observations = standardised_observations(100, 3)
    observations["b"] = 0.0  # a constant column: its law is N(0, std_floor²)
    floored = Prediction(mixture, ["a", "b", "c"], ["c"], 5.0, observations, std_floor=math.sqrt(1e-3)).effects()
    assert floored.loc["c", "p_no_effect"] == 0.0 and floored.loc["c", "shift"] == pytest.approx(5.0)
    assert floored.loc["a", "p_no_effect"] == 1.0
    assert floored.loc["b", "p_no_effect"] == 1.0  # N(0.005, 0.03²) is at 0.063 from N(0, 0.0316²)
    unfloored = Prediction(mixture, ["a", "b", "c"], ["c"], 5.0, observations).effects()
    assert unfloored.loc["b", "p_no_effect"] == 0.0


# ----- the prediction figure ----------------------------------------------------------------


def test_figure_has_one_panel_per_variable_and_marks_the_target_value(predictor, example):
    from matplotlib.lines import Line2D

    from activa_ray.predict import plots

    prediction = predictor.predict(example, target="gene_3", value=5.0, prior_samples=4, seed=0)
    figure = plots.marginals_figure(prediction)
    try:
        axes = figure.axes
        assert len(axes) == len(EXAMPLE_COLUMNS)  # one panel per variable, no empty panel
        assert all(axis.get_xlabel() for axis in axes)  # every panel says what its x axis is
        assert all(axis.get_legend() is None for axis in axes) and len(figure.legends) == 1  # legend off the data
        titles = [axis.get_title() for axis in axes]
        target = axes[[i for i, title in enumerate(titles) if "(target)" in title][0]]
        assert titles.index(target.get_title()) == EXAMPLE_COLUMNS.index("gene_3")
        spikes = [line for line in target.get_lines() if isinstance(line, Line2D)
                  and np.allclose(line.get_xdata(), 5.0)]
        assert spikes, "the target panel marks do(gene_3 = 5) at x = 5"
        assert len(target.get_lines()) == 3  # observational mean, the spike, its marker: no density curve
        effects = prediction.effects()
        for axis, name in zip(axes, EXAMPLE_COLUMNS):
            low, high = axis.get_xlim()
            observed = example[name]
            assert low <= observed.min() and high >= observed.max()  # the data are all in view
            assert any(np.allclose(line.get_xdata(), effects.loc[name, "obs_mean"]) for line in axis.get_lines())
            predicted = prediction.marginals().loc[name]
            span = max(observed.max(), predicted["q95"], 5.0 if name == "gene_3" else -np.inf) - min(
                observed.min(), predicted["q05"])
            assert high - low < 3 * span  # fitted to the data and the prediction, not to far tails
        assert any(text.get_text() == "do(gene_3 = 5)" for text in figure.legends[0].get_texts())
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_figure_draws_distinct_alternatives_apart_with_their_weights():
    import matplotlib.pyplot as plt

    from activa_ray.predict import plots

    # a: two close components (0 and 0.1 SD: one alternative, weight .7) and one 3 SD away (.3).
    mixture = hand_built(means=[[0.0, 0.0, 2.0], [0.1, 0.0, 2.0], [3.0, 0.0, 2.0]],
                         stds=[[1.0, 1.0, 0.3], [1.0, 1.0, 0.3], [1.0, 1.0, 0.3]], weights=[0.5, 0.2, 0.3])
    prediction = Prediction(mixture, ["a", "b", "c"], ["c"], 2.0, standardised_observations(300, 3))
    drawn = plots.alternatives(prediction, prediction.effects())
    assert [alternative.weight for alternative in drawn] == pytest.approx([0.7, 0.3])
    assert [sorted(alternative.members.tolist()) for alternative in drawn] == [[0, 1], [2]]
    assert "weight 70%: nothing else moves" in drawn[0].label and "weight 30%: a moves" in drawn[1].label
    figure = plots.marginals_figure(prediction)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert any("weight 70%" in label for label in labels) and any("weight 30%" in label for label in labels)
    panel_a = figure.axes[0]
    assert len([line for line in panel_a.get_lines() if len(line.get_xdata()) > 2]) == 2  # one curve each
    plt.close(figure)

    # One group: a single curve, no weights.
    single = Prediction(hand_built(means=[[0.0, 0.0, 2.0], [0.1, 0.05, 2.0]], stds=[[1.0, 1.0, 0.3]] * 2,
                                   weights=[0.5, 0.5]), ["a", "b", "c"], ["c"], 2.0, standardised_observations(300, 3))
    assert [alternative.label for alternative in plots.alternatives(single, single.effects())] == [
        "predicted interventional"]


def test_components_group_by_single_linkage():
    from activa_ray.predict.plots import group_components

    # A chain 0, 0.2, 0.4 on the first variable joins; 1.5 stands apart; the second variable is the target.
    means = np.array([[0.0, 9.0], [0.2, -9.0], [0.4, 0.0], [1.5, 0.0]])
    groups = group_components(means, obs_std=np.array([1.0, 1.0]), free=np.array([True, False]))
    assert [group.tolist() for group in groups] == [[0, 1, 2], [3]]


@pytest.mark.parametrize("mean_a, std_a, mean_b, std_b", [(0.0, 1.0, 0.3, 1.0), (1.0, 0.5, -0.2, 2.0), (2.0, 1.0, 2.0, 1.0)])
def test_hellinger_matches_numerical_integration(mean_a, std_a, mean_b, std_b):
    def integrand(x: float) -> float:
        return (math.sqrt(stats.norm.pdf(x, mean_a, std_a)) - math.sqrt(stats.norm.pdf(x, mean_b, std_b))) ** 2

    squared, _ = integrate.quad(integrand, -30, 30, points=[mean_a, mean_b], limit=200)
    expected = math.sqrt(0.5 * squared)
    assert float(hellinger_gaussian(np.array(mean_a), np.array(std_a), np.array(mean_b), np.array(std_b))) == pytest.approx(
        expected, abs=1e-7)


# ----- bad input -------------------------------------------------------------------------


def test_bad_tables_name_the_column_and_row(tmp_path, predictor, example):
    text = EXAMPLE.read_text().splitlines()
    text[4] = text[4].replace(text[4].split(",")[2], "high", 1)  # data row 3 (line 5), column gene_3
    bad = tmp_path / "words.csv"
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(PredictError, match=r"words.csv: column 'gene_3', row 3 \(line 5\): 'high' is not a number"):
        read_table(bad)

    with_nan = example.copy()
    with_nan.loc[7, "gene_4"] = np.nan
    with pytest.raises(PredictError, match=r"column 'gene_4', row 7: an empty or NaN cell"):
        predictor.predict(with_nan, "gene_3")
    with_inf = example.to_numpy().copy()
    with_inf[11, 0] = -np.inf
    with pytest.raises(PredictError, match=r"column 'V0', row 11: -inf \(infinite\)"):
        predictor.predict(with_inf, "V1")
    with pytest.raises(PredictError, match="at least 2 row"):
        predictor.predict(example.iloc[:1], "gene_3")
    with pytest.raises(PredictError, match=r"unknown target 'gene_9': the table's columns are \['gene_1'"):
        predictor.predict(example, "gene_9")
    with pytest.raises(PredictError, match=r"value 3 is not in the model's table of intervention values \[5.0\]"):
        predictor.predict(example, "gene_3", value=3.0)
    with pytest.raises(PredictError, match="no name in the header"):
        as_table(example.reset_index().rename(columns={"index": "Unnamed: 0"}))
    with pytest.raises(PredictError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def test_a_directory_that_is_not_an_exported_model(tmp_path):
    with pytest.raises(PredictError, match="not an exported activa_ray model"):
        load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "something else"}')
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(PredictError, match="format"):
        load(tmp_path)


# ----- the CLI ---------------------------------------------------------------------------


def run_cli(cli, *args) -> int:
    return cli.main([str(a) for a in args])


def test_cli_end_to_end_csv(cli, model_dir, tmp_path, capsys):
    out = tmp_path / "nested" / "pred"
    code = run_cli(cli, "--model", model_dir, "--data", EXAMPLE, "--target", "gene_3", "--samples", 300,
                   "--prior-samples", 8, "--seed", 4, "--out", out)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert sorted(p.name for p in out.iterdir()) == ["marginals.png", "samples.csv", "summary.json"]
    samples = pd.read_csv(out / "samples.csv")
    assert list(samples.columns) == EXAMPLE_COLUMNS and len(samples) == 300
    summary = json.loads((out / "summary.json").read_text())
    assert summary["targets"] == ["gene_3"] and summary["value"] == 5.0 and summary["seed"] == 4
    assert list(summary["variables"]) == EXAMPLE_COLUMNS
    assert {"mean", "std", "q05", "q50", "q95", "shift", "shift_low", "shift_high", "p_no_effect"} <= set(
        summary["variables"]["gene_4"])
    assert len(summary["mixture"]["weights"]) == 8 and summary["warnings"] == []
    assert (out / "marginals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gene_3 (target)" in printed.out and "P(no effect)" in printed.out
    # Same seed, same samples: a rerun into the existing folder replaces the files identically.
    assert run_cli(cli, "--model", model_dir, "--data", EXAMPLE, "--target", "gene_3", "--samples", 300,
                   "--prior-samples", 8, "--seed", 4, "--out", f"{out}/") == 0
    assert f"wrote {out}/: samples" in capsys.readouterr().out  # one slash, however --out was spelled
    pd.testing.assert_frame_equal(pd.read_csv(out / "samples.csv"), samples)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_cli_parquet_in_parquet_out_and_warnings_reported(cli, model_dir, tmp_path, example, capsys):
    data = tmp_path / "obs.parquet"
    (example.iloc[:40] * 50.0).to_parquet(data, index=False)
    out = tmp_path / "pred"
    assert run_cli(cli, "--model", model_dir, "--data", data, "--target", "gene_1", "--samples", 50,
                   "--prior-samples", 2, "--out", out, "--no-plot") == 0
    printed = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["samples.parquet", "summary.json"]  # --no-plot: no figure
    samples = pd.read_parquet(out / "samples.parquet")
    assert list(samples.columns) == EXAMPLE_COLUMNS and len(samples) == 50
    assert not (out / "samples.csv").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert any("scale is far" in w for w in summary["warnings"]) and any("N = 40" in w for w in summary["warnings"])
    assert "warning: the data's scale is far" in printed.err


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_file", "no such file"),
        ("words", "column 'gene_2', row 0 (line 2): 'n/a?' is not a number"),
        ("nan", "column 'gene_5', row 1 (line 3): an empty or NaN cell"),
        ("inf", "column 'gene_1', row 2 (line 4): inf (infinite)"),
        ("one_row", "at least 2 row"),
        ("unknown_target", "unknown target 'gene_42'"),
        ("bad_value", "value 1 is not in the model's table of intervention values [5.0]"),
        ("not_a_model", "not an exported activa_ray model"),
    ],
)
def test_cli_bad_input_one_line_and_nothing_written(cli, model_dir, tmp_path, capsys, case, expected):
    lines = EXAMPLE.read_text().splitlines()
    data, target, extra, model = tmp_path / "obs.csv", "gene_3", [], model_dir
    if case == "words":
        lines[1] = "0.1,n/a?,0.3,0.4,0.5"
    elif case == "nan":
        lines[2] = "0.1,0.2,0.3,0.4,"
    elif case == "inf":
        lines[3] = "inf,0.2,0.3,0.4,0.5"
    elif case == "one_row":
        lines = lines[:2]
    data.write_text("\n".join(lines) + "\n")
    if case == "missing_file":
        data = tmp_path / "absent.csv"
    elif case == "unknown_target":
        target = "gene_42"
    elif case == "bad_value":
        extra = ["--value", "1"]
    elif case == "not_a_model":
        model = tmp_path / "empty_model"
        model.mkdir()
    out = tmp_path / "pred"
    code = run_cli(cli, "--model", model, "--data", data, "--target", target, "--samples", 10,
                   "--prior-samples", 1, "--out", out, *extra)
    err = capsys.readouterr().err
    assert code == 2  # bad input: the exit code of every job
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p for p in ("obs.csv", "empty_model") if (tmp_path / p).exists())


def test_importing_predict_leaves_matplotlib_unloaded():
    """Predict starts cheaply: matplotlib loads only when a plot is drawn."""
    code = "import sys, activa_ray.predict; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_cli_as_a_script_exits_non_zero_with_one_line(model_dir, tmp_path):
    """The real entry point (the outputs of a good run are checked in-process above)."""
    out = tmp_path / "pred"
    bad = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "predict.py"), "--model", str(model_dir), "--data", str(EXAMPLE),
         "--target", "nope", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "unknown target 'nope'" in bad.stderr and not out.exists()
