"""The evaluate job on a tiny untrained model and a tiny generated shard directory: the report
files hold what was computed, roles split the variables right, bad inputs give clear errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from activa_ray.config import DataConfig, load_config
from activa_ray.data.format import ShardError, read_shard, shard_paths
from activa_ray.data.generate import generate
from activa_ray.data.simulate import simulate
from activa_ray.eval.evaluate import EvaluationError, evaluate
from activa_ray.eval.pairs import descendant_masks
from activa_ray.eval.shard import role_metrics
from activa_ray.eval.validation import validation_metrics
from activa_ray.eval.metrics import all_metrics
from activa_ray.model.activa import Activa
from activa_ray.model.config import ModelConfig
from activa_ray.model.io import ModelFileError, save_model
from activa_ray.pretrained import resolve
from wandb_records import wait_for_keys

TINY = ModelConfig(embed_dim=16, hidden_dim=32, encoder_layers=2, decoder_layers=1, heads=2)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, ray_cluster) -> Path:
    """6 test models of 2 variables in shards of 4 (so an evaluation crosses a shard boundary)."""
    root = tmp_path_factory.mktemp("shards")
    cfg = load_config(None, ["data.d=2", "data.n_samples=16", "data.n_models=24", "data.test_frac=0.25", "data.models_per_shard=4"])
    generate(cfg, root, progress=False)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(Activa(TINY), tmp_path_factory.mktemp("model") / "export", {"note": "untrained"})


@pytest.fixture(scope="module")
def evaluated(shard_dir: Path, model_dir: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    outcome = evaluate(
        model_dir, shard_dir, out, prior_samples=(1, 3), max_models=5, permutations=20,
        methods=("baseline", "no_effect", "oracle_graph"), progress=False,
    )
    return out, outcome


def _per_pair(out: Path) -> list[dict]:
    with open(out / "per_pair.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_report_files_hold_what_was_computed(evaluated: tuple[Path, dict]) -> None:
    out, outcome = evaluated
    results = json.loads((out / "results.json").read_text())
    methods = ["activa", "activa_s1", "activa_s3", "baseline", "no_effect", "oracle_graph", "floor"]
    assert list(results) == methods
    assert outcome["pairs"] == 10  # 5 models x 2 conditions
    rows = _per_pair(out)
    assert len(rows) == len(methods) * 3 * 10
    for method in methods:
        for metric in ("mmd", "wsd", "erg"):
            raw = [float(r[metric]) for r in rows if r["method"] == method and r["role"] == "all"]
            assert results[method][metric]["mean"] == pytest.approx(np.mean(raw), rel=1e-9)
            assert results[method][metric]["sem"] == pytest.approx(np.std(raw, ddof=1) / np.sqrt(len(raw)), rel=1e-9)
        p_values = [float(r["perm_p"]) for r in rows if r["method"] == method and r["role"] == "all"]
        assert results[method]["perm_pass"]["mean"] == pytest.approx(np.mean(np.array(p_values) >= 0.05))
    # `activa` is the default S = 1, reported again.
    assert results["activa"] == results["activa_s1"]
    # CSV and Markdown carry the same numbers.
    with open(out / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    entry = next(r for r in table if r["method"] == "baseline" and r["role"] == "all" and r["metric"] == "wsd")
    assert float(entry["mean"]) == pytest.approx(results["baseline"]["wsd"]["mean"])
    markdown = (out / "results.md").read_text()
    assert f"{results['floor']['mmd']['mean']:.3f} ± {results['floor']['mmd']['sem']:.3f}" in markdown
    assert "| oracle_graph |" in markdown and "non-descendants" in markdown
    # The Markdown shows the default S once: as `activa (S=1)`, next to the other S.
    assert markdown.count("| activa (S=1) |") == 4 and "| activa, S=1 |" not in markdown  # 3 tables + timing
    assert markdown.count("| activa, S=3 |") == 4


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_noise_floor_matches_a_direct_computation(evaluated: tuple[Path, dict], shard_dir: Path) -> None:
    out, _ = evaluated
    paths = shard_paths(shard_dir, "test")
    first, second = read_shard(paths[0]), read_shard(paths[1])
    truth = np.concatenate([first["int"], second["int"][:1]]).reshape(10, 16, 2)
    ref = np.concatenate([first["int_ref"], second["int_ref"][:1]]).reshape(10, 16, 2)
    direct = all_metrics(torch.from_numpy(truth), torch.from_numpy(ref), permutations=5)
    results = json.loads((out / "results.json").read_text())
    for metric in ("mmd", "wsd", "erg"):
        assert results["floor"][metric]["mean"] == pytest.approx(direct[metric].mean().item(), rel=1e-5)


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_roles_split_the_other_variable_by_the_graph(evaluated: tuple[Path, dict]) -> None:
    out, _ = evaluated
    by_role = json.loads((out / "results_by_role.json").read_text())
    assert set(by_role) == {"descendants", "non_descendants"}
    # d = 2: the non-target variable is either a descendant or not, never both.
    for method in ("activa", "baseline", "floor"):
        assert by_role["descendants"][method]["mmd"]["n"] + by_role["non_descendants"][method]["mmd"]["n"] == 10


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_figures_are_written(evaluated: tuple[Path, dict]) -> None:
    out, outcome = evaluated
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.name.split("_model")[0] for p in pngs} == {"figure2", "marginals"}
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(outcome["info"]["figures"]) == len(pngs)


def test_descendant_masks() -> None:
    chain = np.zeros((1, 4, 4), dtype=np.uint8)
    chain[0, 0, 1] = chain[0, 1, 2] = 1  # 0 -> 1 -> 2, 3 alone
    descendants, others = descendant_masks(chain, np.array([[0, 1, 0, 0]]))
    assert descendants.tolist() == [[False, False, True, False]]
    assert others.tolist() == [[True, False, False, True]]
    descendants, others = descendant_masks(chain, np.array([[1, 1, 0, 0]]))  # targets are in neither set
    assert descendants.tolist() == [[False, False, True, False]]
    assert others.tolist() == [[False, False, False, True]]


def test_role_metrics_equal_metrics_on_the_restricted_coordinates() -> None:
    rng = np.random.default_rng(0)
    truth = torch.from_numpy(rng.normal(size=(3, 20, 4)))
    prediction = torch.from_numpy(rng.normal(size=(3, 20, 4)) + 0.4)
    keep = torch.tensor([[True, False, True, False]] * 3)
    masks = {"descendants": keep, "non_descendants": torch.zeros(3, 4, dtype=torch.bool)}
    got = role_metrics(truth, prediction, masks, 10, torch.Generator().manual_seed(0))
    direct = all_metrics(truth[:, :, [0, 2]], prediction[:, :, [0, 2]], permutations=10)
    for metric in ("mmd", "wsd", "erg"):
        assert np.allclose(got["descendants"][metric], direct[metric].numpy())
    assert np.isnan(got["non_descendants"]["mmd"]).all()  # an empty set is skipped


def test_validation_metrics_on_an_in_memory_batch() -> None:
    torch.manual_seed(1)
    model = Activa(TINY)
    model.train()
    batch = simulate(DataConfig(d=3, n_samples=12), np.random.default_rng(0), 4)
    got = validation_metrics(model, batch, prior_samples=2, generator=torch.Generator().manual_seed(0))
    assert set(got) == {f"{m}_{k}" for m in ("activa", "baseline", "posterior") for k in ("mmd", "wsd", "erg")}
    assert all(np.isfinite(v) and v >= 0 for v in got.values())
    assert model.training  # restored after the eval-mode prediction


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_cli_writes_the_report_and_names_bad_inputs(shard_dir: Path, model_dir: Path, tmp_path: Path, capsys, load_job) -> None:
    cli = load_job("evaluate").main
    out = tmp_path / "cli"
    code = cli(["--model", str(model_dir), "--data", str(shard_dir), "--out", str(out), "--prior-samples", "1",
                "--max-models", "2", "--permutations", "5", "--figure-models", "0", "--no-progress", "--wandb", "offline"])
    assert code == 0
    assert "evaluated 4 (model, condition) pairs" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    # The offline W&B run logged the same numbers.
    (run_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    logged = wait_for_keys([run_file], {"eval/all/activa/mmd", "eval/all/baseline/wsd"})
    assert float(logged["eval/all/activa/mmd"]) == pytest.approx(results["activa"]["mmd"]["mean"])
    assert float(logged["eval/all/baseline/wsd"]) == pytest.approx(results["baseline"]["wsd"]["mean"])

    assert cli(["--model", str(model_dir), "--data", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "manifest" in message and "\n" not in message


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_bad_inputs_raise_clear_errors(shard_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ShardError, match="no manifest"):
        evaluate(model_dir, tmp_path, out, progress=False)
    with pytest.raises(EvaluationError, match="unknown method"):
        evaluate(model_dir, shard_dir, out, methods=("baseline", "dowhy"), progress=False)
    with pytest.raises(EvaluationError, match="max_models"):
        evaluate(model_dir, shard_dir, out, max_models=0, progress=False)
    with pytest.raises(EvaluationError, match="prior samples"):
        evaluate(model_dir, shard_dir, out, prior_samples=(0,), progress=False)

    knockout_model = save_model(Activa(ModelConfig(**{**TINY.__dict__, "intervention_values": [0.0]})), tmp_path / "ko")
    with pytest.raises(EvaluationError, match=r"value\(s\) \[5.0\] are not in the model's table \[0.0\]"):
        evaluate(knockout_model, shard_dir, out, max_models=1, progress=False)

    wrong_d = tmp_path / "wrong_d"
    shutil.copytree(shard_dir, wrong_d)
    manifest = json.loads((wrong_d / "manifest.json").read_text())
    (wrong_d / "manifest.json").write_text(json.dumps({**manifest, "d": 3}))
    with pytest.raises(EvaluationError, match="d=2, but .*manifest.json says d=3"):
        evaluate(model_dir, wrong_d, out, max_models=1, progress=False)

    empty = tmp_path / "empty"
    shutil.copytree(shard_dir, empty)
    manifest["splits"]["test"]["shards"] = 0
    (empty / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EvaluationError, match="holds no models"):
        evaluate(model_dir, empty, out, progress=False)
    assert not (out / "results.json").exists()  # nothing half-written


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_a_model_trained_at_another_d_is_evaluated_with_a_warning(shard_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = save_model(Activa(TINY), tmp_path / "d3", {"data": {"d": 3}})
    with pytest.warns(UserWarning, match=r"has d = 2 variables; the model was trained on d = 3"):
        outcome = evaluate(model, shard_dir, tmp_path / "out", prior_samples=(1,), max_models=1, permutations=5,
                           figure_models=0, progress=False)
    assert outcome["pairs"] == 2


@pytest.mark.ray  # the shard directory is written by Ray tasks
def test_a_shipped_model_is_evaluated_by_name(shard_dir: Path, tmp_path: Path) -> None:
    outcome = evaluate("gauss2", shard_dir, tmp_path / "out", prior_samples=(1,), max_models=1, permutations=5,
                       figure_models=0, progress=False)
    assert outcome["pairs"] == 2
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert Path(info["model_dir"]) == resolve("gauss2")
    with pytest.raises(ModelFileError, match="neither an exported model folder nor a shipped model"):
        evaluate("gauss9", shard_dir, tmp_path / "other", progress=False)
    assert not (tmp_path / "other").exists()
