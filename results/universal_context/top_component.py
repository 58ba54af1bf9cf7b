"""Drawing the prior's component (S = 1, what evaluation does) against always taking the heaviest one.

    python results/universal_context/top_component.py SHARDS_DIR MODEL N_MODELS

For the first N_MODELS test models of SHARDS_DIR: MMD / WSD / ERG (mean over pairs) of N samples
from the S = 1 prediction, from the heaviest prior component with its latent noise, and from the
heaviest component at its mean.
"""

from __future__ import annotations

import math
import sys

import torch

from activa_ray.data.format import read_shard, shard_paths
from activa_ray.eval.metrics import mean_scores
from activa_ray.eval.pairs import flatten_pairs
from activa_ray.model.mixture import GaussianMixture
from activa_ray.predict import load


@torch.no_grad()
def heaviest_component(model, obs, targets, values, generator: torch.Generator | None) -> GaussianMixture:
    """The decoder's mixture at the heaviest prior component's latent (plus prior noise when a generator is given)."""
    query = model.prepare(obs, targets, torch.zeros(len(obs), dtype=torch.long), values)
    h_obs = model.embed(query.obs, query.representation)
    logits, means = model.prior(h_obs)  # (B, k), (B, k, d, z)
    latent = means[torch.arange(len(obs)), logits.argmax(-1)].float()  # (B, d, z)
    if generator is not None:
        latent = latent + math.sqrt(model.cfg.prior_var) * torch.randn(latent.shape, generator=generator)
    context = h_obs if model.cfg.decoder_context else None
    weights, component_means, scale_tril = model.decode(latent, None, query.shifts, context)
    return query.frame.to_data(GaussianMixture(torch.log_softmax(weights, -1), component_means, scale_tril, None, None))


def main() -> None:
    data, name, n_models = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = load(name).model.eval()
    pairs = flatten_pairs(read_shard(shard_paths(data, "test")[0]), n_models)
    obs, x = torch.tensor(pairs["obs"]).float(), torch.tensor(pairs["int"]).float()
    targets, values = torch.tensor(pairs["targets"]).float(), torch.tensor(pairs["values"]).float()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        drawn = model.predict(obs, targets, torch.zeros(len(obs), dtype=torch.long), prior_samples=1,
                              generator=generator, values=values)
        predictions = {"S = 1 (drawn component)": drawn,
                       "heaviest component": heaviest_component(model, obs, targets, values, generator),
                       "heaviest component at its mean": heaviest_component(model, obs, targets, values, None)}
        for label, mixture in predictions.items():
            scores = mean_scores(mixture.sample(x.shape[1], generator=generator).float(), x)
            print(f"{label}: " + " / ".join(f"{scores[k]:.3f}" for k in ("mmd", "wsd", "erg")))


if __name__ == "__main__":
    main()
