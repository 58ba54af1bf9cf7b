"""Learning curves across training segments of different batch sizes (a CPU run continued on a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activa_ray.eval.curves import Segment, learning_curve, read_curve


def write_metrics(path: Path, steps: list[int], validated: set[int]) -> Path:
    lines = []
    for step in steps:
        record = {"step": step, "train/loss": 1.0}
        if step in validated:
            record.update({"val/step": step, "val/activa_mmd": 1.0 / step, "val/activa_wsd": 2.0 / step,
                           "val/baseline_mmd": 0.5, "val/baseline_wsd": 1.0})
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_examples_are_counted_with_each_segments_batch_size(tmp_path: Path) -> None:
    cpu = write_metrics(tmp_path / "cpu.jsonl", [50, 100, 150, 200], {100, 200})
    gpu = write_metrics(tmp_path / "gpu.jsonl", [250, 300], {300})
    curve = read_curve([(cpu, 128), (gpu, 2048)])
    assert curve["examples"] == [100 * 128, 200 * 128, 200 * 128 + 100 * 2048]
    assert curve["steps"] == [100, 200, 300]
    assert curve["activa_mmd"] == [1 / 100, 1 / 200, 1 / 300]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({m: {"mmd": {"mean": 0.4}, "wsd": {"mean": 3.0}} for m in ("baseline", "floor")}))
    figure = learning_curve([(cpu, 128), (gpu, 2048)], results, "test", tmp_path / "curve.png")
    assert figure.stat().st_size > 10_000


def test_a_warm_started_run_that_counts_its_steps_from_zero_continues_the_curve(tmp_path: Path) -> None:
    first = write_metrics(tmp_path / "first.jsonl", [100, 200], {200})
    warm = write_metrics(tmp_path / "warm.jsonl", [100, 200, 300], {100, 300})
    curve = read_curve([Segment(first, 16), Segment(warm, 32, warm_start=True)])
    assert curve["examples"] == [200 * 16, 200 * 16 + 100 * 32, 200 * 16 + 300 * 32]
    assert curve["steps"] == [200, 300, 500]  # the warm-started run's steps follow the first run's
    figure = learning_curve([Segment(first, 16), Segment(warm, 32, warm_start=True)], None, "steps",
                            tmp_path / "steps.png", per_step=True)
    assert figure.stat().st_size > 10_000
    # Resumed from a checkpoint before the last report: the steps are redone, not counted twice.
    resumed = write_metrics(tmp_path / "resumed.jsonl", [150, 200, 250], {200, 250})
    assert read_curve([(first, 16), (resumed, 16)])["examples"] == [200 * 16, 200 * 16, 250 * 16]
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl: no reports"):
        read_curve([(first, 16), (tmp_path / "empty.jsonl", 16)])


def test_the_curve_job_draws_segments_given_on_the_command_line(tmp_path: Path, load_job, capsys) -> None:
    first = write_metrics(tmp_path / "first.jsonl", [100, 200], {200})
    warm = write_metrics(tmp_path / "warm.jsonl", [100], {100})
    job = load_job("curve")
    out = tmp_path / "curve.png"
    assert job.main(["--segment", f"{first}:16", "--segment", f"{warm}:32:warm", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    with pytest.raises(SystemExit):
        job.main(["--segment", f"{first}", "--out", str(out)])  # no batch size
    assert "expected METRICS.jsonl:BATCH" in capsys.readouterr().err
    assert job.main(["--segment", f"{tmp_path / 'missing.jsonl'}:16", "--out", str(out)]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
