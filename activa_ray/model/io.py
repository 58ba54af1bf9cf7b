"""Portable export of an Activa model: `model.safetensors` (weights) + `config.json` (ModelConfig + meta).

Loading never unpickles or executes anything from the files: the weights are safetensors, the
config is JSON checked field by field against ModelConfig, and the weights are checked name by
name and shape by shape against the model the config builds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from activa_ray.io_utils import atomic_write_bytes, atomic_write_text
from activa_ray.model.activa import Activa
from activa_ray.model.config import ModelConfig, warm_start_problems
from activa_ray.model.structure import StructureActiva, StructureConfig, check_structure_config

FORMAT = "activa_ray.model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ModelFileError(ValueError):
    """An exported model directory that cannot be loaded; the message names the file and the problem."""


def state_dict_to_safetensors(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write a state dict as safetensors at `path` (temporary name, then rename)."""
    target = Path(path)
    tensors = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in state_dict.items()}
    # Bytes written by Python, not save_file: safetensors creates its files 0600 whatever the umask.
    atomic_write_bytes(target, save(tensors))


def safetensors_to_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file into a state dict; a file that is not safetensors raises ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (expected a safetensors weights file)")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from None


# The model classes an export can hold, by the "architecture" its config.json names (absent: the VAE).
VAE, STRUCTURE = "vae", StructureActiva.architecture


def save_model(model: Activa | StructureActiva, directory: str | os.PathLike, meta: dict | None = None) -> Path:
    """Export `model` to `directory` (created if needed): model.safetensors and config.json. Returns the directory."""
    directory = Path(directory)
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None; got {type(meta).__name__}")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": asdict(model.cfg), "meta": meta}
    if isinstance(model, StructureActiva):
        document["architecture"] = STRUCTURE
    try:
        json.dumps(document)
    except (TypeError, ValueError) as error:
        raise TypeError(f"meta must be JSON-serialisable: {error}") from None
    directory.mkdir(parents=True, exist_ok=True)
    state_dict_to_safetensors(model.state_dict(), directory / WEIGHTS_FILE)
    atomic_write_text(directory / CONFIG_FILE, json.dumps(document, indent=2, sort_keys=False) + "\n")
    return directory


# ModelConfig fields added since format_version 1 was written: an export without them predates them and
# means their defaults (an index-encoded model on raw values).
ADDED_FIELDS = ("intervention_encoding", "standardize", "regression_features", "decoder_context")


def _field_ok(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(
            isinstance(item, (int, float)) and not isinstance(item, bool) for item in value
        )
    return True


def model_config_from_dict(values: Any, source: str) -> ModelConfig:
    """Build a ModelConfig from a JSON object; unknown, missing or mistyped fields raise ModelFileError naming `source`."""
    if not isinstance(values, dict):
        raise ModelFileError(f"{source}: \"model\" must be an object of ModelConfig fields; got {type(values).__name__}")
    defaults = asdict(ModelConfig())
    known = [spec.name for spec in fields(ModelConfig)]
    unknown = sorted(set(values) - set(known))
    missing = [name for name in known if name not in values and name not in ADDED_FIELDS]
    if unknown:
        raise ModelFileError(f"{source}: unknown model config key(s) {unknown}; known keys: {known}")
    if missing:
        raise ModelFileError(f"{source}: model config is missing key(s) {missing}")
    values = {**{name: defaults[name] for name in ADDED_FIELDS}, **values}
    for name in known:
        if not _field_ok(values[name], defaults[name]):
            expected = type(defaults[name]).__name__
            raise ModelFileError(f"{source}: model.{name} must be of type {expected}; got {values[name]!r}")
    converted = {
        name: [float(v) for v in value] if isinstance(value, list) else
        float(value) if isinstance(defaults[name], float) else value
        for name, value in values.items()
    }
    return ModelConfig(**converted)


def read_export(directory: str | os.PathLike) -> dict:
    """An exported model's config.json, checked (format, version, keys) -> {"model": fields, "meta": dict}
    (meta {} when none was saved), without loading its weights."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: not a directory (expected an exported model with {CONFIG_FILE} and {WEIGHTS_FILE})")
    if not config_path.is_file():
        raise ModelFileError(f"{config_path}: missing; {directory} is not an exported activa_ray model")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ModelFileError(f"{config_path}: \"format\" must be {FORMAT!r}; got {found!r}")
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path}: format_version {document.get('format_version')!r} is not supported (this code reads {FORMAT_VERSION})"
        )
    unknown = sorted(set(document) - {"format", "format_version", "architecture", "model", "meta"})
    if unknown:
        raise ModelFileError(f"{config_path}: unknown top-level key(s) {unknown}")
    architecture = document.get("architecture", VAE)
    if architecture not in (VAE, STRUCTURE):
        raise ModelFileError(f"{config_path}: \"architecture\" must be {VAE!r} or {STRUCTURE!r}; got {architecture!r}")
    meta = document.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ModelFileError(f"{config_path}: \"meta\" must be an object or null; got {type(meta).__name__}")
    return {"architecture": architecture, "model": document.get("model"), "meta": meta or {}}


def structure_config_from_dict(values: Any, source: str) -> StructureConfig:
    """A StructureConfig from a JSON object; unknown, missing, mistyped or out-of-range fields raise ModelFileError."""
    known = {spec.name: spec for spec in fields(StructureConfig)}
    if not isinstance(values, dict) or set(values) != set(known):
        found = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise ModelFileError(f"{source}: \"model\" must hold exactly the fields {sorted(known)}; got {found}")
    defaults = asdict(StructureConfig())
    for name, value in values.items():
        if not _field_ok(value, defaults[name]):
            raise ModelFileError(f"{source}: model.{name} must be of type {type(defaults[name]).__name__}; got {value!r}")
    cfg = StructureConfig(**{name: float(v) if isinstance(defaults[name], float) else v for name, v in values.items()})
    problems = check_structure_config(cfg)
    if problems:
        raise ModelFileError(f"{source}: " + "; ".join(problems))
    return cfg


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Activa | StructureActiva, dict]:
    """Load an exported model -> (the model in eval mode on `device`, meta dict ({} when none was saved)):
    an Activa VAE, or a StructureActiva where config.json names that architecture."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    document = read_export(directory)
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: missing; {directory} is not an exported activa_ray model")
    if document["architecture"] == STRUCTURE:
        model = StructureActiva(structure_config_from_dict(document["model"], str(config_path)))
    else:
        try:
            model = Activa(model_config_from_dict(document["model"], str(config_path)))
        except ValueError as error:
            raise ModelFileError(f"{config_path}: {error}") from None

    state = safetensors_to_state_dict(weights_path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{name} {tuple(state[name].shape)} (config needs {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            problems.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if mismatched:
            problems.append(f"wrong shapes {mismatched[:5]}{' ...' if len(mismatched) > 5 else ''}")
        raise ModelFileError(f"{weights_path}: weights do not match {config_path}: " + "; ".join(problems))
    model.load_state_dict(state)
    return model.to(device).eval(), document["meta"]


# The split copies' mean heads differ by noise of this fraction of the head's weight spread: identical
# copies would get identical gradients and never part.
SPLIT_NOISE = 0.02


def split_prior_components(state: dict[str, torch.Tensor], copies: int) -> dict[str, torch.Tensor]:
    """`state` with each prior component repeated `copies` times (component c becomes c·copies + r).

    Each copy's logit is lowered by log(copies), so the mixture weights of a component's copies add up
    to its weight; the copies' mean heads get small fixed noise (SPLIT_NOISE, seed 0) so that training
    can move them apart: the mixture starts as the export's, up to that noise.
    """
    if copies == 1:
        return state
    generator = torch.Generator().manual_seed(0)
    components = state["prior_weight_mlp.2.bias"].shape[0]
    split = dict(state)
    for name in ("prior_mean_mlp.2.weight", "prior_mean_mlp.2.bias", "prior_weight_mlp.2.weight", "prior_weight_mlp.2.bias"):
        tensor = state[name]
        rows = tensor.reshape(components, -1, *tensor.shape[1:])  # (k, z or 1, [hidden])
        rows = rows.repeat_interleave(copies, dim=0)  # (k·copies, z or 1, [hidden])
        if name == "prior_weight_mlp.2.bias":
            rows = rows - math.log(copies)
        if name == "prior_mean_mlp.2.weight":
            rows = rows + SPLIT_NOISE * tensor.std() * torch.randn(rows.shape, generator=generator)
        split[name] = rows.reshape(-1, *tensor.shape[1:])
    return split


def warm_start(model: Activa, directory: str | os.PathLike) -> tuple[dict[str, int], dict]:
    """Copy an exported model's weights into `model`; returns how many tensors were copied whole, copied
    in part, and left at their initialisation (absent from the export), and the export's meta.

    The sizes must match (`warm_start_problems`); an index-encoded export with one value fills the first
    columns of a value-encoded model's input projections ((e, 2) into (e, 3): the data and "is target"
    features mean the same in both; the value column starts at 0), and an export without regression
    features fills the first columns of a model with them (the feature columns start at 0, so the
    warm-started model computes what the export did); a prior with c times the export's components
    starts as its mixture with each component split in c (`split_prior_components`).
    """
    source, meta = load_model(directory)
    problems = warm_start_problems(asdict(source.cfg), model.cfg)
    if problems:
        raise ModelFileError(f"{directory}: cannot warm-start this model: " + "; ".join(problems))
    state = split_prior_components(source.state_dict(), model.cfg.prior_components // source.cfg.prior_components)
    target = model.state_dict()
    counts = {"copied": 0, "partial": 0, "initialised": 0}
    with torch.no_grad():
        for name, tensor in target.items():
            if name not in state:
                counts["initialised"] += 1
            elif state[name].shape == tensor.shape:
                tensor.copy_(state[name])
                counts["copied"] += 1
            else:  # an input projection (e, 1 + |I|) -> (e, 3 [+ 4]): the new columns start at 0
                columns = state[name].shape[1]
                tensor.zero_()[:, :columns] = state[name]
                counts["partial"] += 1
    return counts, meta
