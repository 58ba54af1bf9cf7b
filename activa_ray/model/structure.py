"""The structure-posterior ACTIVA: an amortized posterior over the target's descendants, decoded by
least squares on the observational sample.

In a linear SCM every unit's value under do(X_t = v) is its observational value moved along the total
effects of t: x' = x + τ (v - x_t), with τ_t = 1 and τ_j = 0 off t's descendants (x_j = τ_j x_t + U_j,
where U_j gathers the paths that avoid t, which the intervention leaves alone). Once the descendants
are known, τ is identified by least squares: τ_j is x_t's coefficient when x_j is regressed on x_t and
every non-descendant of t (a valid adjustment set: it holds t's parents and no descendant). So the
network learns only what regression cannot say, which variables descend from t, and it learns it from
what the simulator knows (the graph), as amortized structure learners do, not through a reconstruction.

The network reads scale-free statistics of each ordered pair of the standardised sample (correlation,
partial correlations, and the cross-moments of a regression residual with its regressor, which tell
cause from effect under non-Gaussian noise), mixes them with axial attention over the d × d grid of
pairs, and answers every target at once with K alternative hypotheses: a mixture of products of
Bernoullis over "j is not a descendant of t", trained by maximum likelihood against the true graph, so
that where the data cannot decide (the descendants move / they do not), the weights say so.

A prediction draws S descendant sets from that mixture; each set is one Gaussian component in the
data's units: mean μ + τ (v - μ_t), covariance A Σ Aᵀ with A = I - τ e_tᵀ, the target pinned at v.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from activa_ray.model.mixture import GaussianMixture
from activa_ray.ranges import AT_LEAST_0, AT_LEAST_1, POSITIVE, Range, range_problems

PAIR_FEATURES = 20
# Standardised moments can be large for heavy-tailed samples: asinh keeps their sign and order, not their scale.
SQUASH = torch.asinh


@dataclass
class StructureConfig:
    embed_dim: int = 64  # e: width of every pair token
    hidden_dim: int = 128  # feed-forward width
    layers: int = 4  # axial blocks (attention along rows, then along columns, then a feed-forward)
    heads: int = 4
    hypotheses: int = 4  # K: alternative descendant sets per target
    ridge: float = 0.01  # added to the standardised covariance before any regression
    edge_weight: float = 0.5  # weight of the auxiliary edge loss (graph[i, j] from pair token (i, j))
    cov_floor: float = 1e-4  # added to every component's variance (standardised units) so it factorises

    # What a Predictor asks of any model: this one takes values, standardises, and pins the target.
    intervention_encoding: ClassVar[str] = "value"
    intervention_values: ClassVar[list[float]] = []
    standardize: ClassVar[bool] = True
    point_mass_interventions: ClassVar[bool] = True

    RANGES: ClassVar[dict[str, Range]] = {
        "embed_dim": AT_LEAST_1, "hidden_dim": AT_LEAST_1, "layers": AT_LEAST_1, "heads": AT_LEAST_1,
        "hypotheses": AT_LEAST_1, "ridge": POSITIVE, "edge_weight": AT_LEAST_0, "cov_floor": POSITIVE,
    }


def check_structure_config(cfg: StructureConfig, prefix: str = "model") -> list[str]:
    """One `key=value: must be ...` line per value that cannot build a model (none: it can)."""
    problems = range_problems(cfg, prefix)
    if not problems and cfg.embed_dim % cfg.heads:
        problems.append(f"{prefix}.embed_dim={cfg.embed_dim}: must be divisible by {prefix}.heads={cfg.heads}")
    return problems


# ---------------------------------------------------------------------------------------------------
# statistics of the observational sample


def standardize(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """obs (B, N, d) -> z-scores (B, N, d), mean (B, d), std (B, d) (population std, floored)."""
    mean = obs.mean(1)
    std = obs.std(1, unbiased=False).clamp_min(1e-8)
    return (obs - mean[:, None]) / std[:, None], mean, std


def pair_features(z: torch.Tensor, ridge: float) -> torch.Tensor:
    """Standardised sample z (B, N, d) -> features (B, d, d, PAIR_FEATURES) of every ordered pair (i, j).

    Residual moments: r = (z_j - c_ij z_i) / sqrt(1 - c_ij²) is j's residual on i. If i causes j (and
    nothing else links them) r is independent of z_i, so E[z_i² r], E[z_i r²], E[z_i³ r], E[z_i r³] and
    E[z_i² r²] - 1 vanish; in the other direction they do not unless the noise is Gaussian. They follow
    from the raw cross-moments m_ab = E[z_i^a z_j^b] without forming r, in float64: the fourth-order
    terms cancel to a few digits when c_ij is near ±1.
    """
    z = z.double()
    batch, n, d = z.shape
    eye = torch.eye(d, dtype=z.dtype, device=z.device)

    def moment(a: int, b: int) -> torch.Tensor:  # E[z_i^a z_j^b], (B, d, d)
        return (z.pow(a).transpose(1, 2) @ z.pow(b)) / n

    corr = moment(1, 1).clamp(-1.0, 1.0)
    precision = torch.linalg.inv(corr + ridge * eye)
    p_diag = precision.diagonal(dim1=-2, dim2=-1)  # (B, d)
    partial = -precision / (p_diag[:, :, None] * p_diag[:, None, :]).sqrt()
    partial = partial * (1 - eye)
    r_squared = (1 - 1 / p_diag).clamp(0.0, 1.0)  # (B, d): each variable on all the others

    # Partial correlation given each single third variable k: rho_ij.k, (B, i, j, k).
    unexplained = (1 - corr.pow(2)).clamp_min(1e-4)
    given_one = (corr[:, :, :, None] - corr[:, :, None, :] * corr[:, None, :, :]) / (
        unexplained[:, :, None, :] * unexplained[:, None, :, :]).sqrt()
    others = 1 - (eye[:, :, None] + eye[:, None, :] + eye[None, :, :]).clamp(max=1)  # k not i, not j
    if d > 2:
        given_one = given_one.abs()
        weakest = torch.where(others.bool(), given_one, torch.full_like(given_one, 2.0)).amin(-1)
        strongest = (given_one * others).amax(-1)
    else:
        weakest = strongest = corr.abs()

    c, third, fourth = corr, z.pow(3).mean(1), z.pow(4).mean(1)  # (B, d, d), (B, d), (B, d)
    m3_i, m4_i = third[:, :, None], fourth[:, :, None]  # the regressor's own moments, broadcast over j
    m21, m12, m31, m13, m22 = moment(2, 1), moment(1, 2), moment(3, 1), moment(1, 3), moment(2, 2)
    s = unexplained.sqrt()
    residual = [
        (m21 - c * m3_i) / s,
        (m12 - 2 * c * m21 + c.pow(2) * m3_i) / s.pow(2),
        (m31 - c * m4_i) / s,
        (m13 - 3 * c * m22 + 3 * c.pow(2) * m31 - c.pow(3) * m4_i) / s.pow(3),
        (m22 - 2 * c * m31 + c.pow(2) * m4_i) / s.pow(2) - 1,
    ]
    root_n = math.sqrt(max(n - 3, 1))

    def fisher(r: torch.Tensor) -> torch.Tensor:  # Fisher's z test statistic of a correlation, / 10
        return torch.atanh(r.clamp(-0.999, 0.999)) * root_n / 10

    def per_variable(values: torch.Tensor) -> list[torch.Tensor]:  # (B, d) -> its value at i and at j
        return [values[:, :, None].expand(-1, -1, d), values[:, None, :].expand(-1, d, -1)]

    skew, kurtosis = third, fourth - 3
    features = [
        c, partial, weakest, strongest, fisher(c), fisher(partial), *residual,
        *per_variable(r_squared), *per_variable(skew), *per_variable(kurtosis),
        eye.expand(batch, d, d),
        torch.full_like(c, math.log(n) / 7), torch.full_like(c, math.log(d) / 3),
    ]
    return SQUASH(torch.stack(features, -1)).float()  # (B, d, d, F)


# ---------------------------------------------------------------------------------------------------
# the network


class AxialBlock(nn.Module):
    """Pre-norm attention along each row of the pair grid, then along each column, then a feed-forward."""

    def __init__(self, cfg: StructureConfig) -> None:
        super().__init__()
        e = cfg.embed_dim
        self.row_norm, self.col_norm, self.ff_norm = nn.LayerNorm(e), nn.LayerNorm(e), nn.LayerNorm(e)
        self.row_attn = nn.MultiheadAttention(e, cfg.heads, batch_first=True)
        self.col_attn = nn.MultiheadAttention(e, cfg.heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(e, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, e))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, d, d, e)
        batch, d, _, e = h.shape
        rows = self.row_norm(h).reshape(batch * d, d, e)  # pair (i, ·) attends over its row
        h = h + self.row_attn(rows, rows, rows, need_weights=False)[0].reshape(batch, d, d, e)
        cols = self.col_norm(h).transpose(1, 2).reshape(batch * d, d, e)  # pair (·, j) over its column
        h = h + self.col_attn(cols, cols, cols, need_weights=False)[0].reshape(batch, d, d, e).transpose(1, 2)
        return h + self.ff(self.ff_norm(h))


@dataclass
class StructurePosterior:
    """Per target t: K hypotheses of which variables are NOT descendants of t, with weights."""

    log_weights: torch.Tensor  # (B, d_t, K), normalised over K
    logits: torch.Tensor  # (B, d_t, d_j, K): log-odds that j is a non-descendant of t under hypothesis k
    edge_logits: torch.Tensor  # (B, d, d): log-odds of the edge i -> j
    covariance: torch.Tensor  # (B, d, d): the standardised sample's covariance (the correlation matrix)


class StructureActiva(nn.Module):
    """Amortized posterior over each target's descendants + a least-squares decoder (module docstring)."""

    architecture = "structure"

    def __init__(self, cfg: StructureConfig) -> None:
        super().__init__()
        problems = check_structure_config(cfg)
        if problems:
            raise ValueError("; ".join(problems))
        self.cfg = cfg
        e, k = cfg.embed_dim, cfg.hypotheses
        self.embed = nn.Linear(PAIR_FEATURES, e)
        self.blocks = nn.ModuleList(AxialBlock(cfg) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(e)
        self.member_head = nn.Sequential(nn.Linear(4 * e, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, k))
        self.weight_head = nn.Sequential(nn.Linear(4 * e, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, k))
        self.edge_head = nn.Linear(e, 1)

    def posterior(self, obs: torch.Tensor) -> StructurePosterior:
        """obs (B, N, d) in any units -> the posterior over every target's descendants."""
        z, _, _ = standardize(obs.double())  # float64: units four decades apart give the same z
        features = pair_features(z, self.cfg.ridge)  # (B, d, d, F)
        h = self.embed(features)
        for block in self.blocks:
            h = block(h)
        h = self.out_norm(h)  # (B, i, j, e)
        batch, d = h.shape[:2]
        diagonal = h.diagonal(dim1=1, dim2=2).transpose(1, 2)  # (B, d, e)
        # For target t and variable j: tokens (t, j), (j, t), (t, t), (j, j), indexed (B, t, j, ·).
        query = torch.cat([
            h, h.transpose(1, 2),
            diagonal[:, :, None].expand(-1, -1, d, -1), diagonal[:, None, :].expand(-1, d, -1, -1),
        ], -1)  # (B, t, j, 4e)
        logits = self.member_head(query)  # (B, t, j, K)
        others = 1 - torch.eye(d, dtype=h.dtype, device=h.device)  # j != t
        pooled = (self.weight_head(query) * others[None, :, :, None]).sum(2) / max(d - 1, 1)  # (B, t, K)
        covariance = (z.transpose(1, 2) @ z / z.shape[1]).float()
        return StructurePosterior(torch.log_softmax(pooled, -1), logits, self.edge_head(h)[..., 0], covariance)

    # ----- training -----

    def loss(self, obs: torch.Tensor, graph: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """obs (B, N, d), graph (B, d, d) with graph[b, i, j] = edge i -> j -> (loss, logged parts).

        The loss is the negative log-likelihood of every target's true non-descendant set under its
        K-hypothesis mixture, per variable, plus cfg.edge_weight times the edges' binary cross-entropy.
        """
        post = self.posterior(obs)
        d = graph.shape[-1]
        non_descendant = 1 - descendants(graph).float()  # (B, t, j)
        others = 1 - torch.eye(d, device=obs.device)
        per_variable = -F.binary_cross_entropy_with_logits(
            post.logits, non_descendant[..., None].expand_as(post.logits), reduction="none")  # (B, t, j, K)
        per_hypothesis = (per_variable * others[None, :, :, None]).sum(2)  # (B, t, K)
        set_nll = -torch.logsumexp(post.log_weights + per_hypothesis, -1).mean() / max(d - 1, 1)
        edge_bce = F.binary_cross_entropy_with_logits(post.edge_logits, graph.float(), weight=others.expand_as(graph))
        marginal = (post.log_weights.exp()[:, :, None] * torch.sigmoid(post.logits)).sum(-1)  # (B, t, j)
        wrong = ((marginal > 0.5).float() != non_descendant).float() * others
        parts = {"set_nll": set_nll.detach(), "edge_bce": edge_bce.detach(),
                 "descendant_error": wrong.sum() / (others.sum() * len(obs))}
        return set_nll + self.cfg.edge_weight * edge_bce, parts

    # ----- inference -----

    def sample_sets(self, post: StructurePosterior, target: torch.Tensor, samples: int,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Non-descendant sets (B, S, d) bool for target indices (B,), and their log-weights (B, S).

        samples = 1 gives the single most probable answer: the heaviest hypothesis, each variable rounded.
        Otherwise each of the S draws picks a hypothesis by weight and each variable by its probability.
        """
        rows = torch.arange(len(target), device=target.device)
        log_weights, logits = post.log_weights[rows, target], post.logits[rows, target]  # (B, K), (B, d, K)
        if samples == 1:
            best = log_weights.argmax(-1)  # (B,)
            return (logits[rows, :, best] > 0)[:, None], torch.zeros(len(target), 1, device=target.device)
        chosen = torch.multinomial(log_weights.exp(), samples, replacement=True, generator=generator)  # (B, S)
        probability = torch.sigmoid(logits).transpose(1, 2)[rows[:, None], chosen]  # (B, S, d)
        uniform = torch.rand(probability.shape, generator=generator, device=probability.device)
        log_weight = torch.full(chosen.shape, -math.log(samples), device=target.device)
        return uniform < probability, log_weight

    @torch.no_grad()
    def predict(
        self,
        obs: torch.Tensor,
        targets: torch.Tensor,
        value_index: torch.Tensor | None = None,
        prior_samples: int = 1,
        generator: torch.Generator | None = None,
        values: torch.Tensor | None = None,
    ) -> GaussianMixture:
        """p(V | D, do(V_t = v)) for obs (B, N, d), one-hot targets (B, d) and values (B,) in the data's units.

        prior_samples = S descendant sets drawn from the posterior (S = 1: the most probable one), each
        a component of the returned mixture (B, S, d); value_index is ignored (values are encoded).
        """
        if not bool(torch.isfinite(obs).all()):
            raise ValueError("obs contains NaN or infinite values; the model needs complete, finite data")
        if prior_samples < 1:
            raise ValueError(f"prior_samples must be >= 1; got {prior_samples}")
        if values is None:
            raise ValueError("this model answers do(target = value) for any value: pass values")
        if not bool((targets.sum(-1) == 1).all()):
            raise ValueError("this model answers interventions on one variable at a time")
        obs = obs.float()
        target = targets.argmax(-1)  # (B,)
        post = self.posterior(obs)
        keep, log_weights = self.sample_sets(post, target, prior_samples, generator)  # (B, S, d)
        return least_squares_mixture(obs, post.covariance, target, keep, log_weights, values.to(obs.device).float(),
                                     self.cfg.ridge, self.cfg.cov_floor)


def least_squares_mixture(obs: torch.Tensor, covariance: torch.Tensor, target: torch.Tensor, keep: torch.Tensor,
                          log_weights: torch.Tensor, values: torch.Tensor, ridge: float, cov_floor: float) -> GaussianMixture:
    """The mixture, in the data's units, whose component s is the interventional Gaussian of non-descendant set
    keep[:, s]: obs (B, N, d), covariance (B, d, d) of its z-scores, target (B,), keep (B, S, d) bool,
    log_weights (B, S), values (B,) in the data's units; the target pinned at its value."""
    _, mean, std = standardize(obs)
    rows = torch.arange(len(target), device=obs.device)
    value = (values - mean[rows, target]) / std[rows, target]  # (B,) standardised
    means, covariances = adjusted_gaussians(covariance, target, keep, value, ridge)
    floor = cov_floor * torch.eye(obs.shape[-1], device=obs.device)
    pinned = F.one_hot(target, obs.shape[-1]).bool()
    mixture = GaussianMixture(log_weights, means, torch.linalg.cholesky(covariances + floor), pinned,
                              value[:, None].expand_as(mean) * pinned)
    return mixture.affine(mean, std)


def descendants(graph: torch.Tensor) -> torch.Tensor:
    """graph (B, d, d) -> (B, d, d) bool, [b, t, j] = j is a proper descendant of t."""
    reach = graph.bool()
    for _ in range(max(1, math.ceil(math.log2(max(graph.shape[-1], 2))))):  # paths of length <= 2^k
        reach = reach | ((reach.float() @ reach.float()) > 0)
    return reach


def adjusted_gaussians(covariance: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, value: torch.Tensor,
                       ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The interventional Gaussian of each adjustment set, in standardised units.

    covariance (B, d, d) of the standardised sample, target (B,), keep (B, S, d) the non-descendant sets
    (the target excluded), value (B,) -> means (B, S, d) and covariances (B, S, d, d).
    τ_j is x_t's coefficient in the ridge regression of x_j on x_t and the set; τ = 0 on the set, 1 at t.
    """
    batch, sets, d = keep.shape
    eye = torch.eye(d, device=covariance.device)
    at_target = F.one_hot(target, d).float()[:, None].expand(-1, sets, -1)  # (B, S, d)
    keep = keep.float() * (1 - at_target)
    regressors = keep + at_target  # (B, S, d)
    sigma = covariance[:, None]  # (B, 1, d, d)
    system = sigma * regressors[..., :, None] * regressors[..., None, :] + eye * (1 - regressors[..., None, :])
    system = system + ridge * eye * regressors[..., None, :]
    coefficients = torch.linalg.solve(system, sigma * regressors[..., :, None])  # (B, S, z, j)
    rows = torch.arange(batch, device=covariance.device)
    tau = coefficients[rows, :, target]  # (B, S, j): x_t's coefficient for each j
    tau = tau * (1 - regressors) + at_target
    move = eye - tau[..., :, None] * at_target[..., None, :]  # A = I - τ e_tᵀ, (B, S, d, d)
    return tau * value[:, None, None], move @ sigma @ move.transpose(-1, -2)
