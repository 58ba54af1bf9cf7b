"""A batch of full-covariance Gaussian mixtures over d variables, with optional pinned coordinates.

Batched Cholesky math (no torch.distributions) so that log-densities of many queries and many
components cost one triangular solve. Pinned coordinates model point-mass interventions (a
knockout is exactly 0): they are left out of `log_prob` (the Gaussian is marginalised over them),
set to their value in every sample, and have zero variance in `covariance`.
"""

from __future__ import annotations

import math

import torch

LOG_TWO_PI = math.log(2.0 * math.pi)


def isolate_pinned(covariance: torch.Tensor, pinned_mask: torch.Tensor) -> torch.Tensor:
    """Replace the pinned rows and columns of covariance (..., M, d, d) by identity blocks.

    pinned_mask (..., d) bool. The result is block diagonal [Σ_free,free, I] up to a permutation,
    so a Gaussian log-density with it, zero residuals on the pinned coordinates and the
    2π-constant counted over the free coordinates only is exactly the marginal over the free ones.
    """
    free = ~pinned_mask
    keep = (free.unsqueeze(-1) & free.unsqueeze(-2)).unsqueeze(-3)  # (..., 1, d, d)
    identity = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
    pinned_identity = identity * pinned_mask.to(covariance.dtype).unsqueeze(-2).unsqueeze(-3)
    return torch.where(keep, covariance, pinned_identity)


def component_log_prob(
    x: torch.Tensor,
    means: torch.Tensor,
    scale_tril: torch.Tensor,
    pinned_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """log N(x_n; means_m, L_m L_mᵀ) for x (B, n, d), means (B, M, d), scale_tril (B, M, d, d) -> (B, M, n).

    With pinned_mask (B, d), scale_tril must come from `isolate_pinned` covariances; the pinned
    coordinates then drop out of the density.
    """
    residual = x.unsqueeze(1) - means.unsqueeze(2)  # (B, M, n, d)
    free_count = torch.full((x.shape[0],), float(x.shape[-1]), dtype=x.dtype, device=x.device)
    if pinned_mask is not None:
        residual = residual.masked_fill(pinned_mask[:, None, None, :], 0.0)
        free_count = free_count - pinned_mask.sum(-1).to(x.dtype)
    whitened = torch.linalg.solve_triangular(scale_tril, residual.transpose(-1, -2), upper=False)  # (B, M, d, n)
    mahalanobis = whitened.pow(2).sum(-2)  # (B, M, n)
    half_log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (B, M)
    constant = 0.5 * LOG_TWO_PI * free_count  # (B,)
    return -0.5 * mahalanobis - half_log_det.unsqueeze(-1) - constant[:, None, None]


class GaussianMixture:
    """B independent mixtures of M Gaussians over d variables.

    logits (B, M): unnormalised log-weights. means (B, M, d). scale_tril (B, M, d, d): lower
    Cholesky factors of the component covariances over all d coordinates (the pinned rows and
    columns are ignored). pinned_mask (B, d) bool and pinned_values (B, d): coordinates fixed
    to a value (point-mass interventions). Everything takes the dtype and device of `means`.
    """

    def __init__(
        self,
        logits: torch.Tensor,
        means: torch.Tensor,
        scale_tril: torch.Tensor,
        pinned_mask: torch.Tensor | None = None,
        pinned_values: torch.Tensor | None = None,
    ) -> None:
        batch, components, dim = means.shape
        if logits.shape != (batch, components) or scale_tril.shape != (batch, components, dim, dim):
            raise ValueError(
                f"GaussianMixture expects logits (B, M), means (B, M, d), scale_tril (B, M, d, d); "
                f"got {tuple(logits.shape)}, {tuple(means.shape)}, {tuple(scale_tril.shape)}"
            )
        logits = logits.to(device=means.device, dtype=means.dtype)
        scale_tril = scale_tril.to(device=means.device, dtype=means.dtype)
        if (pinned_mask is None) != (pinned_values is None):
            raise ValueError("GaussianMixture needs pinned_mask and pinned_values together")
        if pinned_mask is not None:
            if pinned_mask.shape != (batch, dim) or pinned_values.shape != (batch, dim):
                raise ValueError(
                    f"pinned_mask and pinned_values must be (B, d) = {(batch, dim)}; "
                    f"got {tuple(pinned_mask.shape)} and {tuple(pinned_values.shape)}"
                )
            pinned_mask = pinned_mask.to(device=means.device, dtype=torch.bool)
            pinned_values = pinned_values.to(device=means.device, dtype=means.dtype)
            if bool(pinned_mask.any()):
                covariance = scale_tril @ scale_tril.transpose(-1, -2)
                scale_tril = torch.linalg.cholesky(isolate_pinned(covariance, pinned_mask))
                means = torch.where(pinned_mask.unsqueeze(1), pinned_values.unsqueeze(1), means)
            else:
                pinned_mask = pinned_values = None
        self.logits = logits
        self.means = means
        self.scale_tril = scale_tril
        self.pinned_mask = pinned_mask
        self.pinned_values = pinned_values

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num_components(self) -> int:
        return self.means.shape[1]

    @property
    def dim(self) -> int:
        return self.means.shape[2]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)  # (B, M)

    @property
    def component_covariances(self) -> torch.Tensor:
        covariance = self.scale_tril @ self.scale_tril.transpose(-1, -2)  # (B, M, d, d)
        if self.pinned_mask is None:
            return covariance
        free = ~self.pinned_mask
        return covariance * (free.unsqueeze(-1) & free.unsqueeze(-2)).unsqueeze(1).to(covariance.dtype)

    @property
    def mean(self) -> torch.Tensor:
        return (self.weights.unsqueeze(-1) * self.means).sum(1)  # (B, d)

    @property
    def covariance(self) -> torch.Tensor:
        """Law of total covariance: Σ_m w_m (Σ_m + μ_m μ_mᵀ) − μ μᵀ, (B, d, d)."""
        weights = self.weights[..., None, None]  # (B, M, 1, 1)
        centred = self.means - self.mean.unsqueeze(1)  # (B, M, d); centring avoids cancellation
        spread = centred.unsqueeze(-1) * centred.unsqueeze(-2)  # (B, M, d, d)
        return (weights * (self.component_covariances + spread)).sum(1)

    @property
    def marginal_std(self) -> torch.Tensor:
        return self.covariance.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt()  # (B, d)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of x (B, n, d) -> (B, n), over the non-pinned coordinates."""
        if x.dim() != 3 or x.shape[0] != self.batch_size or x.shape[2] != self.dim:
            raise ValueError(f"log_prob expects x of shape (B={self.batch_size}, n, d={self.dim}); got {tuple(x.shape)}")
        x = x.to(device=self.means.device, dtype=self.means.dtype)
        per_component = component_log_prob(x, self.means, self.scale_tril, self.pinned_mask)  # (B, M, n)
        log_weights = torch.log_softmax(self.logits, dim=-1).unsqueeze(-1)  # (B, M, 1)
        return torch.logsumexp(log_weights + per_component, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples per query, (B, n, d); all randomness from `generator`."""
        batch, device = self.batch_size, self.means.device
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (B, n)
        noise = torch.randn((batch, n, self.dim), generator=generator, device=device, dtype=self.means.dtype)
        rows = torch.arange(batch, device=device).unsqueeze(-1)  # (B, 1)
        chosen_means = self.means[rows, component]  # (B, n, d)
        chosen_tril = self.scale_tril[rows, component]  # (B, n, d, d)
        samples = chosen_means + (chosen_tril @ noise.unsqueeze(-1)).squeeze(-1)
        if self.pinned_mask is not None:
            samples = torch.where(self.pinned_mask.unsqueeze(1), self.pinned_values.unsqueeze(1), samples)
        return samples

    def select(self, index: int | slice | torch.Tensor) -> GaussianMixture:
        """The queries at `index`; an int keeps a batch of one, so every method keeps its shapes."""
        if isinstance(index, int):
            if not -self.batch_size <= index < self.batch_size:
                raise IndexError(f"query {index} out of range for a batch of {self.batch_size}")
            index = slice(index % self.batch_size, index % self.batch_size + 1)
        return GaussianMixture(
            self.logits[index],
            self.means[index],
            self.scale_tril[index],
            None if self.pinned_mask is None else self.pinned_mask[index],
            None if self.pinned_values is None else self.pinned_values[index],
        )

    def __getitem__(self, index: int | slice | torch.Tensor) -> GaussianMixture:
        return self.select(index)

    def affine(self, loc: torch.Tensor, scale: torch.Tensor) -> GaussianMixture:
        """The law of loc + scale · V for V ~ self, loc and scale (B, d) per query and variable (scale > 0).

        Σ' = D Σ D with D = diag(scale), so the Cholesky factor is D L, still lower triangular.
        """
        loc = loc.to(device=self.means.device, dtype=self.means.dtype)
        scale = scale.to(device=self.means.device, dtype=self.means.dtype)
        return GaussianMixture(
            self.logits,
            loc.unsqueeze(1) + scale.unsqueeze(1) * self.means,
            scale[:, None, :, None] * self.scale_tril,
            self.pinned_mask,
            None if self.pinned_values is None else loc + scale * self.pinned_values,
        )

    def to(self, device: torch.device | str) -> GaussianMixture:
        return GaussianMixture(
            self.logits.to(device),
            self.means.to(device),
            self.scale_tril.to(device),
            None if self.pinned_mask is None else self.pinned_mask.to(device),
            None if self.pinned_values is None else self.pinned_values.to(device),
        )
