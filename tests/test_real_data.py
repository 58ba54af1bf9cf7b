"""Real interventional tables: the format read back from CSV and Parquet, each bad input's one
error, evaluate_real with the shipped gauss8 on a linear-Gaussian table whose effects are known,
the Sachs converter and `jobs/evaluate.py --real`."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from activa_ray.eval.real import RealDataError, as_real_table, evaluate_real, read_real_table, write_real_report
from activa_ray.eval.real_sources import SACHS_EXPERIMENTS, sachs_2005
from activa_ray.predict import load

ROOT = Path(__file__).resolve().parents[1]
SACHS_EXAMPLE = ROOT / "examples" / "real" / "sachs.csv"


def linear_gauss_table(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """x0 -> x1 (weight 2), x2 alone. Observational rows, do(x0 ~ N(5, 0.1)), do(x2 ~ N(5, 0.1))."""
    rng = np.random.default_rng(seed)

    def draw(x0: np.ndarray, x2: np.ndarray, label: str) -> pd.DataFrame:
        x1 = 2 * x0 + rng.normal(0, 0.5, len(x0))
        return pd.DataFrame({"intervention": label, "x0": x0, "x1": x1, "x2": x2})

    def standard() -> np.ndarray:
        return rng.normal(0, 1, rows)

    def held() -> np.ndarray:
        return rng.normal(5, np.sqrt(0.1), rows)

    return pd.concat([
        draw(standard(), standard(), "observational"),
        draw(held(), standard(), "x0"),
        draw(standard(), held(), "x2"),
    ], ignore_index=True)


@pytest.fixture(scope="module")
def gauss8():
    return load("gauss8")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trips_through_csv_and_parquet(tmp_path, suffix):
    frame = linear_gauss_table(rows=20)
    frame.loc[:4, "intervention"] = None  # empty cells are observational too
    path = tmp_path / f"table{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    table = read_real_table(path)
    assert table.variables == ["x0", "x1", "x2"]
    assert list(table.conditions) == ["x0", "x2"]
    np.testing.assert_allclose(table.observational.to_numpy(), frame.iloc[:20, 1:].to_numpy())
    np.testing.assert_allclose(table.conditions["x2"].to_numpy(), frame.iloc[40:, 1:].to_numpy())


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="intervention"), "no 'intervention' column"),
    (lambda f: f[f.intervention != "observational"], "0 observational row(s)"),
    (lambda f: f.replace({"intervention": {"x2": "x9"}}), "column 'intervention', row 40 (line 42): 'x9' is not a variable"),
    (lambda f: f.astype({"x1": object}).assign(x1=lambda g: g.x1.where(g.index != 7, "high")), "column 'x1', row 7 (line 9): 'high' is not a number"),
    (lambda f: f.assign(x2=lambda g: g.x2.where(g.index != 3, np.inf)), "column 'x2', row 3 (line 5)"),
    (lambda f: f.assign(x0=lambda g: g.x0.where(g.index != 5)), "an empty or NaN cell"),
    (lambda f: f.drop(index=range(41, 60)), "the condition 'x2' has 1 row; expected at least 2"),
])
def test_each_bad_table_is_one_clear_error(tmp_path, change, message):
    path = tmp_path / "bad.csv"
    change(linear_gauss_table(rows=20)).to_csv(path, index=False)
    with pytest.raises(RealDataError) as error:
        read_real_table(path)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(RealDataError, match="no such file"):
        read_real_table(tmp_path / "none.csv")
    (tmp_path / "table.txt").write_text("intervention,x\n")
    with pytest.raises(RealDataError, match="expected a .csv or .parquet file"):
        read_real_table(tmp_path / "table.txt")


@pytest.fixture(scope="module")
def known_effects(gauss8):
    table = as_real_table(linear_gauss_table())
    return table, evaluate_real(gauss8, table, max_obs=100, prior_samples=(1,), permutations=50, seed=3)


def test_one_row_per_condition_and_method_with_the_values_used(known_effects):
    table, evaluation = known_effects
    frame = evaluation.per_condition
    assert list(frame.columns) == ["condition", "method", "rows", "compared", "value", "value_used", "mmd", "wsd", "erg", "perm_p"]
    assert frame.shape[0] == 2 * 4
    assert set(frame.method) == {"activa_s1", "baseline", "no_effect", "floor"}
    assert (frame.compared == 120).all() and (frame.rows == 240).all()
    # gauss8 knows only do(. = 5.0): it answers for 5.0; the baselines get the realised level.
    realised = table.conditions["x0"]["x0"].mean()
    assert np.allclose(frame[frame.condition == "x0"].value, realised)
    assert (frame[frame.method == "activa_s1"].value_used == 5.0).all()
    assert np.allclose(frame[frame.method == "baseline"].value_used, frame[frame.method == "baseline"].value)
    assert set(evaluation.summary) == set(frame.method)
    assert evaluation.summary["floor"]["mmd"]["n"] == 2
    assert any("d = 3" in message for message in evaluation.warnings)


def test_metrics_see_what_moved_and_what_did_not(known_effects):
    _, evaluation = known_effects
    scores = evaluation.per_condition.set_index(["condition", "method"])
    # do(x2): x0 and x1 keep their observational law, so no-effect is as close as real rows are.
    assert scores.loc[("x2", "no_effect"), "erg"] < 3 * scores.loc[("x2", "floor"), "erg"] + 0.02
    assert scores.loc[("x2", "no_effect"), "perm_p"] > 0.01
    # do(x0): x1 moves by 2 * 5; the conditional MVN of a root target is right, no-effect is not.
    assert scores.loc[("x0", "no_effect"), "erg"] > 2.0
    assert scores.loc[("x0", "baseline"), "erg"] < 0.2 * scores.loc[("x0", "no_effect"), "erg"]


def test_the_target_column_is_left_out_of_the_metrics(gauss8):
    """Reversing the target's values inside its condition keeps its mean and spread (so every draw is
    the same) and changes only target cells: the scores must not move."""
    frame = linear_gauss_table(rows=60)
    reversed_target = frame.copy()
    for target in ("x0", "x2"):
        rows = reversed_target.intervention == target
        reversed_target.loc[rows, target] = reversed_target.loc[rows, target].to_numpy()[::-1]
    scores = [
        evaluate_real(gauss8, as_real_table(f), max_obs=50, prior_samples=(1,), permutations=20, seed=1).per_condition
        for f in (frame, reversed_target)
    ]
    pd.testing.assert_frame_equal(scores[0], scores[1])


def test_report_files(known_effects, tmp_path):
    _, evaluation = known_effects
    write_real_report(evaluation, tmp_path)
    assert pd.read_csv(tmp_path / "results.csv").shape == (8, 10)
    markdown = (tmp_path / "results.md").read_text()
    assert "| activa_s1 |" in markdown and "## Per condition" in markdown


def test_sachs_table_shipped_matches_the_converter(tmp_path):
    """The converter on a file laid out like cdt's (9 experiments one after another) labels by block."""
    sizes = [rows for _, rows, _ in SACHS_EXPERIMENTS]
    columns = pd.read_csv(SACHS_EXAMPLE, nrows=0).columns[1:]
    block = np.repeat(np.arange(1, 10), sizes).astype(float)
    fake = pd.DataFrame({name: block for name in columns})
    fake.to_csv(tmp_path / "cyto_full_data.csv", index=False)
    table = sachs_2005(tmp_path / "cyto_full_data.csv", log=True)
    labels = table.groupby("intervention", sort=False)["praf"].agg(["first", "size"])
    assert labels.to_dict("index") == {
        "observational": {"first": 0.0, "size": 853},
        "pakts473": {"first": np.log(3), "size": 911},
        "PKC": {"first": np.log(4), "size": 723},
        "PIP2": {"first": np.log(5), "size": 810},
        "pmek": {"first": np.log(6), "size": 799},
        "PIP3": {"first": np.log(7), "size": 848},
    }
    shipped = read_real_table(SACHS_EXAMPLE)
    assert {k: len(v) for k, v in shipped.conditions.items()} == dict(labels["size"].iloc[1:])
    fake.iloc[:100].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(RealDataError, match="7466 x 11"):
        sachs_2005(tmp_path / "short.csv")


def test_cli_exit_0_and_2(tmp_path):
    table = tmp_path / "table.csv"
    linear_gauss_table(rows=40).to_csv(table, index=False)

    def run(path: Path, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "evaluate.py"), "--model", "gauss8", "--real", str(path),
             "--out", str(out), "--prior-samples", "1", "--permutations", "10"],
            capture_output=True, text=True, timeout=120,
        )

    good = run(table, tmp_path / "out")
    assert good.returncode == 0, good.stderr
    assert "evaluated 2 conditions" in good.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.csv", "results.json", "results.md"}

    bad_table = tmp_path / "bad.csv"
    linear_gauss_table(rows=40).drop(columns="intervention").to_csv(bad_table, index=False)
    bad = run(bad_table, tmp_path / "bad_out")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "no 'intervention' column" in bad.stderr
    assert not (tmp_path / "bad_out").exists()
