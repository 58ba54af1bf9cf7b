"""The ACTIVA model: shapes, symmetries, the ELBO's terms, training signal, gradient hygiene, export."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from activa_ray.model.activa import Activa, monte_carlo_kl, zero_nonfinite_grads
from activa_ray.model.query import intervention_representation
from activa_ray.model.config import PRESETS, ModelConfig
from activa_ray.model.io import ModelFileError, load_model, save_model
from activa_ray.model.mixture import GaussianMixture

TINY = ModelConfig(
    heads=2, decoder_layers=1, encoder_layers=2, embed_dim=16, hidden_dim=32, decoder_components=2, dropout=0.0
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_batch(seed: int, batch: int, n_obs: int, n: int, d: int, num_values: int = 1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, n_obs, d, generator=g)
    x = torch.randn(batch, n, d, generator=g) + 1.0
    targets = torch.zeros(batch, d, dtype=torch.bool)
    targets[torch.arange(batch), torch.randint(d, (batch,), generator=g)] = True
    value_index = torch.randint(num_values, (batch,), generator=g)
    return obs, x, targets, value_index


def tiny_model(seed: int = 0, **changes) -> Activa:
    torch.manual_seed(seed)
    return Activa(replace(TINY, **changes)).eval()


def test_intervention_representation_is_one_hot_on_targets() -> None:
    targets = torch.tensor([[0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    rep = intervention_representation(targets, torch.tensor([2, 0]), 3)
    expected = torch.zeros(2, 3, 3, dtype=rep.dtype)
    expected[0, 1, 2] = 1
    expected[1, 0, 0] = expected[1, 2, 0] = 1
    assert torch.equal(rep, expected)


@pytest.mark.parametrize(("batch", "n_obs", "n", "d"), [(3, 20, 10, 1), (2, 7, 13, 2), (4, 30, 30, 8), (2, 15, 9, 11)])
def test_shapes_for_any_batch_samples_and_variables(batch: int, n_obs: int, n: int, d: int) -> None:
    model = tiny_model(intervention_values=[5.0, -5.0])
    obs, x, targets, value_index = make_batch(0, batch, n_obs, n, d, num_values=2)
    terms = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"loss", "nll_per_sample", "kl", "kl_per_dim", "prior_weight_entropy", "elbo"}
    assert all(terms[k].shape == () for k in terms if k != "kl_per_dim")
    assert terms["kl_per_dim"].shape == (TINY.latent_dim,)
    assert all(torch.isfinite(v).all() for v in terms.values())
    mix = model.predict(obs, targets, value_index, prior_samples=5, generator=torch.Generator().manual_seed(0))
    assert mix.means.shape == (batch, 5 * TINY.decoder_components, d)
    assert mix.mean.shape == (batch, d) and mix.covariance.shape == (batch, d, d)
    assert mix.sample(7, generator=torch.Generator().manual_seed(1)).shape == (batch, 7, d)
    assert mix.log_prob(x).shape == (batch, n)
    torch.testing.assert_close(mix.weights.sum(-1), torch.ones(batch))


def test_loss_sums_the_likelihood_over_samples() -> None:
    model = tiny_model(beta=0.3)
    obs, x, targets, value_index = make_batch(1, 3, 12, 17, 4)
    terms = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms["loss"], 17 * terms["nll_per_sample"] + 0.3 * terms["kl"])
    torch.testing.assert_close(terms["elbo"], -17 * terms["nll_per_sample"] - terms["kl"])


def test_prior_predictive_term_is_the_likelihood_of_the_sample_set_under_the_prior_mixture() -> None:
    model = tiny_model(beta=0.3, prior_components=3)
    obs, x, targets, value_index = make_batch(2, 3, 12, 17, 4)
    representation = intervention_representation(targets, value_index, 1)
    prior_logits, prior_means = model.prior(model.embed(obs, representation))  # (3, k), (3, k, d, z)
    computed = model.prior_predictive_log_likelihood(x, prior_logits, prior_means, None, torch.Generator().manual_seed(5))
    # Reference: each component's latent decoded on its own, its mixture's density multiplied over the 17 samples.
    noise = torch.randn(prior_means.shape, generator=torch.Generator().manual_seed(5))
    per_latent = []
    for k in range(3):
        latent = prior_means[:, k] + math.sqrt(model.cfg.prior_var) * noise[:, k]
        mixture = GaussianMixture(*model.decode(latent, None))
        per_latent.append(mixture.log_prob(x).sum(-1))
    reference = torch.logsumexp(torch.log_softmax(prior_logits, -1) + torch.stack(per_latent, -1), -1)
    torch.testing.assert_close(computed, reference)

    base = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))
    hybrid = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0), prior_nll_weight=0.5)
    assert "prior_nll_per_sample" not in base
    torch.testing.assert_close(hybrid["loss"], base["loss"] + 0.5 * 17 * hybrid["prior_nll_per_sample"])
    with pytest.raises(ValueError, match="prior_nll_weight"):
        model.loss(obs, x, targets, value_index, prior_nll_weight=-1.0)


def test_prior_predictive_term_trains_the_prior_directly() -> None:
    """With β = 0 the paper's loss leaves the prior untrained; the hybrid term gives it a gradient."""
    obs, x, targets, value_index = make_batch(7, 4, 10, 8, 4)
    for weight, reaches in ((0.0, False), (1.0, True)):
        model = tiny_model(beta=0.0).train()
        model.loss(obs, x, targets, value_index, prior_nll_weight=weight)["loss"].backward()
        for parameter in [*model.prior_mean_mlp.parameters(), *model.prior_weight_mlp.parameters()]:
            assert (parameter.grad is not None and parameter.grad.abs().sum() > 0) == reaches, weight


def permuted(tensor: torch.Tensor, order: torch.Tensor, dim: int) -> torch.Tensor:
    return tensor.index_select(dim, order)


def test_embedding_is_equivariant_in_variables_and_invariant_in_samples() -> None:
    model = tiny_model(encoder_layers=4)
    obs, _, targets, value_index = make_batch(2, 3, 25, 10, 6)
    rep = intervention_representation(targets, value_index, 1)
    h = model.embed(obs, rep)  # (B, d, e)
    variables = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    samples = torch.randperm(25, generator=torch.Generator().manual_seed(1))
    h_variables = model.embed(permuted(obs, variables, 2), permuted(rep, variables, 1))
    h_samples = model.embed(permuted(obs, samples, 1), rep)
    torch.testing.assert_close(h_variables, permuted(h, variables, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_samples, h, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder_context", [False, True])
def test_predicted_mixture_is_equivariant_in_variables_and_invariant_in_samples(decoder_context: bool) -> None:
    # A near-zero prior variance makes z the prior mean, so the prior noise (drawn in variable
    # order) cannot break the symmetry; the rest of the pipeline is exercised unchanged.
    model = tiny_model(prior_var=1e-12, prior_components=1, decoder_context=decoder_context)
    if decoder_context:  # it starts at 0: give h' a say
        torch.nn.init.normal_(model.decoder.context_projection.weight, std=0.3)
    obs, _, targets, value_index = make_batch(3, 2, 20, 10, 5)
    variables = torch.randperm(5, generator=torch.Generator().manual_seed(0))
    samples = torch.randperm(20, generator=torch.Generator().manual_seed(1))

    def predict(o, t):
        return model.predict(o, t, value_index, prior_samples=3, generator=torch.Generator().manual_seed(9))

    base = predict(obs, targets)
    by_variable = predict(permuted(obs, variables, 2), permuted(targets, variables, 1))
    by_sample = predict(permuted(obs, samples, 1), targets)
    torch.testing.assert_close(by_variable.mean, permuted(base.mean, variables, 1), atol=1e-5, rtol=1e-5)
    expected_covariance = permuted(permuted(base.covariance, variables, 1), variables, 2)
    torch.testing.assert_close(by_variable.covariance, expected_covariance, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_sample.mean, base.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_sample.covariance, base.covariance, atol=1e-5, rtol=1e-5)


def test_decoder_is_equivariant_in_variables() -> None:
    model = tiny_model()
    latent = torch.randn(3, 7, TINY.latent_dim, generator=torch.Generator().manual_seed(0))
    order = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    logits, means, tril = model.decode(latent, None)
    logits_p, means_p, tril_p = model.decode(permuted(latent, order, 1), None)
    covariance, covariance_p = tril @ tril.transpose(-1, -2), tril_p @ tril_p.transpose(-1, -2)
    torch.testing.assert_close(logits_p, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(means_p, permuted(means, order, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(covariance_p, permuted(permuted(covariance, order, 2), order, 3), atol=1e-5, rtol=1e-5)


def test_loss_is_invariant_to_the_order_of_samples() -> None:
    model = tiny_model()
    obs, x, targets, value_index = make_batch(4, 2, 15, 12, 3)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    base = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(5))
    shuffled = model.loss(obs, permuted(x, order, 1), targets, value_index, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(shuffled["loss"], base["loss"])


def test_predicted_covariances_are_positive_definite() -> None:
    model = tiny_model()
    obs, _, targets, value_index = make_batch(5, 4, 20, 10, 8)
    mix = model.predict(obs, targets, value_index, prior_samples=10, generator=torch.Generator().manual_seed(0))
    assert (torch.linalg.eigvalsh(mix.covariance) > 0).all()
    assert (torch.linalg.eigvalsh(mix.component_covariances) >= TINY.cov_floor * 0.99).all()


def test_monte_carlo_kl_matches_a_large_sample_reference() -> None:
    g = torch.Generator().manual_seed(0)
    batch, d, z, k, draws = 2, 3, 2, 3, 200_000
    mu = torch.randn(batch, d, z, generator=g, dtype=torch.float64)
    prior_logits = torch.randn(batch, k, generator=g, dtype=torch.float64)
    prior_means = torch.randn(batch, k, d, z, generator=g, dtype=torch.float64)
    encoder_var, prior_var = 0.1, 0.2
    noise = torch.randn(draws, batch, d, z, generator=g, dtype=torch.float64)
    latent = mu + math.sqrt(encoder_var) * noise
    flat = lambda t: t.reshape(draws * batch, *t.shape[2:])  # noqa: E731
    repeat = lambda t: t.expand(draws, *t.shape).reshape(draws * batch, *t.shape[1:])  # noqa: E731
    kl, kl_coordinates = monte_carlo_kl(
        flat(noise), encoder_var, flat(latent), repeat(prior_logits), repeat(prior_means), prior_var
    )
    ours = kl.view(draws, batch).mean(0)
    q = Independent(Normal(mu, math.sqrt(encoder_var)), 2)
    p = MixtureSameFamily(Categorical(logits=prior_logits), Independent(Normal(prior_means, math.sqrt(prior_var)), 2))
    reference_draws = q.sample((draws,))
    reference = (q.log_prob(reference_draws) - p.log_prob(reference_draws)).mean(0)
    spread = (q.log_prob(reference_draws) - p.log_prob(reference_draws)).std(0) / math.sqrt(draws)
    assert ((ours - reference).abs() < 5 * math.sqrt(2) * spread).all(), (ours, reference, spread)
    assert kl_coordinates.shape == (draws * batch, d, z)


def test_model_kl_and_elbo_match_a_large_sample_estimate() -> None:
    # 4000 copies of one example: the batch mean of the one-sample KL is a 4000-draw estimate.
    model = tiny_model()
    obs, x, targets, value_index = make_batch(6, 1, 10, 5, 3)
    copies = 4000
    expand = lambda t: t.expand(copies, *t.shape[1:])  # noqa: E731
    terms = model.loss(expand(obs), expand(x), expand(targets), expand(value_index), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["elbo"]) and torch.isfinite(terms["loss"])
    with torch.no_grad():
        rep = intervention_representation(targets, value_index, 1)
        h_obs = model.embed(obs, rep)
        h_int = model.interventional_embedding(torch.cat([x.unsqueeze(-1), rep.unsqueeze(1).expand(1, 5, 3, 1)], -1))
        prior_logits, prior_means = model.prior(h_obs)
        mu = model.posterior_mean(h_obs, h_int)
    q = Independent(Normal(mu.double(), math.sqrt(TINY.encoder_var)), 2)
    p = MixtureSameFamily(
        Categorical(logits=prior_logits.double()), Independent(Normal(prior_means.double(), math.sqrt(TINY.prior_var)), 2)
    )
    draws = q.sample((200_000,))
    values = q.log_prob(draws) - p.log_prob(draws)
    tolerance = 5 * values.std() / math.sqrt(copies)
    assert abs(terms["kl"].item() - values.mean().item()) < tolerance.item()


@pytest.mark.parametrize("decoder_context", [False, True])
def test_gradients_reach_every_parameter(decoder_context: bool) -> None:
    torch.manual_seed(0)
    model = Activa(replace(TINY, dropout=0.1, decoder_context=decoder_context)).train()
    obs, x, targets, value_index = make_batch(7, 4, 10, 8, 4)
    model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))["loss"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_small_model_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = Activa(TINY).train()
    obs, _, targets, value_index = make_batch(8, 8, 10, 10, 3)
    g = torch.Generator().manual_seed(1)
    x = 4.0 + 0.3 * torch.randn(8, 10, 3, generator=g)  # a shifted, narrow distribution
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        optimizer.zero_grad()
        loss = model.loss(obs, x, targets, value_index, generator=g)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    start, end = losses[0], sum(losses[-10:]) / 10
    assert end < 0.2 * start, (start, end)
    # Decoded at the posterior mean (the encoder sees x), the mixture sits on the fitted law.
    model.eval()
    reconstruction = model.reconstruct(obs, x, targets, value_index)
    assert (reconstruction.mean - 4.0).abs().max() < 0.3, reconstruction.mean


def test_nan_batch_gives_zeroed_gradients_and_a_count() -> None:
    model = tiny_model()
    obs, x, targets, value_index = make_batch(9, 2, 10, 8, 3)
    obs[0, 3, 1] = float("nan")
    terms = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))
    assert not torch.isfinite(terms["loss"])
    terms["loss"].backward()
    count = zero_nonfinite_grads(model)
    assert count > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert zero_nonfinite_grads(model) == 0


def test_bf16_autocast_forward_and_predict_on_cpu() -> None:
    model = tiny_model()
    obs, x, targets, value_index = make_batch(10, 3, 12, 9, 4)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        terms = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))
        mix = model.predict(obs, targets, value_index, prior_samples=4, generator=torch.Generator().manual_seed(0))
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])
    assert mix.covariance.dtype == torch.float32 and (torch.linalg.eigvalsh(mix.covariance) > 0).all()
    terms["loss"].backward()
    assert zero_nonfinite_grads(model) == 0


def test_point_mass_interventions_pin_the_targets() -> None:
    model = tiny_model(intervention_values=[0.0], point_mass_interventions=True)
    obs, x, targets, value_index = make_batch(11, 3, 12, 9, 4)
    x = x.masked_fill(targets.unsqueeze(1), 0.0)  # knockouts are exactly 0
    assert torch.isfinite(model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))["loss"])
    mix = model.predict(obs, targets, value_index, prior_samples=4, generator=torch.Generator().manual_seed(0))
    samples = mix.sample(50, generator=torch.Generator().manual_seed(1))
    assert (samples[targets.unsqueeze(1).expand_as(samples)] == 0.0).all()
    pinned = model.predict(obs, targets, value_index, values=torch.full((3,), 2.5), generator=torch.Generator().manual_seed(0))
    assert (pinned.mean[targets] == 2.5).all()
    assert torch.isfinite(model.loss(obs, x, targets, value_index, prior_nll_weight=1.0)["loss"])
    reconstruction = model.reconstruct(obs, x, targets, value_index).sample(50, generator=torch.Generator().manual_seed(2))
    assert (reconstruction[targets.unsqueeze(1).expand_as(reconstruction)] == 0.0).all()


def test_prediction_is_deterministic_given_the_generator() -> None:
    model = tiny_model()
    obs, _, targets, value_index = make_batch(12, 2, 10, 5, 3)
    draw = lambda seed: model.predict(  # noqa: E731
        obs, targets, value_index, prior_samples=5, generator=torch.Generator().manual_seed(seed)
    ).sample(20, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_bad_queries_raise_clear_errors() -> None:
    model = tiny_model(intervention_values=[5.0, -5.0])
    obs, x, targets, value_index = make_batch(13, 2, 10, 5, 3)
    with pytest.raises(ValueError, match=r"intervention values \[5.0, -5.0\]"):
        model.predict(obs, targets, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="targets must be"):
        model.loss(obs, x, targets[:, :2], value_index)
    with pytest.raises(ValueError, match="same d"):
        model.loss(obs, x[..., :2], targets, value_index)
    with pytest.raises(ValueError, match="encoder_layers"):
        Activa(replace(TINY, encoder_layers=3))


def test_save_and_load_reproduce_outputs(tmp_path) -> None:
    model = tiny_model(seed=3, intervention_values=[5.0, 1.0])
    obs, x, targets, value_index = make_batch(14, 2, 10, 6, 5, num_values=2)
    save_model(model, tmp_path / "export", meta={"step": 12, "data": "gauss8"})
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["config.json", "model.safetensors"]
    plain = tmp_path / "plain.txt"  # the mode any file the user writes gets under their umask (e.g. 0644)
    plain.write_text("")
    assert {(tmp_path / "export" / name).stat().st_mode for name in ("config.json", "model.safetensors")} == {
        plain.stat().st_mode
    }
    loaded, meta = load_model(tmp_path / "export")
    assert meta == {"step": 12, "data": "gauss8"} and loaded.cfg == model.cfg
    for seed in (0, 1):
        a = model.predict(obs, targets, value_index, prior_samples=3, generator=torch.Generator().manual_seed(seed))
        b = loaded.predict(obs, targets, value_index, prior_samples=3, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(a.means, b.means) and torch.equal(a.scale_tril, b.scale_tril) and torch.equal(a.logits, b.logits)
    la = model.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))["loss"]
    lb = loaded.loss(obs, x, targets, value_index, generator=torch.Generator().manual_seed(0))["loss"]
    assert torch.equal(la, lb)


def test_preset_round_trips_through_export(tmp_path) -> None:
    model = Activa(PRESETS["sergio"])
    save_model(model, tmp_path)
    loaded, meta = load_model(tmp_path)
    assert loaded.cfg == PRESETS["sergio"] and meta == {}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


@pytest.fixture
def exported(tmp_path):
    save_model(tiny_model(), tmp_path / "m")
    return tmp_path / "m"


def edit_config(directory, change) -> None:
    path = directory / "config.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc["model"].update(colour="red"), r"config\.json: unknown model config key\(s\) \['colour'\]"),
        (lambda doc: doc["model"].pop("beta"), r"config\.json: model config is missing key\(s\) \['beta'\]"),
        (lambda doc: doc["model"].update(heads="two"), r"config\.json: model\.heads must be of type int"),
        (lambda doc: doc["model"].update(embed_dim=32), r"model\.safetensors: weights do not match .*wrong shapes"),
        (lambda doc: doc["model"].update(encoder_layers=3), r"config\.json: model\.encoder_layers=3: must be even"),
        (lambda doc: doc.update(format="something-else"), r"config\.json: \"format\" must be 'activa_ray\.model'"),
        (lambda doc: doc.update(format_version=2), r"config\.json: format_version 2 is not supported"),
    ],
)
def test_load_errors_name_the_file_and_the_problem(exported, change, message) -> None:
    edit_config(exported, change)
    with pytest.raises(ModelFileError, match=message):
        load_model(exported)


def test_load_errors_for_missing_or_corrupt_files(exported, tmp_path) -> None:
    with pytest.raises(ModelFileError, match="not a directory"):
        load_model(tmp_path / "nowhere")
    (exported / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model(exported)
    (exported / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"config\.json: not valid JSON"):
        load_model(exported)
    (exported / "config.json").unlink()
    with pytest.raises(ModelFileError, match=r"config\.json: missing"):
        load_model(exported)


def test_one_model_trains_on_8_variables_and_predicts_on_11() -> None:
    model = tiny_model()
    obs8, x8, targets8, index8 = make_batch(15, 2, 30, 30, 8)
    model.loss(obs8, x8, targets8, index8, generator=torch.Generator().manual_seed(0))["loss"].backward()
    obs11, _, targets11, index11 = make_batch(16, 3, 40, 30, 11)
    mix = model.predict(obs11, targets11, index11, prior_samples=50, generator=torch.Generator().manual_seed(0))
    assert mix.sample(30, generator=torch.Generator().manual_seed(1)).shape == (3, 30, 11)
    assert torch.isfinite(mix.covariance).all()
