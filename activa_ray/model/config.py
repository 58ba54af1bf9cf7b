"""Every hyperparameter of the ACTIVA model (paper table 4); pure data, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    heads: int = 2
    decoder_layers: int = 4  # K: transformer blocks of the decoder
    encoder_layers: int = 2  # L: alternating sample/variable attention blocks, even
    # Residual dropout. Table 4 used 0.1 (PRESETS) for 27,000 fixed models seen 3,600 times; streamed
    # models are never seen twice, so the default is off (it cost ~20% of a CPU step for nothing).
    dropout: float = 0.0
    embed_dim: int = 64  # e
    hidden_dim: int = 128  # h: MLP / feed-forward width
    latent_dim: int = 2  # per variable: z ∈ R^{d × latent_dim} (table 4's "d")
    decoder_components: int = 1  # B (table 4's "c"): Gaussian mixture components over V
    prior_components: int = 2  # k: GMM components of the prior
    beta: float = 0.1  # weight of the KL term
    prior_var: float = 0.1  # fixed isotropic variance of each prior component
    encoder_var: float = 0.1  # fixed isotropic variance of q(z | ...)
    cov_floor: float = 1e-3  # ε in Σ_b = u_b u_bᵀ / e + diag(softplus(a_b)) + ε I (the decoder covariance)
    intervention_values: list[float] = field(default_factory=lambda: [5.0])  # the table of values i indexes
    point_mass_interventions: bool = False  # knockouts: targets are exactly the value; left out of the likelihood


# Table 4 of the paper (batch 256, lr and epochs live in the train config).
PRESETS: dict[str, ModelConfig] = {
    "gauss2": ModelConfig(heads=2, decoder_layers=4, encoder_layers=2, embed_dim=64, hidden_dim=128, dropout=0.1),
    "beta2": ModelConfig(heads=2, decoder_layers=4, encoder_layers=2, embed_dim=64, hidden_dim=128, dropout=0.1),
    "gauss8": ModelConfig(heads=4, decoder_layers=4, encoder_layers=4, embed_dim=64, hidden_dim=512, dropout=0.1),
    "beta8": ModelConfig(heads=4, decoder_layers=4, encoder_layers=4, embed_dim=64, hidden_dim=512, dropout=0.1),
    "sergio": ModelConfig(
        heads=4, decoder_layers=4, encoder_layers=4, embed_dim=64, hidden_dim=256, dropout=0.1,
        intervention_values=[0.0], point_mass_interventions=True,
    ),
}
