"""GaussianMixture against torch.distributions, its moments against samples, and pinned coordinates."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from activa_ray.model.mixture import GaussianMixture, isolate_pinned


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def random_scale_tril(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Cholesky factors of well-conditioned random SPD matrices, shape (*shape, d, d)."""
    d = shape[-1]
    a = torch.randn(*shape[:-1], d, d, generator=generator, dtype=torch.float64)
    return torch.linalg.cholesky(a @ a.transpose(-1, -2) / d + 0.3 * torch.eye(d, dtype=torch.float64))


@pytest.mark.parametrize("d", [1, 3, 8])
def test_single_gaussian_log_prob_matches_torch_distributions(d: int) -> None:
    g = torch.Generator().manual_seed(d)
    means = torch.randn(4, 1, d, generator=g, dtype=torch.float64)
    scale_tril = random_scale_tril(g, 4, 1, d)
    x = torch.randn(4, 50, d, generator=g, dtype=torch.float64) * 2
    mix = GaussianMixture(torch.zeros(4, 1, dtype=torch.float64), means, scale_tril)
    reference = MultivariateNormal(means, scale_tril=scale_tril).log_prob(x)  # (4, 50) by broadcasting
    torch.testing.assert_close(mix.log_prob(x), reference)


def test_two_component_log_prob_and_mean_match_mixture_same_family() -> None:
    g = torch.Generator().manual_seed(1)
    batch, d = 3, 4
    logits = torch.randn(batch, 2, generator=g, dtype=torch.float64)
    means = 2 * torch.randn(batch, 2, d, generator=g, dtype=torch.float64)
    scale_tril = random_scale_tril(g, batch, 2, d)
    x = 2 * torch.randn(batch, 40, d, generator=g, dtype=torch.float64)
    mix = GaussianMixture(logits, means, scale_tril)
    reference = MixtureSameFamily(Categorical(logits=logits), MultivariateNormal(means, scale_tril=scale_tril))
    torch.testing.assert_close(mix.log_prob(x), reference.log_prob(x.transpose(0, 1)).transpose(0, 1))
    torch.testing.assert_close(mix.mean, reference.mean)
    torch.testing.assert_close(mix.covariance.diagonal(dim1=-2, dim2=-1), reference.variance)


def test_sample_moments_match_mean_and_covariance() -> None:
    g = torch.Generator().manual_seed(2)
    batch, d, n = 2, 3, 200_000
    logits = torch.tensor([[0.0, 1.0, -0.5], [2.0, 0.0, 0.0]], dtype=torch.float64)
    means = 3 * torch.randn(batch, 3, d, generator=g, dtype=torch.float64)
    mix = GaussianMixture(logits, means, random_scale_tril(g, batch, 3, d))
    samples = mix.sample(n, generator=g)
    assert samples.shape == (batch, n, d)
    centred = samples - samples.mean(1, keepdim=True)
    sample_covariance = centred.transpose(1, 2) @ centred / (n - 1)
    scale = mix.covariance.diagonal(dim1=-2, dim2=-1).sqrt()  # (B, d)
    # standard errors: mean ~ sd / sqrt(n) ≈ 0.003 sd; covariance entries a few times that
    assert ((samples.mean(1) - mix.mean).abs() / scale).max() < 0.02
    assert ((sample_covariance - mix.covariance).abs() / (scale.unsqueeze(-1) * scale.unsqueeze(-2))).max() < 0.03
    torch.testing.assert_close(mix.marginal_std, scale)


def test_covariance_is_positive_definite_and_symmetric() -> None:
    g = torch.Generator().manual_seed(3)
    mix = GaussianMixture(
        torch.randn(5, 4, generator=g), 5 * torch.randn(5, 4, 6, generator=g), random_scale_tril(g, 5, 4, 6).float()
    )
    covariance = mix.covariance
    torch.testing.assert_close(covariance, covariance.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(covariance) > 0).all()


def test_sampling_is_deterministic_given_the_generator() -> None:
    g = torch.Generator().manual_seed(4)
    mix = GaussianMixture(torch.randn(2, 3, generator=g), torch.randn(2, 3, 4, generator=g), random_scale_tril(g, 2, 3, 4))
    first = mix.sample(100, generator=torch.Generator().manual_seed(7))
    again = mix.sample(100, generator=torch.Generator().manual_seed(7))
    other = mix.sample(100, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_pinned_coordinates_are_marginalised_and_fixed() -> None:
    g = torch.Generator().manual_seed(5)
    batch, d = 2, 4
    means = torch.randn(batch, 1, d, generator=g, dtype=torch.float64)
    scale_tril = random_scale_tril(g, batch, 1, d)
    pinned_mask = torch.tensor([[False, True, False, False], [True, False, False, True]])
    pinned_values = torch.zeros(batch, d, dtype=torch.float64)
    mix = GaussianMixture(torch.zeros(batch, 1, dtype=torch.float64), means, scale_tril, pinned_mask, pinned_values)
    x = torch.randn(batch, 30, d, generator=g, dtype=torch.float64)
    full_covariance = scale_tril @ scale_tril.transpose(-1, -2)
    for b in range(batch):
        free = ~pinned_mask[b]
        marginal = MultivariateNormal(means[b, 0, free], full_covariance[b, 0][free][:, free])
        torch.testing.assert_close(mix.log_prob(x)[b], marginal.log_prob(x[b][:, free]))
    # the pinned coordinates do not enter the density
    moved = x.clone()
    moved[pinned_mask.unsqueeze(1).expand_as(x)] = 123.0
    torch.testing.assert_close(mix.log_prob(moved), mix.log_prob(x))
    samples = mix.sample(1000, generator=g)
    assert (samples[pinned_mask.unsqueeze(1).expand_as(samples)] == 0.0).all()
    assert (mix.mean[pinned_mask] == 0.0).all()
    assert (mix.covariance[pinned_mask] == 0.0).all()
    assert (mix.covariance.transpose(1, 2)[pinned_mask] == 0.0).all()
    # the free block of the covariance is the model's
    free = ~pinned_mask[0]
    torch.testing.assert_close(mix.covariance[0][free][:, free], full_covariance[0, 0][free][:, free])


def test_isolate_pinned_gives_identity_blocks() -> None:
    covariance = torch.full((1, 1, 3, 3), 0.5) + torch.eye(3)
    isolated = isolate_pinned(covariance, torch.tensor([[False, True, False]]))
    expected = torch.tensor([[1.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 1.5]])
    torch.testing.assert_close(isolated[0, 0], expected)


def test_select_and_indexing_keep_one_query() -> None:
    g = torch.Generator().manual_seed(6)
    mix = GaussianMixture(torch.randn(3, 2, generator=g), torch.randn(3, 2, 5, generator=g), random_scale_tril(g, 3, 2, 5))
    one = mix[1]
    assert one.batch_size == 1 and one.num_components == 2 and one.dim == 5
    torch.testing.assert_close(one.mean[0], mix.mean[1])
    torch.testing.assert_close(mix.select(-1).covariance[0], mix.covariance[2])
    assert len(mix[0:2]) == 2
    with pytest.raises(IndexError):
        mix[3]


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="scale_tril"):
        GaussianMixture(torch.zeros(2, 1), torch.zeros(2, 1, 3), torch.eye(2).expand(2, 1, 2, 2))
    mix = GaussianMixture(torch.zeros(2, 1), torch.zeros(2, 1, 3), torch.eye(3).expand(2, 1, 3, 3))
    with pytest.raises(ValueError, match="log_prob expects"):
        mix.log_prob(torch.zeros(2, 5, 4))
