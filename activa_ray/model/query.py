"""A query in the model's terms: the intervention representation I appended to every sample, and the
observational standardisation that puts data into the model's units and its predictions back.

Shapes: B queries, N samples, d variables, |I| = the number of table values (index encoding)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from activa_ray.model.mixture import GaussianMixture


def intervention_representation(targets: torch.Tensor, value_index: torch.Tensor, num_values: int) -> torch.Tensor:
    """I_{i,t} without the sample axis: one-hot of value_index (B,) on the rows where targets (B, d) is set -> (B, d, |I|)."""
    one_hot = torch.nn.functional.one_hot(value_index.long(), num_values)  # (B, |I|)
    return targets.unsqueeze(-1).to(one_hot.dtype) * one_hot.unsqueeze(1)


# Value encoding: the value in observational standard deviations over 10, so the trained ±10 SD is ±1.
VALUE_SCALE = 10.0


def value_representation(targets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """I_{i,t} in value mode: [is target, value / VALUE_SCALE] for targets (B, d) and per-variable values (B, d) -> (B, d, 2)."""
    return torch.stack([targets, targets * values / VALUE_SCALE], dim=-1)


class Standardization:
    """Per query and variable location and scale (B, d) of the observational sample; identity when off.

    The scale has a floor relative to the data's size, so a constant column does not blow up.
    """

    def __init__(self, obs: torch.Tensor, enabled: bool) -> None:
        batch, _, variables = obs.shape
        self.enabled = enabled
        if not enabled:
            self.loc = obs.new_zeros(batch, variables, dtype=torch.float32)
            self.scale = obs.new_ones(batch, variables, dtype=torch.float32)
            return
        data = obs.float()
        self.loc = data.mean(1)  # (B, d)
        floor = 1e-3 * data.abs().mean(1) + 1e-12
        self.scale = torch.maximum(data.std(1, correction=0), floor)  # (B, d)

    def to_model(self, data: torch.Tensor) -> torch.Tensor:
        """(B, N, d) in the data's units -> the model's."""
        if not self.enabled:
            return data
        return ((data.float() - self.loc.unsqueeze(1)) / self.scale.unsqueeze(1)).to(data.dtype)

    def values_to_model(self, values: torch.Tensor) -> torch.Tensor:
        """The query's value (B,) in the data's units -> per variable in the model's units (B, d)."""
        return (values.float().unsqueeze(-1) - self.loc) / self.scale

    def to_data(self, mixture: GaussianMixture) -> GaussianMixture:
        return mixture.affine(self.loc, self.scale) if self.enabled else mixture


class Query(NamedTuple):
    """A checked batch of queries in the model's terms."""

    frame: Standardization  # the observational sample's standardisation
    obs: torch.Tensor  # (B, N_obs, d), model units
    x: torch.Tensor | None  # (B, N, d), model units (training and reconstruction only)
    representation: torch.Tensor  # I (B, d, |I|) or (B, d, 2)
    values: torch.Tensor  # (B,) the queries' values, data units


def with_intervention(data: torch.Tensor, representation: torch.Tensor) -> torch.Tensor:
    """Append I (B, d, |I|), repeated over the samples, to data (B, N, d) -> (B, N, d, 1 + |I|)."""
    batch, samples, variables = data.shape
    repeated = representation.to(data.dtype).unsqueeze(1).expand(batch, samples, variables, -1)
    return torch.cat([data.unsqueeze(-1), repeated], dim=-1)
