"""The Parquet format of simulated causal models (one row per model) and its manifest.

Layout: DIR/manifest.json and DIR/<split>/part-00042.parquet for split in train, val, test.
Tensor columns are pyarrow fixed-shape tensors (`arrow.fixed_shape_tensor`, a canonical Arrow
extension type): plain pyarrow reads them back with `to_numpy_ndarray()`, and Ray Data's
`read_parquet(...).iter_batches(batch_format="numpy")` yields them as numpy arrays.
generate.py writes the shards; training and evaluation read them through this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from activa_ray.data.config import DataConfig
from activa_ray.data.kinds import KINDS
from activa_ray.io_utils import atomic_path

SCHEMA_VERSION = 1
METADATA_KEY = b"activa_ray"
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
# Data settings that do not change what is simulated (where training reads from).
_NOT_CONTENT = ("source", "dir")


class ShardError(ValueError):
    """A shard, shard directory or manifest that is missing, corrupt or from another config."""


# ---------------------------------------------------------------------------------------
# tables


def batch_to_table(batch: dict, model_ids: np.ndarray, kind: str) -> pa.Table:
    """A batch of M models (dict of numpy arrays, see scm.py) -> one row per model."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    if KINDS[kind].linear and "weights" not in batch:
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
    linear = any(k not in KINDS or KINDS[k].linear for k in kinds)  # linear kinds carry their weights
    required = ["model_id", "kind", "obs", "int", "targets", "values", "value_index", "graph", "var_names"]
    required += ["weights"] if linear else []
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise ShardError(
            f"{source}: not an activa_ray shard: missing column(s) {missing} (has {table.column_names})"
        )
    unknown_kinds = [k for k in kinds if k not in KINDS]
    if unknown_kinds or len(kinds) > 1:
        raise ShardError(f"{source}: column 'kind' must hold one of {tuple(KINDS)} throughout, found {kinds}")
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
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=1,  # ~15% smaller than raw float32 at about the speed of no compression
            use_dictionary=["kind", "var_names"],
            write_statistics=["model_id"],
            write_page_checksum=True,  # read_shard verifies them: flipped bits become a clear error
        )


def shard_metadata(path: Path) -> dict:
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
    shard_metadata(path)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise ShardError(f"{path}: corrupt Parquet shard ({err})") from None
    return table_to_batch(table, str(path))


# ---------------------------------------------------------------------------------------
# manifest


def data_content(data_cfg: DataConfig) -> dict:
    """The data settings that determine what is simulated (not where training reads from)."""
    content = dataclasses.asdict(data_cfg)
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
        raise ShardError(f"{path}: no manifest; is {root} a directory written by `activa generate`?")
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
        raise ShardError(f"{Path(root) / 'manifest.json'}: generation did not finish; rerun `activa generate`")
    if split not in manifest["splits"]:
        raise ShardError(f"{Path(root) / 'manifest.json'}: no split {split!r} (has {list(manifest['splits'])})")
    paths = [shard_path(root, split, i) for i in range(manifest["splits"][split]["shards"])]
    for path in paths:
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in the manifest is missing")
    return paths


def config_differences(old: dict, new: dict, prefix: str = "data") -> list[str]:
    differences = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{prefix}.{key}")
        elif a != b:
            differences.append(f"{prefix}.{key}: {a!r} there, {b!r} now")
    return differences
