"""The decoder dec_gamma: latent tokens -> a Gaussian mixture over the d variables (paper 4).

z tokens -> K transformer blocks over the variables -> B_dec-component mixture: means, u (B_dec, d, e)
and a diagonal a (B_dec, d) by row-wise linears, Σ = u uᵀ / e + diag(softplus(a)) + cov_floor I,
weights from the sum over variables through a linear + softmax. The diagonal term is our addition to
the paper's u·uᵀ: at initialisation the d decoder tokens are nearly identical (they differ only
through the 2-dimensional z), so u uᵀ alone starts almost rank one and the likelihood of data with
independent coordinates is ~2000 nats per sample; with the diagonal it starts near I.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from activa_ray.model.attention import TransformerBlock
from activa_ray.model.config import ModelConfig


class MixtureDecoder(nn.Module):
    """dec_gamma: latent tokens (B, d, z) -> logits (B, B_dec), means (B, B_dec, d), covariance (B, B_dec, d, d)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.components = cfg.decoder_components
        self.embed_dim = cfg.embed_dim
        self.latent_projection = nn.Linear(cfg.latent_dim, cfg.embed_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.embed_dim, cfg.heads, cfg.hidden_dim, cfg.dropout) for _ in range(cfg.decoder_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.embed_dim)
        self.mean_head = nn.Linear(cfg.embed_dim, cfg.decoder_components)
        self.factor_head = nn.Linear(cfg.embed_dim, cfg.decoder_components * cfg.embed_dim)
        self.diagonal_head = nn.Linear(cfg.embed_dim, cfg.decoder_components)
        self.weight_head = nn.Linear(cfg.embed_dim, cfg.decoder_components)
        self.shift_gates = nn.Linear(cfg.embed_dim, 2 * cfg.decoder_components) if cfg.regression_features else None
        self.context_projection = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=False) if cfg.decoder_context else None
        self.cov_floor = cfg.cov_floor
        # The layer-normed tokens have unit-variance features: weights of std sqrt(0.5 / e) give u entries of
        # variance 0.5, so u uᵀ / e starts with diagonal ~0.5, and softplus(a) starts at 0.5: Σ starts with a
        # diagonal near 1 (the scale of standardised data) and eigenvalues >= 0.5.
        nn.init.normal_(self.factor_head.weight, std=(0.5 / cfg.embed_dim) ** 0.5)
        nn.init.zeros_(self.factor_head.bias)
        nn.init.zeros_(self.diagonal_head.weight)
        nn.init.constant_(self.diagonal_head.bias, math.log(math.expm1(0.5)))
        if self.shift_gates is not None:  # gates start closed: a warm start predicts what its export did
            nn.init.zeros_(self.shift_gates.weight)
            nn.init.zeros_(self.shift_gates.bias)
        if self.context_projection is not None:  # starts at 0 for the same reason
            nn.init.zeros_(self.context_projection.weight)

    def forward(
        self, latent: torch.Tensor, shifts: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """shifts (B, d, 2): the linear mean shifts the gates scale (cfg.regression_features); context
        (B, d, e): the observational embedding h' (cfg.decoder_context)."""
        batch, variables, _ = latent.shape
        tokens = self.latent_projection(latent)  # (B, d, e)
        if self.context_projection is not None:
            tokens = tokens + self.context_projection(context.to(tokens.dtype))
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.final_norm(tokens)
        means = self.mean_head(tokens).transpose(1, 2)  # (B, B_dec, d)
        if self.shift_gates is not None:
            gates = self.shift_gates(tokens).view(batch, variables, self.components, 2)  # (B, d, B_dec, 2)
            means = means + (gates * shifts.unsqueeze(2).to(gates.dtype)).sum(-1).transpose(1, 2)
        factors = self.factor_head(tokens).view(batch, variables, self.components, self.embed_dim).transpose(1, 2)
        diagonal = self.diagonal_head(tokens).transpose(1, 2)  # (B, B_dec, d)
        logits = self.weight_head(tokens.sum(1))  # (B, B_dec)
        # Covariance algebra in float32 outside autocast: Cholesky has no bf16 kernel and needs the precision.
        with torch.autocast(device_type=latent.device.type, enabled=False):
            factors = factors.float()  # (B, B_dec, d, e)
            variances = torch.nn.functional.softplus(diagonal.float()) + self.cov_floor  # (B, B_dec, d)
            covariance = factors @ factors.transpose(-1, -2) / self.embed_dim + torch.diag_embed(variances)
        return logits.float(), means.float(), covariance
