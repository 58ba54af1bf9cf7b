"""One model for any units, value, d and N (issue 17): standardisation, value encoding, drawn shapes,
relative intervention values, the mixed-noise kind, warm starts, and predict's chunks and warnings."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from activa_ray.config import ConfigError, load_config
from activa_ray.data.simulate import simulate
from activa_ray.model.activa import Activa
from activa_ray.model.config import ModelConfig
from activa_ray.model.io import ModelFileError, load_model, save_model, warm_start
from activa_ray.model.query import VALUE_SCALE, Standardization, regression_features
from activa_ray.predict import PredictError
from activa_ray.predict.predictor import Predictor, observation_chunks
from activa_ray.train.step import LossModule, streamed_examples

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

VALUE_MODEL = ModelConfig(heads=2, decoder_layers=1, encoder_layers=2, embed_dim=16, hidden_dim=32,
                          decoder_components=2, intervention_encoding="value", standardize=True)


def value_model(seed: int = 0) -> Activa:
    torch.manual_seed(seed)
    return Activa(VALUE_MODEL).eval()


def query(seed: int, batch: int = 3, n_obs: int = 25, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, n_obs, d, generator=g) * torch.tensor([1.0, 3.0, 0.5, 2.0])[:d] + 1.5
    targets = torch.zeros(batch, d)
    targets[torch.arange(batch), torch.arange(batch) % d] = 1.0
    values = torch.randn(batch, generator=g) * 4.0
    return obs, targets, torch.zeros(batch, dtype=torch.long), values


def test_a_standardising_model_does_not_care_about_units() -> None:
    """Rescaling and shifting every variable (and the value with its target) moves the prediction the same way."""
    model = value_model()
    obs, targets, index, values = query(0)
    scale = torch.tensor([0.01, 250.0, 3.0, 1e4])
    shift = torch.tensor([5.0, -1e3, 0.0, 2e4])
    target_scale, target_shift = (targets * scale).sum(1), (targets * shift).sum(1)
    plain = model.predict(obs, targets, index, prior_samples=4, generator=torch.Generator().manual_seed(1),
                          values=values)
    moved = model.predict(obs * scale + shift, targets, index, prior_samples=4,
                          generator=torch.Generator().manual_seed(1), values=values * target_scale + target_shift)
    torch.testing.assert_close(moved.means, plain.means * scale + shift, rtol=1e-4, atol=1e-3 * scale.max().item())
    torch.testing.assert_close(moved.marginal_std, plain.marginal_std * scale, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(moved.weights, plain.weights)


def test_the_value_reaches_a_value_encoded_model_and_its_loss_trains() -> None:
    model = value_model()
    obs, targets, index, values = query(1)
    low = model.predict(obs, targets, index, generator=torch.Generator().manual_seed(0), values=values - 3.0)
    high = model.predict(obs, targets, index, generator=torch.Generator().manual_seed(0), values=values + 3.0)
    assert not torch.allclose(low.means, high.means)
    with pytest.raises(ValueError, match="needs the intervention values"):
        model.predict(obs, targets, index)

    model.train()
    x = obs + targets.unsqueeze(1) * 2.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss = model.loss(obs, x, targets, index, values, generator=torch.Generator().manual_seed(step))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_relative_values_sit_the_drawn_number_of_sds_from_the_targets_observational_mean() -> None:
    cfg = load_config("configs/universal_vae.yaml", ["data.d=5", "data.n_samples=40", "data.kind=linear-gauss"]).data
    batch = simulate(cfg, np.random.default_rng(0), 300)
    obs, values = batch["obs"], batch["values"]  # (M, N, d), (M, C)
    target = batch["targets"].argmax(-1)  # (M, C)
    models = np.arange(len(obs))[:, None]
    sds = (values - obs.mean(1)[models, target]) / obs.std(1)[models, target]
    low, high = cfg.linear.value_sd_range
    assert sds.min() >= low - 1e-3 and sds.max() <= high + 1e-3
    uniform_std = (high - low) / np.sqrt(12.0)  # U(low, high); 1,500 draws: the mean's standard error is 2.6% of it
    assert abs(sds.mean() - (low + high) / 2) < 0.1 * uniform_std
    assert 0.93 * uniform_std < sds.std() < 1.07 * uniform_std
    realised = batch["int"][models, np.arange(values.shape[1])[None], :, target]  # (M, C, N)
    assert np.abs(realised.mean(-1) - values).max() < 0.5  # the target sits at the value (+ jitter)


def test_the_mixed_kind_draws_gaussian_and_beta_models_about_equally() -> None:
    cfg = load_config("configs/universal_vae.yaml", ["data.d=3", "data.linear.edge_prob=0.0"]).data
    obs = simulate(cfg, np.random.default_rng(1), 400)["obs"]  # no edges: every variable is its own noise
    beta_share = float(((obs >= 0) & (obs <= 1)).all(axis=(1, 2)).mean())
    assert 0.4 < beta_share < 0.6


def test_streamed_batches_draw_their_shape_and_keep_the_number_of_values() -> None:
    cfg = load_config("configs/universal_vae.yaml")
    shapes = set()
    for step in range(12):
        batch = streamed_examples(cfg, 0, step, 128)
        examples, n, d = batch["x"].shape
        assert 2 <= d <= 20 and 20 <= n <= 100 and batch["obs"].shape == (examples, n, d)
        assert abs(examples * n * d - 128 * 8 * 30) <= n * d  # the same values per batch, to one example
        shapes.add((n, d))
        again = streamed_examples(cfg, 0, step, 128)
        assert all(np.array_equal(batch[key], again[key]) for key in batch)  # a function of (seed, rank, step)
    assert len(shapes) >= 10

    model = Activa(replace(VALUE_MODEL)).train()
    reference = LossModule(model, reference_values=8 * 30)
    plain = LossModule(model)
    tensors = {key: torch.as_tensor(value) for key, value in streamed_examples(cfg, 0, 3, 64).items()}
    n, d = tensors["x"].shape[1:]
    scaled = reference(**tensors, generator=torch.Generator().manual_seed(0))["loss"]
    unscaled = plain(**tensors, generator=torch.Generator().manual_seed(0))["loss"]
    torch.testing.assert_close(scaled, unscaled * (8 * 30) / (n * d))


def test_relative_values_need_a_value_encoded_model_and_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match="model.intervention_encoding=index: must be value"):
        load_config("configs/universal_vae.yaml", ["model.intervention_encoding=index"])
    with pytest.raises(ConfigError, match=r"data.d_range=\[5, 3\]: must be \[low, high\]"):
        load_config("configs/universal_vae.yaml", ["data.d_range=[5,3]"])
    with pytest.raises(ConfigError, match="value_sd_range"):
        load_config("configs/universal_vae.yaml", ["data.linear.value_sd_range=[1]"])
    with pytest.raises(ConfigError, match="train.init_from=no-such-model: must be an exported model folder"):
        load_config("configs/universal_vae.yaml", ["train.init_from=no-such-model"])
    with pytest.raises(ConfigError, match=r"^train\.init_from=gauss2: model\.hidden_dim=512: the export has 128$"):
        load_config("configs/universal_vae.yaml", ["train.init_from=gauss2", "model.hidden_dim=512"])  # gauss2: 128


def test_a_warm_start_copies_what_fits_and_the_value_column_starts_at_zero(tmp_path: Path) -> None:
    torch.manual_seed(0)
    index_model = Activa(replace(VALUE_MODEL, intervention_encoding="index", standardize=False))
    save_model(index_model, tmp_path / "index")
    model = value_model(seed=1)
    counts, _ = warm_start(model, tmp_path / "index")
    assert counts["partial"] == 2 and counts["initialised"] == 0  # the two embeddings' input projections
    source = index_model.observational_embedding.input_projection.weight
    weight = model.observational_embedding.input_projection.weight  # (e, 3): data, is target, value
    assert torch.equal(weight[:, :2], source) and torch.equal(weight[:, 2], torch.zeros(weight.shape[0]))
    assert torch.equal(model.decoder.mean_head.weight, index_model.decoder.mean_head.weight)
    two_values = Activa(replace(VALUE_MODEL, intervention_encoding="index", standardize=False,
                                intervention_values=[0.0, 5.0]))
    save_model(two_values, tmp_path / "two_values")
    with pytest.raises(ModelFileError, match="intervention_encoding=value: the export indexes 2 values"):
        warm_start(model, tmp_path / "two_values")
    wider = Activa(replace(VALUE_MODEL, hidden_dim=64))
    save_model(wider, tmp_path / "wider")
    with pytest.raises(ModelFileError, match=r"cannot warm-start this model: model\.hidden_dim=32: the export has 64"):
        warm_start(model, tmp_path / "wider")


def features_of(obs: torch.Tensor, targets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """regression_features of a raw sample, standardised as the model does."""
    frame = Standardization(obs, enabled=True)
    return regression_features(frame.to_model(obs), targets, frame.values_to_model(values))


def test_regression_features_give_the_linear_answers_in_any_units() -> None:
    """On x0 -> x1 <- x2, x1 -> x3 (unit noise), do(x0 = 2 SD): x1's conditional shift is corr(x0, x1) * 2,
    its coefficient on x0 given the rest is the weight shrunk by what x3 tells about x1, x2's is 0."""
    rng = np.random.default_rng(0)
    x0, x2 = rng.normal(size=200_000), rng.normal(size=200_000)
    x1 = 1.5 * x0 - 0.7 * x2 + rng.normal(size=200_000)
    x3 = 0.8 * x1 + rng.normal(size=200_000)
    obs = torch.tensor(np.stack([x0, x1, x2, x3], -1), dtype=torch.float32).unsqueeze(0)  # (1, N, 4)
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    features = features_of(obs, targets, torch.tensor([2.0 * x0.std()]))[0]  # (4, 4)
    sd1 = math.sqrt(1.5**2 + 0.7**2 + 1.0)
    corr01 = 1.5 / sd1
    assert torch.equal(features[0], torch.zeros(4))  # the target's row
    torch.testing.assert_close(features[1, :2], torch.tensor([corr01, 2 * corr01 / VALUE_SCALE]), atol=0.01, rtol=0)
    torch.testing.assert_close(features[2, :2], torch.zeros(2), atol=0.01, rtol=0)  # independent of x0
    # E[x1 | x0, x2, x3] puts 1.5 / (1 + 0.8²) on x0 (SD units: / sd1).
    assert abs(features[1, 2].item() - 1.5 / (1 + 0.8**2) / sd1) < 0.01 and abs(features[1, 3].item() - 0.2 * features[1, 2].item()) < 1e-5
    assert abs(features[3, 2].item()) < 0.01  # x3 given x1: x0 adds nothing
    rescaled = features_of(obs * torch.tensor([3.0, 0.01, 7.0, 1e3]) + 5.0, targets,
                         torch.tensor([2.0 * x0.std() * 3.0 + 5.0]))[0]
    torch.testing.assert_close(rescaled, features, atol=1e-4, rtol=1e-4)


def test_a_warm_start_that_adds_regression_features_predicts_what_the_export_did(tmp_path: Path) -> None:
    source = value_model()
    save_model(source, tmp_path / "plain")
    model = Activa(replace(VALUE_MODEL, regression_features=True)).eval()
    counts, _ = warm_start(model, tmp_path / "plain")
    assert counts["partial"] == 2 and counts["initialised"] == 2  # the input projections; the closed gates
    obs, targets, index, values = query(2)
    before = source.predict(obs, targets, index, prior_samples=3, generator=torch.Generator().manual_seed(0), values=values)
    after = model.predict(obs, targets, index, prior_samples=3, generator=torch.Generator().manual_seed(0), values=values)
    torch.testing.assert_close(after.means, before.means)
    torch.testing.assert_close(after.scale_tril, before.scale_tril)
    save_model(model, tmp_path / "features")
    with pytest.raises(ModelFileError, match="regression_features=false: the export reads regression features"):
        warm_start(value_model(), tmp_path / "features")


def test_a_warm_start_that_adds_the_decoder_context_predicts_what_the_export_did_until_it_trains(tmp_path: Path) -> None:
    features = replace(VALUE_MODEL, regression_features=True)
    torch.manual_seed(0)
    source = Activa(features).eval()
    save_model(source, tmp_path / "plain")
    model = Activa(replace(features, decoder_context=True)).eval()
    counts, _ = warm_start(model, tmp_path / "plain")
    assert counts["initialised"] == 1  # the context projection, at 0
    obs, targets, index, values = query(4)
    def predict(net: Activa):
        return net.predict(obs, targets, index, prior_samples=3, generator=torch.Generator().manual_seed(0), values=values)
    before, after = predict(source), predict(model)
    torch.testing.assert_close(after.means, before.means)
    torch.testing.assert_close(after.scale_tril, before.scale_tril)

    # One training step opens it: the gradient reaches the projection, and then h' moves the prediction.
    model.train()
    x = obs + torch.randn(obs.shape, generator=torch.Generator().manual_seed(5))
    model.loss(obs, x, targets, index, values, generator=torch.Generator().manual_seed(0), prior_nll_weight=1.0)["loss"].backward()
    gradient = model.decoder.context_projection.weight.grad
    assert gradient is not None and gradient.abs().sum() > 0
    with torch.no_grad():
        model.decoder.context_projection.weight -= 0.5 * gradient / gradient.abs().max()
    assert not torch.allclose(predict(model.eval()).means, before.means, atol=1e-3)

    save_model(model, tmp_path / "context")
    with pytest.raises(ModelFileError, match="decoder_context=false: the export's decoder reads the observational embedding"):
        warm_start(Activa(features), tmp_path / "context")
    with pytest.raises(ValueError, match="decodes with the observational embedding"):
        model.decode(torch.zeros(1, 4, VALUE_MODEL.latent_dim), None, torch.zeros(1, 4, 2))


def test_a_warm_start_that_splits_the_prior_components_keeps_the_mixture_and_lets_the_copies_part(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = value_model()
    save_model(source, tmp_path / "two")
    model = Activa(replace(VALUE_MODEL, prior_components=6)).eval()  # each of the 2 split in 3
    counts, _ = warm_start(model, tmp_path / "two")
    assert counts["partial"] == 0 and counts["initialised"] == 0
    obs, targets, index, values = query(6)
    prepared = model.prepare(obs, targets, index, values)
    with torch.no_grad():
        logits, means = source.prior(source.embed(prepared.obs, prepared.representation))  # (B, 2), (B, 2, d, z)
        split_logits, split_means = model.prior(model.embed(prepared.obs, prepared.representation))  # (B, 6), ...
    weights = torch.softmax(split_logits, -1).view(-1, 2, 3)
    torch.testing.assert_close(weights.sum(-1), torch.softmax(logits, -1))  # the export's mixture weights
    torch.testing.assert_close(weights, weights[..., :1].expand_as(weights))  # shared equally by the copies
    copies = split_means.view(obs.shape[0], 2, 3, *means.shape[2:])
    gap = (copies - means.unsqueeze(2)).abs().max().item()
    assert 0 < gap < 0.1 * math.sqrt(VALUE_MODEL.prior_var)  # near the export's means, and not identical

    model.train()
    x = obs + torch.randn(obs.shape, generator=torch.Generator().manual_seed(7))
    model.loss(obs, x, targets, index, values, generator=torch.Generator().manual_seed(0), prior_nll_weight=1.0)["loss"].backward()
    gradient = model.prior_mean_mlp[2].weight.grad.view(6, VALUE_MODEL.latent_dim, -1)
    assert not torch.allclose(gradient[0], gradient[1]) and not torch.allclose(gradient[3], gradient[5])  # they part

    with pytest.raises(ModelFileError, match=r"model\.prior_components=3: must be a multiple of the export's 2"):
        warm_start(Activa(replace(VALUE_MODEL, prior_components=3)), tmp_path / "two")


def test_an_open_gate_adds_the_conditional_shift_to_the_mean_in_the_data_units() -> None:
    torch.manual_seed(0)
    model = Activa(replace(VALUE_MODEL, regression_features=True)).eval()
    obs, targets, index, values = query(3)
    def means() -> torch.Tensor:
        return model.predict(obs, targets, index, generator=torch.Generator().manual_seed(0), values=values).means[:, 0]
    closed = means()  # (B, d)
    with torch.no_grad():
        model.decoder.shift_gates.bias[0::2] = 1.0  # every component's gate on R_jt v_t
    opened = means()
    shift_sd = features_of(obs, targets, values)[..., 1] * VALUE_SCALE  # (B, d), target rows 0
    torch.testing.assert_close(opened - closed, shift_sd * obs.std(1, correction=0), rtol=1e-4, atol=1e-4)
    assert bool((shift_sd.abs() > 0.05).any())
    with pytest.raises(ValueError, match="regression_features=true: needs model.standardize=true"):
        Activa(replace(VALUE_MODEL, regression_features=True, standardize=False))


def value_predictor(tmp_path: Path) -> Predictor:
    meta = {"data": {"d": 8, "n_samples": 30},
            "config": {"data": {"d_range": [2, 20], "n_samples_range": [20, 100],
                                "linear": {"value_sd_range": [-10.0, 10.0], "targets_per_intervention": 1}}},
            "data_stats": {"obs_abs_mean": 1.0, "obs_std": 1.0}}
    save_model(value_model(), tmp_path / "value", meta)
    network, meta = load_model(tmp_path / "value")
    return Predictor(network, meta)


def test_predict_takes_any_value_in_any_units_and_warns_outside_the_trained_range(tmp_path: Path) -> None:
    predictor = value_predictor(tmp_path)
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(60, 5)) * 1000.0 + 5e4, columns=[f"g{j}" for j in range(5)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scale, d or N warning: units do not matter to this model
        prediction = predictor.predict(table, "g1", value=float(table["g1"].mean() + 2 * table["g1"].std()))
    samples = prediction.sample(2000, seed=0)  # in the table's units: within a few of its stds of its mean
    assert ((samples.mean() - table.mean()).abs() < 10 * table.std()).all()
    assert ((samples.std() > 0.01 * table.std()) & (samples.std() < 100 * table.std())).all()
    with pytest.warns(UserWarning, match=r"\+50 observational standard deviations .* within \[-10, 10\]"):
        predictor.predict(table, "g1", value=float(table["g1"].mean() + 50 * table["g1"].std(ddof=0)))
    with pytest.raises(PredictError, match="any value: give one with value="):
        predictor.predict(table, "g1")
    with pytest.warns(UserWarning, match=r"d = 25 variables; the model was trained on d in \[2, 20\]"):
        predictor.predict(pd.DataFrame(rng.normal(size=(30, 25)), columns=[f"v{j}" for j in range(25)]), "v0",
                          value=1.0)


def test_a_table_longer_than_the_trained_n_is_answered_in_pooled_chunks(tmp_path: Path) -> None:
    rows = np.arange(250 * 2, dtype=float).reshape(250, 2)
    chunks = observation_chunks(rows, 100, seed=0)
    assert chunks.shape == (3, 83, 2)
    assert len(np.unique(chunks[..., 0])) == 3 * 83  # disjoint
    assert observation_chunks(rows, 300, seed=0).shape == (1, 250, 2)

    predictor = value_predictor(tmp_path)
    table = pd.DataFrame(np.random.default_rng(1).normal(size=(250, 4)), columns=list("abcd"))
    prediction = predictor.predict(table, "a", value=1.0, prior_samples=5)
    assert prediction.mixture.num_components == 3 * 5 * VALUE_MODEL.decoder_components
    np.testing.assert_allclose(prediction.weights.sum(), 1.0, rtol=1e-6)
    short = predictor.predict(table.iloc[:100], "a", value=1.0, prior_samples=5)
    assert short.mixture.num_components == 5 * VALUE_MODEL.decoder_components
