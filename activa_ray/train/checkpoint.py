"""Training checkpoints without pickle: weights and optimizer tensors as safetensors, the rest JSON.

A checkpoint directory holds
  model.safetensors      the model's state dict
  optimizer.safetensors  every tensor of the optimizer state, keyed `state.<param index>.<name>`
  state.json             step, optimizer param groups and scalar state, the resolved config
Loading never executes code, and a checkpoint of another model config is refused by name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from activa_ray.config import Config, to_dict
from activa_ray.data.kinds import intervention_table

CHECKPOINT_FORMAT = "activa_ray.checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or belongs to another model."""


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalar_state": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalar_state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: dict,
    extra: dict | None = None,
) -> Path:
    """Write a complete checkpoint into `directory` (built under a temp name, then renamed)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "config": config,
        "optimizer": opt_meta,
        "extra": extra or {},
    }
    (tmp / "state.json").write_text(json.dumps(state))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def read_checkpoint_state(directory: str | os.PathLike) -> dict:
    """The JSON part of a checkpoint (step, config, ...), validated."""
    directory = Path(directory)
    path = directory / "state.json"
    if not path.is_file():
        raise CheckpointError(f"{directory} is not an activa_ray checkpoint: {path.name} is missing")
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    return state


def model_config_differences(state: dict, model_config: dict) -> str:
    """The model fields where a checkpoint's state and `model_config` differ, as one line ("" if none)."""
    saved = state["config"].get("model", {})
    differing = sorted(k for k in set(saved) | set(model_config) if saved.get(k) != model_config.get(k))
    return ", ".join(f"model.{k}: checkpoint {saved.get(k)!r} vs config {model_config.get(k)!r}" for k in differing)


def load_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    model_config: dict,
) -> dict:
    """Restore `model` (and `optimizer`) in place; return the checkpoint state (step, extra...).

    `model_config` is the current run's model section: a checkpoint of another model is refused
    with the fields that differ, instead of a shape error deep inside torch.
    """
    directory = Path(directory)
    state = read_checkpoint_state(directory)
    differences = model_config_differences(state, model_config)
    if differences:
        raise CheckpointError(f"checkpoint {directory} was trained with another model config ({differences})")
    try:
        weights = load_file(str(directory / "model.safetensors"))
        model.load_state_dict(weights)
        if optimizer is not None:
            tensors = load_file(str(directory / "optimizer.safetensors"))
            optimizer.load_state_dict(_optimizer_from_flat(tensors, state["optimizer"]))
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {directory} cannot be loaded: {err}") from None
    return state


def latest_checkpoint(checkpoints_root: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step under `checkpoints_root`, or None."""
    root = Path(checkpoints_root)
    best: tuple[int, Path] | None = None
    if not root.is_dir():
        return None
    for path in root.iterdir():
        if not path.is_dir() or path.name.endswith(".tmp"):
            continue
        try:
            step = read_checkpoint_state(path)["step"]
        except CheckpointError:
            continue
        if best is None or step > best[0]:
            best = (step, path)
    return best[1] if best else None


def examples_seen(step: int, batch_size: int, extra: dict) -> int:
    """(model, condition) examples a checkpoint's weights saw: its run's steps times the batch, plus those of
    the export the run was warm-started from (recorded in the checkpoint's extra)."""
    return step * batch_size + (extra.get("warm_start") or {}).get("examples_seen", 0)


def export_meta(cfg: Config, step: int, extra: dict) -> dict:
    """What an exported model records of its training: its name and step, the examples its weights saw
    (this run's steps times its batch, plus those of the export it was warm-started from), the data it
    answers for (kind, d, N, intervention values), the training data's scale (predict warns on other
    scales), the resolved config."""
    warm = extra.get("warm_start")
    meta = {
        "name": cfg.name,
        "step": step,
        "examples_seen_total": examples_seen(step, cfg.train.batch_size, extra),
        "data": {"kind": cfg.data.kind, "d": cfg.data.d, "n_samples": cfg.data.n_samples,
                 "intervention_values": intervention_table(cfg.data)},
        "data_stats": extra.get("data_stats", {}),
        "config": to_dict(cfg),
    }
    return meta | ({"warm_start": warm} if warm else {})
