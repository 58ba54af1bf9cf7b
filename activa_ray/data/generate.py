"""The Ray job that simulates causal models into Parquet shards (format.py).

A shard is a pure function of (data config, split, shard index): its random numbers come from
`shard_seed`, its rows from one `simulate` call, its bytes from a fixed writer setup, so any
number of workers (or a rerun) writes identical files. Each Ray task simulates and writes its
own shard (temporary name, then rename) and returns only a count, so the driver and the object
store hold no sample data: memory stays flat however many models the job writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import activa_ray
from activa_ray.config import Config, to_dict
from activa_ray.data.config import DataConfig
from activa_ray.data.format import (
    METADATA_KEY,
    SCHEMA_VERSION,
    ShardError,
    batch_to_table,
    config_differences,
    data_content,
    data_content_hash,
    read_manifest,
    shard_metadata,
    shard_path,
    write_shard,
)
from activa_ray.data.kinds import intervention_table, kind_is_point_mass
from activa_ray.data.simulate import SPLITS, check_data_config, shard_rng, simulate, split_sizes
from activa_ray.io_utils import atomic_write_text

# Object store cap when this module starts Ray itself: tasks return counts, not data.
OBJECT_STORE_BYTES = 256 * 1024**2


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
        meta = shard_metadata(path)
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
        differences = config_differences(old.get("data_config", {}), data_content(data_cfg))
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


def _write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _write_with_ray(data_cfg: DataConfig, root: Path, todo: list[_ShardPlan], parallel: int,
                    edges: dict[tuple[str, int], int], bar) -> None:
    """Write the shards of `todo` as Ray tasks, at most `parallel` at a time; record each one's edges."""
    import ray  # imported here, as in generate: the format and the plans need no Ray

    write_task = ray.remote(num_cpus=1)(write_planned_shard)
    queue = list(reversed(todo))
    pending: dict = {}
    while queue or pending:
        while queue and len(pending) < parallel:
            plan = queue.pop()
            pending[write_task.remote(data_cfg, plan, str(shard_path(root, plan.split, plan.index)))] = plan
        (done,), _ = ray.wait(list(pending), num_returns=1)
        plan = pending.pop(done)
        edges[(plan.split, plan.index)] = ray.get(done)
        bar.update(1)


def generate(
    cfg: Config,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    num_cpus: int | None = None,
    progress: bool = True,
    in_process: bool = False,
) -> dict:
    """Write every shard of `cfg.data` under `out_dir` with Ray tasks (in this process with `in_process`: small
    sets, or beside a running Ray job); returns the manifest.

    Resumable: shards already complete are kept, missing or damaged ones are (re)written.
    A directory whose manifest holds another data config is refused unless `overwrite`.
    Uses the running Ray instance if there is one (at most `num_cpus` shards at a time),
    otherwise starts one with `num_cpus` CPUs and a capped object store, and stops it after.
    """
    # Imported here: Ray is slow to import, and reading shards (format.py) never needs it.
    import ray
    from tqdm import tqdm

    from activa_ray.cluster import connect_or_start

    check_data_config(cfg.data)
    root = Path(out_dir)
    _prepare_directory(root, cfg.data, overwrite)
    plans = _plan(cfg.data)
    _write_manifest(root, _manifest(cfg, plans, {}, complete=False))

    edges: dict[tuple[str, int], int] = {}
    todo = []
    for plan in plans:
        found = _complete_shard_edges(shard_path(root, plan.split, plan.index), _expected_metadata(cfg.data, plan))
        if found is None:
            todo.append(plan)
        else:
            edges[(plan.split, plan.index)] = found

    started_ray = False
    if todo and not in_process:
        # One simulation task per physical core: shards are CPU-bound, more would only add memory.
        started_ray = connect_or_start(num_cpus or os.cpu_count(), object_store_memory=OBJECT_STORE_BYTES,
                                       include_dashboard=False)
    try:
        bar = tqdm(total=len(plans), initial=len(plans) - len(todo), unit="shard", disable=not progress, desc="shards")
        if todo and in_process:
            for plan in todo:
                edges[(plan.split, plan.index)] = write_planned_shard(
                    cfg.data, plan, str(shard_path(root, plan.split, plan.index)))
                bar.update(1)
        elif todo:
            parallel = num_cpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
            _write_with_ray(cfg.data, root, todo, parallel, edges, bar)
        bar.close()
    finally:
        if started_ray:
            ray.shutdown()

    manifest = _manifest(cfg, plans, edges, complete=True)
    _write_manifest(root, manifest)
    return manifest
