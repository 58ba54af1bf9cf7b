"""Do the prior's components split the hypotheses, or hedge alike? Each component decoded at its mean.

    python results/universal_context/components.py SHARDS_DIR MODEL [MODEL ...] [--models 60]

For the first test models of SHARDS_DIR and every (condition, descendant of the target) in the
observational sample's standard units: each prior component's predicted mean shift, regressed on the
true shift (interventional sample mean minus observational mean), and the component's mean weight.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from activa_ray.data.format import read_shard, shard_paths
from activa_ray.eval.pairs import descendant_masks
from activa_ray.predict import load


@torch.no_grad()
def component_rows(model, batch: dict, models: int) -> np.ndarray:
    """One row per (model, condition, descendant): true shift, each component's shift, each component's weight."""
    rows = []
    for m in range(models):
        obs, x, targets, values = batch["obs"][m], batch["int"][m], batch["targets"][m], batch["values"][m]
        conditions = len(values)
        below, _ = descendant_masks(np.repeat(batch["graph"][m][None], conditions, 0), targets)  # (C, d)
        repeated = torch.tensor(obs).float().unsqueeze(0).repeat(conditions, 1, 1)
        query = model.prepare(repeated, torch.tensor(targets).float(), torch.zeros(conditions, dtype=torch.long),
                              torch.tensor(values).float())
        h_obs = model.embed(query.obs, query.representation)  # (C, d, e)
        logits, means = model.prior(h_obs)  # (C, k), (C, k, d, z)
        context = h_obs if model.cfg.decoder_context else None
        shifts = np.stack([model.decode(means[:, k].float(), None, query.shifts, context)[1][:, 0].numpy()
                           for k in range(means.shape[1])], axis=-1)  # (C, d, k), standard units
        weights = torch.softmax(logits.float(), -1).numpy()  # (C, k)
        mean, std = obs.mean(0), obs.std(0)
        for c in range(conditions):
            for j in np.flatnonzero(below[c]):
                rows.append([(x[c, :, j].mean() - mean[j]) / std[j], *shifts[c, j], *weights[c]])
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--models", dest="n_models", type=int, default=60)
    args = parser.parse_args()
    batch = read_shard(shard_paths(args.data, "test")[0])
    for name in args.models:
        rows = component_rows(load(name).model.eval(), batch, args.n_models)
        components = (rows.shape[1] - 1) // 2
        print(f"{name} on {args.data} (first {args.n_models} test models): {len(rows)} (condition, descendant) rows, "
              f"mean |true shift| {np.abs(rows[:, 0]).mean():.2f} SD")
        for k in range(components):
            slope = np.polyfit(rows[:, 0], rows[:, 1 + k], 1)[0]
            print(f"  component {k}: slope of its shift on the true shift {slope:.2f}, mean weight {rows[:, 1 + components + k].mean():.2f}")


if __name__ == "__main__":
    main()
