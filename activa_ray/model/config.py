"""Every hyperparameter of the ACTIVA model (paper table 4) and its allowed values; pure data, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from activa_ray.ranges import AT_LEAST_0, AT_LEAST_1, POSITIVE, Range, range_problems


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
    # How the query's value reaches the model. index: a one-hot over intervention_values (the paper; also for
    # knockouts and placeholder interventions). value: the value itself, in the target's observational standard
    # deviations when `standardize`, so do(X = v) works for any v in the trained range.
    intervention_encoding: Literal["index", "value"] = "index"
    # Standardise every variable by its observational mean and std before the model sees it (training and
    # prediction alike) and map predictions back: units do not matter, and the variances that grow downstream
    # in raw linear SCMs ("varsortability") no longer give the causal order away.
    standardize: bool = False
    # Append to every variable's query representation what linear regression on the observational sample
    # says about the intervention (query.regression_features): the conditional mean shift and the target's
    # coefficient given all the other variables; the decoder adds both to its means through learned gates. The
    # model still decides, from the graph it infers, which applies. Needs `standardize`.
    regression_features: bool = False
    # Let the decoder read the observational embedding h' beside the latent (a conditional decoder p(V | z, D, do),
    # as in Sohn et al.'s CVAE): the paper's decoder sees only z (d × latent_dim numbers), so the observational
    # covariance and each variable's linear answer must pass through that bottleneck. h' enters through a linear
    # added to the decoder's input tokens that starts at 0, so a warm start predicts what its export did.
    decoder_context: bool = False

    RANGES: ClassVar[dict[str, Range]] = {
        "heads": AT_LEAST_1, "decoder_layers": AT_LEAST_0, "encoder_layers": AT_LEAST_0,
        "dropout": Range(0, 1, high_open=True), "embed_dim": AT_LEAST_1, "hidden_dim": AT_LEAST_1,
        "latent_dim": AT_LEAST_1, "decoder_components": AT_LEAST_1, "prior_components": AT_LEAST_1,
        "beta": AT_LEAST_0, "prior_var": POSITIVE, "encoder_var": POSITIVE, "cov_floor": POSITIVE,
    }


def check_model_config(cfg: ModelConfig, prefix: str = "model") -> list[str]:
    """One `key=value: must be ...` line per value that cannot build a model (none: it can)."""
    problems = range_problems(cfg, prefix)
    if problems:  # the checks below divide by and compare the values just refused
        return problems
    if cfg.encoder_layers % 2:
        problems.append(
            f"{prefix}.encoder_layers={cfg.encoder_layers}: must be even (L alternates sample and variable attention)"
        )
    if cfg.embed_dim % cfg.heads:
        problems.append(f"{prefix}.embed_dim={cfg.embed_dim}: must be divisible by {prefix}.heads={cfg.heads}")
    if cfg.intervention_encoding not in ("index", "value"):
        problems.append(f"{prefix}.intervention_encoding={cfg.intervention_encoding!r}: must be index or value")
    if cfg.regression_features and not cfg.standardize:
        problems.append(f"{prefix}.regression_features=true: needs {prefix}.standardize=true (the decoder adds the "
                        "features' shifts, which are in observational standard deviations, to its means)")
    if cfg.intervention_encoding == "index" and not cfg.intervention_values:
        problems.append(f"{prefix}.intervention_values=[]: must list at least one intervention value")
    return problems


# The fields that set the model's tensor shapes (besides the input projections' width).
SHAPE_FIELDS = ("embed_dim", "hidden_dim", "latent_dim", "decoder_components", "prior_components")


def warm_start_problems(source: dict, target: ModelConfig, prefix: str = "model") -> list[str]:
    """Why an export's model (its config.json "model" dict) cannot warm-start `target` (none: it can).

    Its weights must have the target's sizes: a slice of a trained matrix is not a trained smaller one.
    Only the encoding may change from index (one value) to value, and regression features may be added
    (the input projection gains columns), and the decoder context (a new projection starting at 0), and
    the prior may gain components by splitting each of the export's into copies (model.io.warm_start).
    """
    problems = [f"{prefix}.{name}={getattr(target, name)}: the export has {source.get(name)!r}"
                for name in SHAPE_FIELDS if name != "prior_components" and source.get(name) != getattr(target, name)]
    components = source.get("prior_components")
    if not isinstance(components, int) or target.prior_components % components:
        problems.append(f"{prefix}.prior_components={target.prior_components}: must be a multiple of the export's "
                        f"{components!r} (each of its components is split into equal copies)")
    encodings = (source.get("intervention_encoding", "index"), target.intervention_encoding)
    values = len(source.get("intervention_values") or [])
    if encodings == ("index", "value") and values > 1:
        problems.append(f"{prefix}.intervention_encoding=value: the export indexes {values} values "
                        "(its one-hot columns would fill the value column)")
    elif encodings == ("value", "index"):
        problems.append(f"{prefix}.intervention_encoding=index: the export encodes values")
    elif encodings == ("index", "index") and values != len(target.intervention_values):
        problems.append(f"{prefix}.intervention_values={target.intervention_values}: the export indexes {values} values")
    if source.get("regression_features", False) and not target.regression_features:
        problems.append(f"{prefix}.regression_features=false: the export reads regression features")
    if source.get("decoder_context", False) and not target.decoder_context:
        problems.append(f"{prefix}.decoder_context=false: the export's decoder reads the observational embedding")
    return problems


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
