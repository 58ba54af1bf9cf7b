"""ACTIVA: a transformer conditional beta-VAE that predicts interventional distributions (paper 3-5).

Shapes: B queries, N interventional samples, N_obs observational samples, d variables,
e = embed_dim, z = latent_dim (per variable), k = prior_components, B_dec = decoder_components.

- I (B, d, |I|): one-hot of the value index on the target rows, appended to every sample of
  both datasets, so h' = h_alpha'(D, I) and h'' = h_alpha''(V, I) both see the query. With
  intervention_encoding "value", I (B, d, 2) is [is target, value / VALUE_SCALE] instead.
- regression_features: I gains 4 columns per variable (query.regression_features): the slope and
  mean shift of linear regression on the targets and the targets' coefficient given the others; and
  each decoder mean gains gated copies of the two shifts, g_b · [R_jt v_t, π_jt v_t] with gates g
  (B_dec, d, 2) a row-wise linear of the decoder tokens, starting at 0. The intent: the latent need
  only say which linear answer a variable follows (a descendant: about the conditional shift; a
  non-descendant: none), not carry the answer's size through its z_dim numbers. Added to a trained
  model, the gates stayed nearly shut (README, universal section).
- decoder_context: the decoder also reads h' (B, d, e), through a linear added to its input tokens
  that starts at 0: p(V | z, D, do), a conditional decoder, where the paper's reads z alone. Added to
  a trained model it opened and improved the likelihood, but moved the predictions by only 1-2%
  (README, universal section).
- standardize: every variable is shifted and scaled by its observational mean and std (a
  `Standardization`) before the networks see it; the loss is the likelihood in those units and
  predictions are mapped back to the data's units.
- Prior p(z | D, do): GMM with k components, means from a per-variable MLP on h', weights from
  sum-pooled h' through an MLP, fixed variance prior_var. Encoder q = N(mu, encoder_var I),
  mu from a per-variable MLP on [h', h''].
- Decoder (model/decoder.py): z tokens -> transformer blocks over the variables -> a B_dec-component
  Gaussian mixture over V with covariance u uᵀ / e + diag(softplus(a)) + cov_floor I.
- Loss (eq. 5): mean over the batch of −Σ_n log p(x_n | z) + β KL, KL by Monte Carlo with the
  reparameterised z. Optionally plus α · (−log p(V | D, do)) under the prior predictive (the
  hybrid objective of conditional VAEs, Sohn et al. 2015): the prior otherwise learns only from
  β·KL towards a moving posterior and, on 8 variables, lags far behind it (see `loss`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from activa_ray.model.attention import AlternatingEmbedding
from activa_ray.model.config import ModelConfig, check_model_config
from activa_ray.model.decoder import MixtureDecoder
from activa_ray.model.mixture import GaussianMixture, component_log_prob, isolate_pinned
from activa_ray.model.query import (
    Query, Standardization, intervention_representation, linear_shifts, regression_features, value_representation,
    with_intervention,
)


def check_config(cfg: ModelConfig) -> None:
    """Raise one ValueError naming every ModelConfig field that cannot build a model."""
    problems = check_model_config(cfg)
    if problems:
        raise ValueError("; ".join(problems))


def two_layer_mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, out_features))


def monte_carlo_kl(
    noise: torch.Tensor,
    encoder_var: float,
    latent: torch.Tensor,
    prior_logits: torch.Tensor,
    prior_means: torch.Tensor,
    prior_var: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-sample KL(q ‖ p_GMM) estimate, log q(z) − log p(z), for z = mu + sqrt(encoder_var) · noise.

    noise, latent (B, d, z); prior_logits (B, k); prior_means (B, k, d, z). Returns the KL (B,)
    and, as a collapse diagnostic, the same estimate per coordinate against the prior's
    one-dimensional marginal mixture, (B, d, z): near 0 where q carries no information.
    """
    log_q_coordinate = -0.5 * noise.pow(2) - 0.5 * math.log(2.0 * math.pi * encoder_var)  # (B, d, z)
    log_weights = torch.log_softmax(prior_logits, dim=-1)  # (B, k)
    log_p_coordinate = -0.5 * (latent.unsqueeze(1) - prior_means).pow(2) / prior_var - 0.5 * math.log(
        2.0 * math.pi * prior_var
    )  # (B, k, d, z)
    log_p = torch.logsumexp(log_weights + log_p_coordinate.sum((-2, -1)), dim=1)  # (B,)
    kl = log_q_coordinate.sum((-2, -1)) - log_p
    log_p_marginal = torch.logsumexp(log_weights[:, :, None, None] + log_p_coordinate, dim=1)  # (B, d, z)
    return kl, log_q_coordinate - log_p_marginal


class Activa(nn.Module):
    """The ACTIVA model. `forward` is `loss`, so a DistributedDataParallel wrapper syncs it."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        in_features = 1 + (2 if cfg.intervention_encoding == "value" else len(cfg.intervention_values))
        in_features += 4 if cfg.regression_features else 0
        embedding = (in_features, cfg.embed_dim, cfg.heads, cfg.hidden_dim, cfg.encoder_layers, cfg.dropout)
        self.observational_embedding = AlternatingEmbedding(*embedding)  # h_alpha'
        self.interventional_embedding = AlternatingEmbedding(*embedding)  # h_alpha''
        self.prior_mean_mlp = two_layer_mlp(cfg.embed_dim, cfg.hidden_dim, cfg.prior_components * cfg.latent_dim)
        self.prior_weight_mlp = two_layer_mlp(cfg.embed_dim, cfg.hidden_dim, cfg.prior_components)
        self.encoder_mean_mlp = two_layer_mlp(2 * cfg.embed_dim, cfg.hidden_dim, cfg.latent_dim)
        self.decoder = MixtureDecoder(cfg)
        self.register_buffer(
            "intervention_values", torch.tensor(cfg.intervention_values, dtype=torch.float32), persistent=False
        )

    # ----- pieces (public so tests and diagnostics can reach them) -----

    def check_query(self, data: torch.Tensor, targets: torch.Tensor, value_index: torch.Tensor, name: str) -> None:
        if data.dim() != 3:
            raise ValueError(f"{name} must be (B, N, d); got shape {tuple(data.shape)}")
        batch, _, variables = data.shape
        if targets.shape != (batch, variables):
            raise ValueError(f"targets must be (B, d) = {(batch, variables)} to match {name}; got {tuple(targets.shape)}")
        if value_index.shape != (batch,):
            raise ValueError(f"value_index must be (B,) = ({batch},); got {tuple(value_index.shape)}")
        num_values = len(self.cfg.intervention_values)
        if self.cfg.intervention_encoding == "index" and value_index.numel() and (int(value_index.min()) < 0 or int(value_index.max()) >= num_values):
            raise ValueError(
                f"value_index must index the model's intervention values {self.cfg.intervention_values} "
                f"(0..{num_values - 1}); got values in [{int(value_index.min())}, {int(value_index.max())}]"
            )

    def query_values(self, value_index: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
        """The query's value (B,) in the data's units: `values`, else the model's table value for value_index."""
        if values is None:
            if self.cfg.intervention_encoding == "value":
                raise ValueError("a value-encoded model needs the intervention values (B,)")
            return self.intervention_values[value_index.long()]
        if values.shape != value_index.shape:
            raise ValueError(f"values must be (B,) = {tuple(value_index.shape)}; got {tuple(values.shape)}")
        return values.to(dtype=torch.float32)

    def prepare(
        self,
        obs: torch.Tensor,
        targets: torch.Tensor,
        value_index: torch.Tensor,
        values: torch.Tensor | None,
        x: torch.Tensor | None = None,
    ) -> Query:
        """Check a batch of queries and put it in the model's terms (see `Query`)."""
        self.check_query(obs, targets, value_index, "obs")
        if x is not None:
            if x.dim() == 3 and obs.shape[-1] != x.shape[-1]:
                raise ValueError(f"obs and x must have the same d; got {obs.shape[-1]} and {x.shape[-1]}")
            self.check_query(x, targets, value_index, "x")
        values = self.query_values(value_index, values)
        frame = Standardization(obs, self.cfg.standardize)
        if self.cfg.intervention_encoding == "value":
            representation = value_representation(targets.float(), frame.values_to_model(values))
        else:
            representation = intervention_representation(targets, value_index, len(self.cfg.intervention_values))
        obs = frame.to_model(obs)
        shifts = None
        if self.cfg.regression_features:  # needs standardize: obs and the values are in observational SDs
            features = regression_features(obs, targets, frame.values_to_model(values))  # (B, d, 4)
            representation = torch.cat([representation.to(features.dtype), features], dim=-1)
            shifts = linear_shifts(features)  # (B, d, 2), model units
        x = None if x is None else frame.to_model(x)
        return Query(frame, obs, x, representation, values, shifts)

    def embed(self, obs: torch.Tensor, representation: torch.Tensor) -> torch.Tensor:
        """h' = h_alpha'(D, I): (B, N_obs, d), (B, d, |I|) -> (B, d, e)."""
        return self.observational_embedding(with_intervention(obs, representation))

    def prior(self, h_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior GMM from h' (B, d, e): logits (B, k), means (B, k, d, z)."""
        batch, variables, _ = h_obs.shape
        means = self.prior_mean_mlp(h_obs).view(batch, variables, self.cfg.prior_components, self.cfg.latent_dim)
        logits = self.prior_weight_mlp(h_obs.sum(1))
        return logits, means.transpose(1, 2)

    def posterior_mean(self, h_obs: torch.Tensor, h_int: torch.Tensor) -> torch.Tensor:
        """Mean of q(z | V, D, do): per-variable MLP on [h', h''] -> (B, d, z)."""
        return self.encoder_mean_mlp(torch.cat([h_obs, h_int], dim=-1))

    def encode(self, obs: torch.Tensor, x: torch.Tensor, representation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h' (B, d, e) from obs (B, N_obs, d) and the posterior mean (B, d, z) from [h', h''(x (B, N, d))]."""
        h_obs = self.embed(obs, representation)
        h_int = self.interventional_embedding(with_intervention(x, representation))
        return h_obs, self.posterior_mean(h_obs, h_int)

    def decode(
        self,
        latent: torch.Tensor,
        pinned_mask: torch.Tensor | None,
        shifts: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """latent (B, d, z) -> float32 logits (B, B_dec), means (B, B_dec, d), scale_tril (B, B_dec, d, d).

        With pinned_mask (B, d) the pinned rows/columns of Σ are replaced by identity blocks (see
        mixture.isolate_pinned); shifts (B, d, 2) are the query's linear shifts (cfg.regression_features),
        context (B, d, e) its observational embedding h' (cfg.decoder_context).
        """
        if self.cfg.regression_features and shifts is None:
            raise ValueError("a model with regression features decodes with the query's shifts (B, d, 2)")
        if self.cfg.decoder_context and context is None:
            raise ValueError("a model with a decoder context decodes with the observational embedding h' (B, d, e)")
        logits, means, covariance = self.decoder(latent, shifts, context)
        with torch.autocast(device_type=latent.device.type, enabled=False):
            if pinned_mask is not None:
                covariance = isolate_pinned(covariance, pinned_mask)
            # cholesky_ex does not raise: a non-finite batch must give a non-finite loss (whose gradients
            # zero_nonfinite_grads clears), not a crash. Failed factorisations become NaN, never garbage.
            scale_tril, info = torch.linalg.cholesky_ex(covariance)
            scale_tril = scale_tril.masked_fill((info != 0)[..., None, None], float("nan"))
            return logits.float(), means.float(), scale_tril

    # ----- training -----

    def loss(
        self,
        obs: torch.Tensor,
        x: torch.Tensor,
        targets: torch.Tensor,
        value_index: torch.Tensor,
        values: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        prior_nll_weight: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """β-ELBO terms for obs (B, N_obs, d), x (B, N, d), targets (B, d), value_index (B,), values (B,).

        "loss": mean over the batch of −Σ_n log p(x_n | z) + β KL (eq. 5, likelihood summed over N),
        plus prior_nll_weight · (−log p(V | D, do)) under the prior predictive when it is > 0.
        "elbo": mean over the batch of Σ_n log p(x_n | z) − KL (β = 1, comparable across β).
        "nll_per_sample", "kl", "kl_per_dim" (z,), "prior_weight_entropy": for logging, and
        "prior_nll_per_sample" when prior_nll_weight > 0.
        The latent noise comes from `generator` (on the inputs' device) when given. With
        cfg.standardize the likelihood is that of x in the observational sample's standard units.
        """
        if not prior_nll_weight >= 0.0:
            raise ValueError(f"prior_nll_weight must be >= 0; got {prior_nll_weight!r}")
        cfg = self.cfg
        query = self.prepare(obs, targets, value_index, values, x)
        obs, x, representation, shifts = query.obs, query.x, query.representation, query.shifts
        h_obs, mu = self.encode(obs, x, representation)  # (B, d, e), (B, d, z)
        prior_logits, prior_means = self.prior(h_obs)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=torch.float32)
        latent = mu.float() + math.sqrt(cfg.encoder_var) * noise  # reparameterised z ~ q

        pinned_mask = targets.bool() if cfg.point_mass_interventions else None
        context = h_obs if cfg.decoder_context else None
        logits, means, scale_tril = self.decode(latent, pinned_mask, shifts, context)
        with torch.autocast(device_type=x.device.type, enabled=False):
            per_component = component_log_prob(x.float(), means, scale_tril, pinned_mask)  # (B, B_dec, N)
            log_likelihood = torch.logsumexp(torch.log_softmax(logits, -1).unsqueeze(-1) + per_component, dim=1)  # (B, N)
            prior_logits = prior_logits.float()
            kl, kl_coordinates = monte_carlo_kl(
                noise, cfg.encoder_var, latent, prior_logits, prior_means.float(), cfg.prior_var
            )
            reconstruction = log_likelihood.sum(1)  # (B,)
            prior_log_weights = torch.log_softmax(prior_logits, -1)
            terms = {
                "loss": (-reconstruction + cfg.beta * kl).mean(),
                "nll_per_sample": -log_likelihood.mean(),
                "kl": kl.mean(),
                "kl_per_dim": kl_coordinates.mean((0, 1)),
                "prior_weight_entropy": -(prior_log_weights.exp() * prior_log_weights).sum(-1).mean(),
                "elbo": (reconstruction - kl).mean(),
            }
        if prior_nll_weight > 0.0:
            prior_log_likelihood = self.prior_predictive_log_likelihood(
                x, prior_logits, prior_means, pinned_mask, generator, shifts, context
            )  # (B,)
            terms["loss"] = terms["loss"] - prior_nll_weight * prior_log_likelihood.mean()
            terms["prior_nll_per_sample"] = -prior_log_likelihood.mean() / x.shape[1]
        return terms

    forward = loss  # calling the model computes the loss, so a DistributedDataParallel wrapper syncs it

    def prior_predictive_log_likelihood(
        self,
        x: torch.Tensor,
        prior_logits: torch.Tensor,
        prior_means: torch.Tensor,
        pinned_mask: torch.Tensor | None,
        generator: torch.Generator | None = None,
        shifts: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log Σ_k w_k Π_n p(x_n | z_k) for x (B, N, d): one reparameterised z_k ~ N(m_k, prior_var I) per component -> (B,).

        This is the likelihood of the N samples under what predict does (pick a causal model from
        the prior, decode it); its gradient reaches the prior means, weights and the observational
        embedding directly. The product over n keeps the mixture over models: each component must
        explain the whole sample set, so weights go to the models that do.
        """
        batch, components = prior_logits.shape
        noise = torch.randn(prior_means.shape, generator=generator, device=x.device, dtype=torch.float32)
        latent = prior_means.float() + math.sqrt(self.cfg.prior_var) * noise  # (B, k, d, z)
        mask = None if pinned_mask is None else pinned_mask.repeat_interleave(components, dim=0)
        shifts, context = (None if part is None else part.repeat_interleave(components, dim=0) for part in (shifts, context))
        logits, means, scale_tril = self.decode(latent.flatten(0, 1), mask, shifts, context)  # (B·k, ...)
        with torch.autocast(device_type=x.device.type, enabled=False):
            repeated = x.float().repeat_interleave(components, dim=0)  # (B·k, N, d)
            per_component = component_log_prob(repeated, means, scale_tril, mask)  # (B·k, B_dec, N)
            per_sample = torch.logsumexp(torch.log_softmax(logits, -1).unsqueeze(-1) + per_component, dim=1)
            per_latent = per_sample.sum(-1).view(batch, components)  # (B, k)
            return torch.logsumexp(torch.log_softmax(prior_logits.float(), -1) + per_latent, dim=-1)

    # ----- inference -----

    def pinning(
        self, targets: torch.Tensor, frame: Standardization, values: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """With cfg.point_mass_interventions: the pinned mask (B, d) and the targets' values (B,) in the
        model's units (B, d); else (None, None)."""
        if not self.cfg.point_mass_interventions:
            return None, None
        return targets.bool(), frame.values_to_model(values.to(targets.device))

    @torch.no_grad()
    def reconstruct(
        self,
        obs: torch.Tensor,
        x: torch.Tensor,
        targets: torch.Tensor,
        value_index: torch.Tensor,
        values: torch.Tensor | None = None,
    ) -> GaussianMixture:
        """The decoder's mixture at the posterior mean of q(z | V = x, D, do): (B, N_obs, d), (B, N, d) -> B mixtures.

        A diagnostic, not a prediction (it sees the interventional samples x): where it matches x
        but `predict` does not, the decoder can represent the answer and the prior has not yet
        learnt to find it from D alone. Call `model.eval()` first (dropout).
        """
        frame, obs, x, representation, values, shifts = self.prepare(obs, targets, value_index, values, x)
        h_obs, mu = self.encode(obs, x, representation)  # (B, d, e), (B, d, z)
        pinned_mask, pinned_values = self.pinning(targets, frame, values)
        context = h_obs if self.cfg.decoder_context else None
        logits, means, scale_tril = self.decode(mu.float(), pinned_mask, shifts, context)
        return frame.to_data(GaussianMixture(torch.log_softmax(logits, -1), means, scale_tril, pinned_mask, pinned_values))

    @torch.no_grad()
    def predict(
        self,
        obs: torch.Tensor,
        targets: torch.Tensor,
        value_index: torch.Tensor,
        prior_samples: int = 1,
        generator: torch.Generator | None = None,
        values: torch.Tensor | None = None,
    ) -> GaussianMixture:
        """p(V | D, do(V_t = v_i)) for obs (B, N_obs, d), targets (B, d), value_index (B,).

        S = prior_samples latents from the prior, each decoded to a B_dec-component mixture, all
        combined as one uniform mixture over S (M = S · B_dec components), in the data's units.
        `values` (B,) are the queries' values (default: the model's table value for value_index;
        a value-encoded model needs them); with cfg.point_mass_interventions the targets are
        pinned to them. Call `model.eval()` first (dropout).
        """
        if not bool(torch.isfinite(obs).all()):
            raise ValueError("obs contains NaN or infinite values; the model needs complete, finite data")
        if prior_samples < 1:
            raise ValueError(f"prior_samples must be >= 1; got {prior_samples}")
        cfg = self.cfg
        frame, obs, _, representation, values, shifts = self.prepare(obs, targets, value_index, values)
        batch, _, variables = obs.shape
        h_obs = self.embed(obs, representation)  # (B, d, e)
        prior_logits, prior_means = self.prior(h_obs)  # (B, k), (B, k, d, z)
        component = torch.multinomial(
            torch.softmax(prior_logits.float(), -1), prior_samples, replacement=True, generator=generator
        )  # (B, S)
        rows = torch.arange(batch, device=obs.device).unsqueeze(-1)
        chosen_means = prior_means.float()[rows, component]  # (B, S, d, z)
        noise = torch.randn(chosen_means.shape, generator=generator, device=obs.device, dtype=torch.float32)
        latent = chosen_means + math.sqrt(cfg.prior_var) * noise

        pinned_mask, pinned_values = self.pinning(targets, frame, values)
        decoder_mask = None if pinned_mask is None else pinned_mask.repeat_interleave(prior_samples, dim=0)
        context = h_obs if cfg.decoder_context else None
        shifts, context = (None if part is None else part.repeat_interleave(prior_samples, dim=0) for part in (shifts, context))
        logits, means, scale_tril = self.decode(
            latent.reshape(batch * prior_samples, variables, -1), decoder_mask, shifts, context
        )
        components = prior_samples * cfg.decoder_components
        mixture_logits = torch.log_softmax(logits, -1).reshape(batch, components) - math.log(prior_samples)
        return frame.to_data(GaussianMixture(
            mixture_logits,
            means.reshape(batch, components, variables),
            scale_tril.reshape(batch, components, variables, variables),
            pinned_mask,
            pinned_values,
        ))


def zero_nonfinite_grads(model: nn.Module) -> int:
    """Zero every non-finite gradient entry in place; return how many there were (one device sync)."""
    counts = []
    for parameter in model.parameters():
        if parameter.grad is not None:
            nonfinite = ~torch.isfinite(parameter.grad)
            parameter.grad.masked_fill_(nonfinite, 0.0)
            counts.append(nonfinite.sum())
    return int(torch.stack(counts).sum()) if counts else 0
