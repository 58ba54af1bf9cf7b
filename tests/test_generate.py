"""The Ray generation job: layout, manifest, determinism, resume, refusals, the CLI."""

import json
import shutil

import numpy as np
import pytest

from activa_ray.config import load_config
from activa_ray.data.format import ShardError, read_manifest, read_shard, shard_paths
from activa_ray.data.generate import generate

pytestmark = pytest.mark.ray

TINY = ["data.d=3", "data.n_samples=6", "data.n_models=44", "data.models_per_shard=8", "data.val_frac=0.1"]


def tiny_config(*extra):
    return load_config("configs/smoke.yaml", TINY + list(extra))


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def written(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen") / "out"
    manifest = generate(tiny_config(), root, num_cpus=2, progress=False)
    return root, manifest


def test_layout_and_manifest(written):
    root, manifest = written
    # 44 models: test 4, train+val 40 -> val 4, train 36 (5 shards of <= 8).
    assert {s: (v["models"], v["shards"]) for s, v in manifest["splits"].items()} == {
        "train": (36, 5), "val": (4, 1), "test": (4, 1),
    }
    assert read_manifest(root) == manifest
    assert manifest["complete"] and manifest["intervention_values"] == [5.0]
    assert manifest["config"]["data"]["n_models"] == 44 and manifest["schema_version"] == 1
    assert manifest["package_version"] and manifest["seeds"]["entropy"] == 0

    edges, models = 0, 0
    for split in ("train", "val", "test"):
        paths = shard_paths(root, split)
        batches = [read_shard(p) for p in paths]
        ids = np.concatenate([b["model_id"] for b in batches])
        assert sorted(ids) == list(range(manifest["splits"][split]["models"]))
        assert all(("int_ref" in b) == (split == "test") for b in batches)
        edges += sum(int(b["graph"].sum()) for b in batches)
        models += len(ids)
    assert manifest["mean_edges_per_model"] == pytest.approx(edges / models)
    # Splits come from disjoint seeds: no observational sample is shared.
    first = {split: read_shard(shard_paths(root, split)[0])["obs"][0].tobytes() for split in ("train", "val", "test")}
    assert len(set(first.values())) == 3


def test_same_bytes_with_one_worker(written, tmp_path):
    root, _ = written
    generate(tiny_config(), tmp_path / "one", num_cpus=1, progress=False)
    assert files(tmp_path / "one") == files(root)


def test_in_process_writes_the_same_bytes_without_ray(written, tmp_path):
    root, manifest = written
    again = generate(tiny_config(), tmp_path / "local", progress=False, in_process=True)
    assert files(tmp_path / "local") == files(root)
    assert again["splits"] == manifest["splits"]


def test_rerun_keeps_shards_and_resume_rewrites_only_damaged_ones(written, tmp_path):
    root, _ = written
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    before = files(copy)
    stamps = {p: p.stat().st_mtime_ns for p in copy.rglob("*.parquet")}

    generate(tiny_config(), copy, progress=False)  # nothing to do
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*.parquet")} == stamps

    deleted = copy / "train" / "part-00002.parquet"
    truncated = copy / "test" / "part-00000.parquet"
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:1000])
    (copy / "train" / ".part-00002.parquet.123.tmp").write_bytes(b"half a shard")  # an interrupted write
    generate(tiny_config(), copy, progress=False)
    assert files(copy) == before
    rewritten = {p for p in copy.rglob("*.parquet") if p.stat().st_mtime_ns != stamps.get(p)}
    assert rewritten == {deleted, truncated}
    assert not list(copy.rglob("*.tmp"))


def test_other_config_is_refused_unless_overwrite(written, tmp_path):
    root, _ = written
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    with pytest.raises(ShardError, match=r"manifest\.json holds a different data config \(data\.d: 3 there, 4 now"):
        generate(tiny_config("data.d=4"), copy, progress=False)
    manifest = generate(tiny_config("data.d=4"), copy, overwrite=True, progress=False)
    assert manifest["d"] == 4 and read_shard(shard_paths(copy, "val")[0])["obs"].shape[-1] == 4
    # Where training reads from is not part of what was simulated.
    generate(tiny_config("data.d=4", "data.source=shards", f"data.dir={copy}"), copy, progress=False)


def test_shards_without_manifest_are_refused(written, tmp_path):
    root, _ = written
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ShardError, match="holds shards but no manifest.json"):
        generate(tiny_config(), copy, progress=False)


def test_manifest_errors_name_the_file(written, tmp_path):
    root, _ = written
    with pytest.raises(ShardError, match=r"empty/manifest\.json: no manifest"):
        shard_paths(tmp_path / "empty", "train")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "val" / "part-00000.parquet").unlink()
    with pytest.raises(ShardError, match=r"val/part-00000\.parquet: shard listed in the manifest is missing"):
        shard_paths(copy, "val")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ShardError, match="did not finish"):
        shard_paths(copy, "train")


def test_cli_writes_data_and_reports_errors_in_one_line(ray_cluster, tmp_path, capsys, load_job):
    generate_cli = load_job("generate").main
    out = tmp_path / "cli"
    code = generate_cli(["--config", "configs/smoke.yaml", "--out", str(out), "--no-progress", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    assert "train 36 models in 5 shards, val 4 models in 1 shard, test 4 models in 1 shard;" in printed
    assert read_manifest(out)["complete"]

    for args, message in [
        (["data.linear.edge_prob=1.5"], "data.linear.edge_prob=1.5: must be in [0, 1]"),
        (["data.nmodels=5"], "unknown config key data.nmodels"),
        (["data.d=three"], "data.d (from"),
    ]:
        code = generate_cli(["--config", "configs/smoke.yaml", "--out", str(tmp_path / "bad"), *TINY, *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code = generate_cli(["--config", "configs/missing.yaml", "--out", str(tmp_path / "bad")])
    assert code == 2 and "configs/missing.yaml does not exist" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
