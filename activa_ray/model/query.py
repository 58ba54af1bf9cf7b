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


def regression_features(standard: torch.Tensor, targets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per variable, what linear regression on the observational sample says about the query -> (B, d, 4).

    standard (B, N, d): the observational sample standardised by its own mean and std (a
    `Standardization`'s `to_model`); targets (B, d); values (B, d): the value in each variable's
    observational SDs (its `values_to_model`). With R the sample's correlation matrix and v_t the
    target's value, for every non-target j: [R_jt, R_jt v_t / VALUE_SCALE, π_jt, π_jt v_t / VALUE_SCALE],
    summed over the targets, where π_jt = −P_jt / P_jj, P = (R + (d / N) I)⁻¹, is x_t's coefficient when
    x_j is regressed on every other variable. R_jt v_t is the conditional baseline's mean shift, right
    for a descendant with no confounder; π_jt is non-zero only in x_j's Markov blanket: for a child of
    the target, its direct effect shrunk by what x_j's own children tell about x_j. Which applies
    depends on the graph the model infers; a transformer over samples computes neither easily (a
    product of columns, an inverse). The ridge d / N is of the order of R's sampling error: negligible
    for a long table, and it keeps R invertible when N <= d. Target rows are 0. Unit free, as its inputs.
    """
    with torch.autocast(device_type=standard.device.type, enabled=False):
        standard = standard.float()
        samples, variables = standard.shape[1:]
        targets = targets.float()
        correlation = standard.transpose(1, 2) @ standard / samples  # (B, d, d)
        value = values.float() * targets  # (B, d): v_t on the target rows, 0 elsewhere
        ridge = variables / samples * torch.eye(variables, device=standard.device)
        precision = torch.linalg.inv(correlation + ridge)  # (B, d, d)
        partial = -precision / torch.diagonal(precision, dim1=-2, dim2=-1).unsqueeze(-1)  # row j: π_j·
        columns = [correlation @ targets.unsqueeze(-1), correlation @ value.unsqueeze(-1) / VALUE_SCALE,
                   partial @ targets.unsqueeze(-1), partial @ value.unsqueeze(-1) / VALUE_SCALE]
        return torch.cat(columns, dim=-1) * (1.0 - targets).unsqueeze(-1)  # (B, d, 4)


def linear_shifts(features: torch.Tensor) -> torch.Tensor:
    """The two mean shifts of regression_features (B, d, 4), R_jt v_t and π_jt v_t, in SDs -> (B, d, 2)."""
    return features[..., 1::2] * VALUE_SCALE


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
    representation: torch.Tensor  # I (B, d, |I|) or (B, d, 2), plus 4 columns of regression features
    values: torch.Tensor  # (B,) the queries' values, data units
    shifts: torch.Tensor | None  # (B, d, 2) the regression features' two mean shifts, model units (or None)


def with_intervention(data: torch.Tensor, representation: torch.Tensor) -> torch.Tensor:
    """Append I (B, d, |I|), repeated over the samples, to data (B, N, d) -> (B, N, d, 1 + |I|)."""
    batch, samples, variables = data.shape
    repeated = representation.to(data.dtype).unsqueeze(1).expand(batch, samples, variables, -1)
    return torch.cat([data.unsqueeze(-1), repeated], dim=-1)
