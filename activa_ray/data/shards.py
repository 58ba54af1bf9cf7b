"""Parquet shards of simulated causal models (one row per model) and the Ray job that writes them.

Layout: DIR/manifest.json and DIR/<split>/part-00042.parquet for split in train, val, test.
Tensor columns are pyarrow fixed-shape tensors (`arrow.fixed_shape_tensor`, a canonical Arrow
extension type): plain pyarrow reads them back with `to_numpy_ndarray()`, and Ray Data's
`read_parquet(...).iter_batches(batch_format="numpy")` yields them as numpy arrays.

A shard is a pure function of (data config, split, shard index): its random numbers come from
`shard_seed`, its rows from one `simulate` call, its bytes from a fixed writer setup, so any
number of workers (or a rerun) writes identical files. Each Ray task simulates and writes its
own shard (temporary name, then rename) and returns only a count, so the driver and the object
store hold no sample data: memory stays flat however many models the job writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import activa_ray
from activa_ray.config import Config, ConfigError, DataConfig, load_config, to_dict
from activa_ray.data.simulate import (
    SPLITS,
    check_data_config,
    intervention_table,
    kind_is_point_mass,
    shard_rng,
    simulate,
    split_sizes,
)

SCHEMA_VERSION = 1
METADATA_KEY = b"activa_ray"
KINDS = ("linear-gauss", "linear-beta", "sergio")
# Tensor columns: (numpy dtype, shape per model in terms of C conditions, N samples, d variables).
TENSOR_COLUMNS: dict[str, tuple[np.dtype, tuple[str, ...]]] = {
    "obs": (np.dtype(np.float32), ("N", "d")),
    "int": (np.dtype(np.float32), ("C", "N", "d")),
    "targets": (np.dtype(np.uint8), ("C", "d")),
    "values": (np.dtype(np.float32), ("C",)),
    "value_index": (np.dtype(np.int32), ("C",)),
    "graph": (np.dtype(np.uint8), ("d", "d")),
    "weights": (np.dtype(np.float32), ("d", "d")),
    "int_ref": (np.dtype(np.float32), ("C", "N", "d")),
}
OPTIONAL_COLUMNS = ("weights", "int_ref")
# Data settings that do not change what is simulated (where training reads from).
_NOT_CONTENT = ("source", "dir")
# Object store cap when this module starts Ray itself: tasks return counts, not data.
OBJECT_STORE_BYTES = 256 * 1024**2


class ShardError(ValueError):
    """A shard, shard directory or manifest that is missing, corrupt or from another config."""


# ---------------------------------------------------------------------------------------
# tables


def batch_to_table(batch: dict, model_ids: np.ndarray, kind: str) -> pa.Table:
    """A batch of M models (dict of numpy arrays, see scm.py) -> one row per model."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "sergio" and "weights" not in batch:
        raise ValueError(f"a {kind} batch needs its 'weights' (M, d, d)")
    model_ids = np.asarray(model_ids, dtype=np.int64)
    names = np.asarray(batch["var_names"]).astype(str)  # (M, d)
    n_models, d = names.shape
    columns: dict[str, pa.Array] = {
        "model_id": pa.array(model_ids),
        "kind": pa.array([kind] * n_models, type=pa.string()),
    }
    for name, (dtype, _) in TENSOR_COLUMNS.items():
        if name == "int_ref" or name not in batch:
            continue
        columns[name] = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(batch[name], dtype=dtype))
    offsets = pa.array(np.arange(0, n_models * d + 1, d, dtype=np.int32))
    columns["var_names"] = pa.ListArray.from_arrays(offsets, pa.array(names.reshape(-1)))
    if "int_ref" in batch:
        columns["int_ref"] = pa.FixedShapeTensorArray.from_numpy_ndarray(
            np.ascontiguousarray(batch["int_ref"], dtype=np.float32)
        )
    metadata = {METADATA_KEY: json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind}).encode()}
    return pa.table(columns).replace_schema_metadata(metadata)


def _tensor_column(table: pa.Table, name: str, source: str) -> np.ndarray:
    dtype, dims = TENSOR_COLUMNS[name]
    column = table.column(name)
    if not isinstance(column.type, pa.FixedShapeTensorType):
        raise ShardError(f"{source}: column {name!r} has type {column.type}, expected a fixed-shape tensor")
    if column.type.value_type.to_pandas_dtype() != dtype or len(column.type.shape) != len(dims):
        raise ShardError(
            f"{source}: column {name!r} holds {column.type.value_type} tensors of shape {column.type.shape}, "
            f"expected {dtype} of shape [{', '.join(dims)}]"
        )
    if column.null_count:
        raise ShardError(f"{source}: column {name!r} has {column.null_count} null rows")
    if len(column) == 0:
        return np.zeros((0, *column.type.shape), dtype=dtype)
    return column.combine_chunks().to_numpy_ndarray()


def table_to_batch(table: pa.Table, source: str) -> dict:
    """Shard table -> batch dict (the contract of scm.py plus `model_id` (M,) and `kind` (M,)),
    checking columns, dtypes and shapes; errors name `source` (the file)."""
    kinds = table.column("kind").unique().to_pylist() if "kind" in table.column_names else []
    linear = any(k != "sergio" for k in kinds)
    required = ["model_id", "kind", "obs", "int", "targets", "values", "value_index", "graph", "var_names"]
    required += ["weights"] if linear else []
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise ShardError(
            f"{source}: not an activa_ray shard: missing column(s) {missing} (has {table.column_names})"
        )
    unknown_kinds = [k for k in kinds if k not in KINDS]
    if unknown_kinds or len(kinds) > 1:
        raise ShardError(f"{source}: column 'kind' must hold one of {KINDS} throughout, found {kinds}")
    if not pa.types.is_integer(table.column("model_id").type):
        raise ShardError(f"{source}: column 'model_id' has type {table.column('model_id').type}, expected int64")

    batch = {"model_id": table.column("model_id").to_numpy().astype(np.int64)}
    batch["kind"] = np.asarray(table.column("kind").to_pylist(), dtype=str)
    for name in TENSOR_COLUMNS:
        if name in table.column_names:
            batch[name] = _tensor_column(table, name, source)

    # Every tensor must agree on C, N and d.
    sizes: dict[str, int] = {}
    for name in TENSOR_COLUMNS:
        if name not in batch:
            continue
        for axis, dim in enumerate(TENSOR_COLUMNS[name][1]):
            size = batch[name].shape[axis + 1]
            if sizes.setdefault(dim, size) != size:
                raise ShardError(
                    f"{source}: column {name!r} has {dim}={size} on axis {axis + 1}, "
                    f"other columns say {dim}={sizes[dim]}"
                )

    names = table.column("var_names").combine_chunks()
    if not (pa.types.is_list(names.type) or pa.types.is_large_list(names.type)) or not pa.types.is_string(
        names.type.value_type
    ):
        raise ShardError(f"{source}: column 'var_names' has type {names.type}, expected list<string>")
    lengths = pc.list_value_length(names).to_numpy(zero_copy_only=False)
    if len(names) and (names.null_count or np.any(lengths != sizes["d"])):
        raise ShardError(f"{source}: column 'var_names' must hold d={sizes['d']} names per row")
    batch["var_names"] = np.asarray(pc.list_flatten(names).to_pylist(), dtype=str).reshape(len(names), sizes["d"])
    return batch


def write_shard(path: str | os.PathLike, table: pa.Table) -> None:
    """Write `table` to `path` (temporary name in the same folder, then rename). The writer
    settings are fixed, so the same table gives the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=1,  # ~15% smaller than raw float32 at about the speed of no compression
        use_dictionary=["kind", "var_names"],
        write_statistics=["model_id"],
        write_page_checksum=True,  # read_shard verifies them: flipped bits become a clear error
    )
    os.replace(tmp, path)


def _shard_metadata(path: Path) -> dict:
    """The activa_ray key-value metadata of a shard's footer (ShardError when unreadable)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise ShardError(f"{path}: not a readable Parquet file ({err})") from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ShardError(f"{path}: not an activa_ray shard (no '{METADATA_KEY.decode()}' metadata)")
    meta = json.loads(raw)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(
            f"{path}: shard schema version {meta.get('schema_version')}, this activa_ray reads {SCHEMA_VERSION}"
        )
    return meta


def read_shard(path: str | os.PathLike) -> dict:
    """Read one shard into a batch dict; one ShardError naming the file when it is not a
    complete activa_ray shard."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard does not exist")
    _shard_metadata(path)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise ShardError(f"{path}: corrupt Parquet shard ({err})") from None
    return table_to_batch(table, str(path))


# ---------------------------------------------------------------------------------------
# manifest


def data_content(data_cfg: DataConfig) -> dict:
    """The data settings that determine what is simulated (not where training reads from)."""
    content = to_dict(data_cfg)
    for key in _NOT_CONTENT:
        content.pop(key)
    return content


def data_content_hash(data_cfg: DataConfig) -> str:
    blob = json.dumps(data_content(data_cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def shard_path(root: str | os.PathLike, split: str, shard_index: int) -> Path:
    return Path(root) / split / f"part-{shard_index:05d}.parquet"


def read_manifest(root: str | os.PathLike) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise ShardError(f"{path}: no manifest; is {root} a directory written by jobs/generate.py?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardError(f"{path}: not a readable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        found = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise ShardError(f"{path}: manifest schema version {found}, this activa_ray reads {SCHEMA_VERSION}")
    return manifest


def shard_paths(root: str | os.PathLike, split: str) -> list[Path]:
    """The shard files of `split` listed by the manifest; ShardError naming a missing one or
    an incomplete run."""
    manifest = read_manifest(root)
    if not manifest.get("complete"):
        raise ShardError(f"{Path(root) / 'manifest.json'}: generation did not finish; rerun jobs/generate.py")
    if split not in manifest["splits"]:
        raise ShardError(f"{Path(root) / 'manifest.json'}: no split {split!r} (has {list(manifest['splits'])})")
    paths = [shard_path(root, split, i) for i in range(manifest["splits"][split]["shards"])]
    for path in paths:
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in the manifest is missing")
    return paths


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)


def _config_differences(old: dict, new: dict, prefix: str = "data") -> list[str]:
    differences = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _config_differences(a, b, f"{prefix}.{key}")
        elif a != b:
            differences.append(f"{prefix}.{key}: {a!r} there, {b!r} now")
    return differences


# ---------------------------------------------------------------------------------------
# the generation job


@dataclasses.dataclass(frozen=True)
class _ShardPlan:
    split: str
    index: int
    first_model_id: int
    n_models: int


def _plan(data_cfg: DataConfig) -> list[_ShardPlan]:
    plans = []
    for split, n_split in split_sizes(data_cfg).items():
        for index in range(math.ceil(n_split / data_cfg.models_per_shard)):
            first = index * data_cfg.models_per_shard
            plans.append(_ShardPlan(split, index, first, min(data_cfg.models_per_shard, n_split - first)))
    return plans


def _expected_metadata(data_cfg: DataConfig, plan: _ShardPlan) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": data_cfg.kind,
        "data_config_hash": data_content_hash(data_cfg),
        "split": plan.split,
        "shard_index": plan.index,
        "n_models": plan.n_models,
    }


def write_planned_shard(data_cfg: DataConfig, plan: _ShardPlan, path: str) -> int:
    """Simulate and write one shard; returns its number of edges (for the manifest)."""
    rng = shard_rng(data_cfg, plan.split, plan.index)
    batch = simulate(data_cfg, rng, plan.n_models, with_ref=plan.split == "test")
    model_ids = np.arange(plan.first_model_id, plan.first_model_id + plan.n_models)
    table = batch_to_table(batch, model_ids, data_cfg.kind)
    n_edges = int(batch["graph"].sum(dtype=np.int64))
    metadata = {**_expected_metadata(data_cfg, plan), "n_edges": n_edges}
    write_shard(path, table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()}))
    return n_edges


def _complete_shard_edges(path: Path, expected: dict) -> int | None:
    """Edges recorded by a finished shard of this plan at `path`; None when it must be (re)written."""
    if not path.exists():
        return None
    try:
        meta = _shard_metadata(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except (ShardError, OSError, pa.ArrowException) as err:
        print(f"rewriting {path}: {err}", file=sys.stderr)
        return None
    if {k: meta.get(k) for k in expected} != expected or rows != expected["n_models"]:
        print(f"rewriting {path}: it belongs to another config or shard", file=sys.stderr)
        return None
    return int(meta["n_edges"])


def _remove_outputs(root: Path) -> None:
    """Delete what a previous run wrote here (manifest and shards), nothing else."""
    for split in SPLITS:
        for path in (root / split).glob("part-*.parquet"):
            path.unlink()
    (root / "manifest.json").unlink(missing_ok=True)


def _remove_temporary_files(root: Path) -> None:
    """Half-written shards of an interrupted run (they never got their final name)."""
    for split in SPLITS:
        for path in (root / split).glob(".part-*.tmp"):
            path.unlink()


def _prepare_directory(root: Path, data_cfg: DataConfig, overwrite: bool) -> None:
    manifest_path = root / "manifest.json"
    if overwrite:
        _remove_outputs(root)
    elif manifest_path.exists():
        old = read_manifest(root)
        differences = _config_differences(old.get("data_config", {}), data_content(data_cfg))
        if differences:
            shown = "; ".join(differences[:5]) + (" ..." if len(differences) > 5 else "")
            raise ShardError(
                f"{manifest_path} holds a different data config ({shown}); "
                "pass --overwrite to replace its shards, or choose another --out"
            )
    elif any(any((root / split).glob("part-*.parquet")) for split in SPLITS):
        raise ShardError(f"{root} holds shards but no manifest.json; pass --overwrite to replace them")
    root.mkdir(parents=True, exist_ok=True)
    _remove_temporary_files(root)


def _manifest(cfg: Config, plans: list[_ShardPlan], edges: dict[tuple[str, int], int], complete: bool) -> dict:
    splits = {}
    for split in SPLITS:
        split_plans = [p for p in plans if p.split == split]
        n_models = sum(p.n_models for p in split_plans)
        split_edges = [edges[(p.split, p.index)] for p in split_plans if (p.split, p.index) in edges]
        splits[split] = {
            "models": n_models,
            "shards": len(split_plans),
            "mean_edges_per_model": sum(split_edges) / n_models if complete and n_models else None,
        }
    total_models = sum(s["models"] for s in splits.values())
    return {
        "schema_version": SCHEMA_VERSION,
        "package_version": activa_ray.__version__,
        "complete": complete,
        "name": cfg.name,
        "kind": cfg.data.kind,
        "d": cfg.data.d,
        "n_samples": cfg.data.n_samples,
        "intervention_values": intervention_table(cfg.data),
        "point_mass_interventions": kind_is_point_mass(cfg.data.kind),
        "models_per_shard": cfg.data.models_per_shard,
        "splits": splits,
        "mean_edges_per_model": sum(edges.values()) / total_models if complete else None,
        "seeds": {
            "entropy": cfg.data.seed,
            "scheme": "shard rng = PCG64(SeedSequence(entropy, spawn_key=(split_code, shard_index)))",
            "split_codes": {"train": 0, "val": 1, "test": 2, "training stream": 3},
        },
        "data_config": data_content(cfg.data),
        "data_config_hash": data_content_hash(cfg.data),
        "config": to_dict(cfg),
    }


def generate(
    cfg: Config,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    num_cpus: int | None = None,
    progress: bool = True,
) -> dict:
    """Write every shard of `cfg.data` under `out_dir` with Ray tasks; returns the manifest.

    Resumable: shards already complete are kept, missing or damaged ones are (re)written.
    A directory whose manifest holds another data config is refused unless `overwrite`.
    Uses the running Ray instance if there is one (at most `num_cpus` shards at a time),
    otherwise starts one with `num_cpus` CPUs and a capped object store, and stops it after.
    """
    import ray
    from tqdm import tqdm

    from activa_ray.cluster import connect_or_start

    check_data_config(cfg.data)
    root = Path(out_dir)
    _prepare_directory(root, cfg.data, overwrite)
    plans = _plan(cfg.data)
    _write_json(root / "manifest.json", _manifest(cfg, plans, {}, complete=False))

    edges: dict[tuple[str, int], int] = {}
    todo = []
    for plan in plans:
        found = _complete_shard_edges(shard_path(root, plan.split, plan.index), _expected_metadata(cfg.data, plan))
        if found is None:
            todo.append(plan)
        else:
            edges[(plan.split, plan.index)] = found

    started_ray = False
    if todo:
        # One simulation task per physical core: shards are CPU-bound, more would only add memory.
        started_ray = connect_or_start(num_cpus or os.cpu_count(), object_store_memory=OBJECT_STORE_BYTES,
                                       include_dashboard=False)
    try:
        bar = tqdm(total=len(plans), initial=len(plans) - len(todo), unit="shard", disable=not progress, desc="shards")
        if todo:
            parallel = num_cpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
            write_task = ray.remote(num_cpus=1)(write_planned_shard)
            queue = list(reversed(todo))
            pending: dict = {}
            while queue or pending:
                while queue and len(pending) < parallel:
                    plan = queue.pop()
                    ref = write_task.remote(cfg.data, plan, str(shard_path(root, plan.split, plan.index)))
                    pending[ref] = plan
                (done,), _ = ray.wait(list(pending), num_returns=1)
                plan = pending.pop(done)
                edges[(plan.split, plan.index)] = ray.get(done)
                bar.update(1)
        bar.close()
    finally:
        if started_ray:
            ray.shutdown()

    manifest = _manifest(cfg, plans, edges, complete=True)
    _write_json(root / "manifest.json", manifest)
    return manifest


def generate_cli(argv: list[str] | None = None) -> int:
    """`python jobs/generate.py --config FILE --out DIR [--overwrite] [--num-cpus N] [a.b=c ...]`."""
    parser = argparse.ArgumentParser(
        prog="jobs/generate.py", description="Simulate causal models into Parquet shards with Ray."
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/gauss8.yaml")
    parser.add_argument("--out", required=True, help="output directory (manifest.json, train/, val/, test/)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards written under another config")
    parser.add_argument("--num-cpus", type=int, default=None, help="shards written in parallel")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=c, e.g. data.n_models=1000000")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        manifest = generate(cfg, args.out, args.overwrite, args.num_cpus, progress=not args.no_progress)
    except (ConfigError, ShardError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(
        f"{split} {s['models']} models in {s['shards']} shards"
        for split, s in manifest["splits"].items()
    )
    print(f"wrote {Path(args.out).resolve()}: {counts}; manifest {Path(args.out).resolve() / 'manifest.json'}")
    return 0
