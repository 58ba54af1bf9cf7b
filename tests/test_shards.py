"""Shard tables and files: round trips through pyarrow and Ray Data, clear errors, examples."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from activa_ray.data.config import LinearSCMConfig
from activa_ray.data.examples import explode, iter_examples, iter_examples_in_passes
from activa_ray.data.scm import simulate_linear
from activa_ray.data.format import ShardError, batch_to_table, read_shard, table_to_batch, write_shard


def make_batch(n_models=6, d=3, n_samples=5, with_ref=True, seed=0):
    return simulate_linear(np.random.default_rng(seed), n_models, d, n_samples, LinearSCMConfig(), with_ref=with_ref)


def assert_batches_equal(got, want):
    for key, value in want.items():
        assert np.array_equal(got[key], value), key
        assert got[key].dtype == value.dtype or key == "var_names", key


def test_round_trip_through_a_file(tmp_path):
    batch = make_batch()
    path = tmp_path / "test" / "part-00000.parquet"
    write_shard(path, batch_to_table(batch, np.arange(10, 16), "linear-gauss"))
    got = read_shard(path)
    assert_batches_equal(got, batch)
    assert got["model_id"].tolist() == list(range(10, 16))
    assert got["kind"].tolist() == ["linear-gauss"] * 6
    assert [p.name for p in path.parent.iterdir()] == ["part-00000.parquet"]  # no temporary left


def test_plain_pyarrow_reads_the_tensors(tmp_path):
    batch = make_batch(with_ref=False)
    path = tmp_path / "part-00000.parquet"
    write_shard(path, batch_to_table(batch, np.arange(6), "linear-gauss"))
    table = pq.read_table(path)
    assert "int_ref" not in table.column_names
    assert np.array_equal(table.column("int").combine_chunks().to_numpy_ndarray(), batch["int"])
    assert table.column("var_names").to_pylist()[0] == ["V0", "V1", "V2"]


def test_same_table_same_bytes(tmp_path):
    table = batch_to_table(make_batch(), np.arange(6), "linear-gauss")
    write_shard(tmp_path / "a.parquet", table)
    write_shard(tmp_path / "b.parquet", batch_to_table(make_batch(), np.arange(6), "linear-gauss"))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_ray_data_reads_the_shards_as_numpy(ray_cluster, tmp_path):
    import ray

    batches = [make_batch(seed=s) for s in range(2)]
    for s, batch in enumerate(batches):
        write_shard(tmp_path / f"part-{s:05d}.parquet", batch_to_table(batch, np.arange(6) + 6 * s, "linear-gauss"))
    rows = list(
        ray.data.read_parquet(str(tmp_path)).iter_batches(batch_format="numpy", batch_size=None)
    )
    got = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    order = np.argsort(got["model_id"])
    for key in ("obs", "int", "int_ref", "targets", "values", "value_index", "graph", "weights"):
        want = np.concatenate([b[key] for b in batches])
        assert isinstance(got[key], np.ndarray) and got[key].dtype == want.dtype, key
        assert np.array_equal(got[key][order], want), key
    assert list(got["var_names"][0]) == ["V0", "V1", "V2"]


def test_truncated_shard_is_one_clear_error(tmp_path):
    path = tmp_path / "part-00003.parquet"
    write_shard(path, batch_to_table(make_batch(), np.arange(6), "linear-gauss"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ShardError, match="part-00003.parquet"):
        read_shard(path)


def test_flipped_bytes_are_caught_by_the_page_checksums(tmp_path):
    path = tmp_path / "part-00000.parquet"
    write_shard(path, batch_to_table(make_batch(n_models=50, n_samples=40), np.arange(50), "linear-gauss"))
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="part-00000.parquet"):
        read_shard(path)


def test_foreign_parquet_is_one_clear_error(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    with pytest.raises(ShardError, match=r"part-00000\.parquet.*not an activa_ray shard"):
        read_shard(path)
    # A table with the right column names but a wrong tensor dtype.
    table = batch_to_table(make_batch(), np.arange(6), "linear-gauss")
    graph = pa.FixedShapeTensorArray.from_numpy_ndarray(np.zeros((6, 3, 3), dtype=np.float64))
    table = table.set_column(table.column_names.index("graph"), "graph", graph)
    with pytest.raises(ShardError, match=r"elsewhere\.parquet: column 'graph'"):
        table_to_batch(table, "elsewhere.parquet")
    with pytest.raises(ShardError, match="does not exist"):
        read_shard(tmp_path / "missing.parquet")


def test_inconsistent_shapes_are_named(tmp_path):
    batch = make_batch()
    batch["obs"] = batch["obs"][:, :, :2]  # d = 2 where the rest says 3
    with pytest.raises(ShardError, match=r"x\.parquet: column 'int' has d=3"):
        table_to_batch(batch_to_table(batch, np.arange(6), "linear-gauss"), "x.parquet")


def test_explode_covers_every_model_condition_pair_once():
    batch = make_batch(n_models=4, d=3)
    examples = explode(batch)
    assert examples["x"].shape == (12, 5, 3) and examples["obs"].shape == (12, 5, 3)
    assert examples["targets"].dtype == np.float32 and examples["value_index"].dtype == np.int64
    pairs = set()
    for e in range(12):
        m = next(m for m in range(4) if np.array_equal(batch["obs"][m], examples["obs"][e]))
        c = next(c for c in range(3) if np.array_equal(batch["int"][m, c], examples["x"][e]))
        assert np.array_equal(examples["targets"][e], batch["targets"][m, c])
        assert examples["values"][e] == batch["values"][m, c]
        pairs.add((m, c))
    assert len(pairs) == 12


def test_a_source_smaller_than_the_buffer_yields_its_first_batch_within_one_pass():
    """A Ray Data shard re-reads its files every pass: the buffer must not wait for a second pass."""
    one_pass = [make_batch(n_models=10, d=3, seed=s, with_ref=False) for s in range(5)]  # 50 models, 150 examples
    read = []

    def endless():
        while True:
            for batch in one_pass:
                read.append(batch)
                yield batch

    examples = iter_examples_in_passes(endless(), pass_models=50, batch_size=16, rng=np.random.default_rng(0),
                                       buffer_size=4096)
    first = next(examples)
    assert first["x"].shape == (16, 5, 3) and len(read) == len(one_pass)
    # A buffer smaller than a pass is kept as it is.
    read.clear()
    next(iter_examples_in_passes(endless(), pass_models=50, batch_size=16, rng=np.random.default_rng(1),
                                 buffer_size=40))
    assert len(read) == 2  # 60 examples >= 40 + 16


def test_iter_examples_shuffles_and_yields_each_example_once():
    batches = [make_batch(n_models=10, d=3, seed=s, with_ref=False) for s in range(5)]  # 150 examples
    out = list(iter_examples(batches, batch_size=16, rng=np.random.default_rng(0), buffer_size=40))
    assert len(out) == 150 // 16 and all(b["x"].shape == (16, 5, 3) for b in out)
    seen = np.concatenate([b["x"] for b in out]).reshape(len(out) * 16, -1)
    everything = np.concatenate([explode(b)["x"] for b in batches]).reshape(150, -1)
    assert len(np.unique(seen, axis=0)) == len(seen)  # nothing twice
    index = {row.tobytes(): i for i, row in enumerate(everything)}
    positions = np.array([index[row.tobytes()] for row in seen])
    # Shuffled: not in input order, and the first batch already mixes the first two inputs.
    assert not np.all(np.diff(positions) > 0)
    assert (positions[:16] < 30).any() and (positions[:16] >= 30).any()
    all_obs = np.concatenate([explode(b)["obs"] for b in batches]).reshape(150, -1)
    obs_of = {row.tobytes(): i for i, row in enumerate(all_obs)}
    for b in out:  # each example keeps its own obs
        for obs, x in zip(b["obs"], b["x"]):
            assert obs_of[obs.tobytes()] // 3 == index[x.tobytes()] // 3

