"""Where a universal model loses to the conditional baseline: its descendants' mean shifts and spreads.

    python results/universal_features/descendants.py SHARDS_DIR MODEL [MODEL ...] [--models 60]

For the first test models of SHARDS_DIR, every (condition, non-target variable) in the observational
sample's standard units: the true shift (interventional sample mean minus observational mean), the
model's S = 1 and S = 50 mixture means, the conditional baseline's linear shift R_jt v_t, and the
true and predicted standard deviations; split by the target's descendants and the rest.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from activa_ray.data.format import read_shard, shard_paths
from activa_ray.eval.pairs import descendant_masks
from activa_ray.model.query import VALUE_SCALE, Standardization, regression_features
from activa_ray.predict import load


def rows_for(model, batch: dict, models: int) -> np.ndarray:
    """One row per (model, condition, non-target variable): is descendant, true, S=1, S=50, linear shift, true std, predicted std."""
    rows = []
    for m in range(models):
        obs, x, targets, values = batch["obs"][m], batch["int"][m], batch["targets"][m], batch["values"][m]
        conditions = len(values)
        below, _ = descendant_masks(np.repeat(batch["graph"][m][None], conditions, 0), targets)  # (C, d)
        repeated = torch.tensor(obs).float().unsqueeze(0).repeat(conditions, 1, 1)
        t, v, index = torch.tensor(targets).float(), torch.tensor(values).float(), torch.zeros(conditions, dtype=torch.long)
        generator = torch.Generator().manual_seed(m)
        one = model.predict(repeated, t, index, prior_samples=1, generator=generator, values=v)
        fifty = model.predict(repeated, t, index, prior_samples=50, generator=generator, values=v)
        mean, std = obs.mean(0), obs.std(0)
        frame = Standardization(repeated, enabled=True)
        linear = (regression_features(frame.to_model(repeated), t, frame.values_to_model(v))[..., 1] * VALUE_SCALE).numpy()
        for c in range(conditions):
            target = int(np.argmax(targets[c]))
            for j in range(obs.shape[1]):
                if j != target:
                    rows.append((below[c, j], (x[c, :, j].mean() - mean[j]) / std[j],
                                 (one.mean[c, j].item() - mean[j]) / std[j], (fifty.mean[c, j].item() - mean[j]) / std[j],
                                 linear[c, j], x[c, :, j].std() / std[j], one.marginal_std[c, j].item() / std[j]))
    return np.asarray(rows, dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("model", nargs="+")
    parser.add_argument("--models", type=int, default=60)
    args = parser.parse_args()
    batch = read_shard(shard_paths(args.data, "test")[0])
    torch.set_num_threads(1)
    for name in args.model:
        rows = rows_for(load(name).model.eval(), batch, args.models)
        print(f"{name} on {args.data} (first {args.models} test models), standard units:")
        for role, selected in (("descendants", rows[:, 0] == 1), ("non-descendants", rows[:, 0] == 0)):
            r = rows[selected]
            truth = r[:, 1]
            slope = lambda predicted: float((predicted * truth).sum() / (truth ** 2).sum())
            print(f"  {role:15s} n={len(r):5d}  |true shift| {np.abs(truth).mean():.2f}  mean error: S=1 "
                  f"{np.abs(r[:, 2] - truth).mean():.2f}, S=50 {np.abs(r[:, 3] - truth).mean():.2f}, linear "
                  f"{np.abs(r[:, 4] - truth).mean():.2f}  slope on the truth: S=1 {slope(r[:, 2]):.2f}, linear "
                  f"{slope(r[:, 4]):.2f}  std: true {r[:, 5].mean():.2f}, predicted {r[:, 6].mean():.2f}")


if __name__ == "__main__":
    main()
