"""One typed config tree, merged as defaults < YAML file < CLI dotlist (`train.steps=100`).

The sections sit beside the code they configure (data/config.py, model/config.py); this module composes
them with the train, eval and W&B sections, reads YAML (a file may build on another: `base: FILE`, then
it states only what differs) and checks the whole tree once, at the entry point (`validate`).

Every section is a dataclass; unknown keys and values of the wrong type raise `ConfigError`
naming the key and where it came from. The resolved tree is written beside every output
(`save_config`) and reloads unchanged (`load_config`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from activa_ray.data.config import DataConfig, LinearSCMConfig, SergioConfig
from activa_ray.data.kinds import model_fit_problems
from activa_ray.data.simulate import check_data_config
from activa_ray.io_utils import atomic_write_text
from activa_ray.model.config import ModelConfig, check_model_config, warm_start_problems
from activa_ray.ranges import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, ConfigError, Range, range_problems

# Names other modules import from here: the composed tree's sections and its error.
__all__ = ["Config", "ConfigError", "DataConfig", "EvalConfig", "LinearSCMConfig", "ModelConfig", "SergioConfig",
           "TrainConfig", "WandbConfig", "config_from_dict", "load_config", "rebuild_config", "save_config", "to_dict",
           "validate"]


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, which follows YAML 1.1 and so reads 1e-4 (no dot) as a string; this one
    reads it as the number everyone means (as YAML 1.2 does)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)


@dataclass
class TrainConfig:
    steps: int = 2_000
    batch_size: int = 64  # examples (model, condition) per step, over all workers
    optimizer: Literal["nadam", "adam", "adamw"] = "nadam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_frac: float = 0.1  # cosine decay to lr * min_lr_frac at `steps`
    grad_clip: float = 1.0
    # α of the hybrid objective: + α · (−log p(V | D, do)) under the prior predictive (0: the paper's β-ELBO alone).
    prior_nll_weight: float = 0.0
    # auto: bf16 autocast where the hardware has bf16 matrix units (CUDA, or a CPU with avx512_bf16 / AMX), else fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False  # torch.compile the embeddings and decoder blocks (pays on GPU; slower on a 2-core CPU)
    seed: int = 42
    workers: int = 1
    use_gpu: bool | None = None  # None: use GPUs when the cluster has them
    cpus_per_worker: float = 1.0  # logical CPUs Ray reserves per worker
    threads_per_worker: int = 0  # torch threads per worker; 0: the node's cores over the workers on that node
    shuffle_buffer: int = 4_096  # examples in the local shuffle buffer (source=shards; at most one pass of the shard)
    log_every: int = 50
    val_every: int = 500
    val_models: int = 64
    ckpt_every: int = 500
    keep_ckpts: int = 3
    max_failures: int = 2
    stop_at_step: int = 0  # >0: checkpoint and stop this invocation there; rerun to continue (chunked runs)
    # An exported model (folder or shipped name) whose weights start the run where they fit (model.io.warm_start).
    init_from: str = ""

    RANGES: ClassVar[dict[str, Range]] = {
        "steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "weight_decay": AT_LEAST_0,
        "warmup_steps": AT_LEAST_0, "min_lr_frac": FRACTION, "grad_clip": POSITIVE, "prior_nll_weight": AT_LEAST_0,
        "seed": AT_LEAST_0, "workers": AT_LEAST_1, "cpus_per_worker": POSITIVE, "threads_per_worker": AT_LEAST_0,
        "shuffle_buffer": AT_LEAST_1, "log_every": AT_LEAST_1, "val_every": AT_LEAST_1, "val_models": AT_LEAST_1,
        "ckpt_every": AT_LEAST_1, "keep_ckpts": AT_LEAST_1,
        "max_failures": Range(-1),  # Ray Train's FailureConfig: -1 retries forever
        "stop_at_step": AT_LEAST_0,
    }


@dataclass
class EvalConfig:
    prior_samples: int = 1  # S: the paper's tables use 1, its section 4.1 describes 50
    permutations: int = 100
    seed: int = 0

    RANGES: ClassVar[dict[str, Range]] = {"prior_samples": AT_LEAST_1, "permutations": AT_LEAST_1, "seed": AT_LEAST_0}


@dataclass
class WandbConfig:
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"  # auto: online iff WANDB_API_KEY set
    project: str = "activa_ray"
    entity: str = ""
    group: str = ""


@dataclass
class Config:
    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


# ---------------------------------------------------------------------------------------
# merging and type checking


def _check_value(value: Any, tp: Any, key: str, source: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming key and source."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = f"{key} (from {source})"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build_dataclass(tp, value, key, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return [_check_value(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        value_type = args[1] if args else Any
        return {k: _check_value(v, value_type, f"{key}.{k}", source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {tp}")


def build_dataclass(cls: type, values: dict, prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        path = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)
        raise ConfigError(f"unknown config key {path} (from {source}); known: {sorted(names)}")
    kwargs = {
        name: _check_value(value, hints[name], f"{prefix}.{name}" if prefix else name, source)
        for name, value in values.items()
    }
    return cls(**kwargs)


def deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_dotlist(overrides: list[str]) -> dict:
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        # YAML parses numbers, booleans, null and [lists] the way a user would write them.
        value = load_yaml(raw) if raw != "" else ""
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is both a value and a section")
        node[parts[-1]] = value
    return tree


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return loaded


def validate(cfg: Config) -> Config:
    """Refuse, in one ConfigError line, every value the jobs could not use; nothing has started yet.

    Each problem reads `key=value: must be ...`. Data checks are the simulators' own
    (`check_data_config`), model checks the model's (`check_model_config`), so a config that passes
    here also passes there. Called once, at the entry point (`load_config`, `config_from_dict`).
    """
    check_data_config(cfg.data)
    train = cfg.train
    problems = check_model_config(cfg.model) + range_problems(train, "train") + range_problems(cfg.eval, "eval")
    if train.workers >= 1 and train.batch_size % train.workers:
        problems.append(f"train.batch_size={train.batch_size}: must be a multiple of train.workers={train.workers}")
    problems += model_fit_problems(cfg.model, cfg.data)
    if cfg.data.source == "shards" and not cfg.data.dir:
        problems.append("data.source=shards: needs data.dir, the root written by `activa generate`")
    if train.init_from:
        from activa_ray.pretrained import available, resolve  # imported here: it loads torch

        if not Path(train.init_from).is_dir() and train.init_from not in available():
            problems.append(f"train.init_from={train.init_from}: must be an exported model folder or a shipped "
                            f"model ({', '.join(available())})")
        elif source := export_model_fields(resolve(train.init_from)):
            problems += [f"train.init_from={train.init_from}: {problem}"
                         for problem in warm_start_problems(source, cfg.model)]
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def export_model_fields(directory: Path) -> dict:
    """The "model" fields of an exported model ({} when its config.json is unreadable: loading it says why)."""
    from activa_ray.model.io import ModelFileError, read_export

    try:
        return read_export(directory)["model"] or {}
    except ModelFileError:
        return {}


def read_config_file(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict:
    """The config tree of the YAML file at `path`, over the tree of its `base:` file (a path relative to `path`'s
    folder), which may name a base in turn. Each file is checked on its own, so an error names its file."""
    path = Path(path)
    tree = read_yaml(path)
    base = tree.pop("base", None)
    build_dataclass(Config, tree, "", str(path))
    if base is None:
        return tree
    if not isinstance(base, str) or not base:
        raise ConfigError(f"base (from {path}): expected the path of the config this one builds on, got {base!r}")
    base_path = resolve_base(path, base)
    if base_path.resolve() in _seen:
        raise ConfigError(f"base (from {path}): {base} is already in its chain of bases")
    return deep_merge(read_config_file(base_path, _seen + (path.resolve(),)), tree)


def resolve_base(path: Path, base: str) -> Path:
    """`base:` in the file at `path`: absolute, or relative to that file's folder."""
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"base (from {path}): {base_path} does not exist")
    return base_path


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults < YAML file at `path` (over its `base:` files) < CLI dotlist `overrides`."""
    tree: dict = {}
    sources = []
    if path is not None:
        tree = read_config_file(path)
        sources.append(str(path))
    if overrides:
        tree = deep_merge(tree, parse_dotlist(overrides))
        sources.append("command line")
    return validate(build_dataclass(Config, tree, "", " + ".join(sources) or "defaults"))


def config_from_dict(tree: dict, source: str = "dict") -> Config:
    """A config from a plain tree, checked (an entry point, like `load_config`)."""
    return validate(build_dataclass(Config, tree, "", source))


def rebuild_config(tree: dict, source: str = "resolved config") -> Config:
    """The typed tree of a config already validated elsewhere (`to_dict` of one), without checking it again:
    Ray workers and trials rebuild the driver's config this way, with no simulator or gene network loaded."""
    return build_dataclass(Config, tree, "", source)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (all or nothing)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
