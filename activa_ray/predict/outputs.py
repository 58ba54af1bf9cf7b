"""The files of one prediction in a folder: samples.csv (or .parquet), summary.json, marginals.png.

The three are written to a temporary folder beside OUT and moved into OUT only when all exist,
so an error leaves OUT as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from activa_ray.predict.prediction import Prediction
from activa_ray.predict.predictor import load
from activa_ray.predict.tables import read_table


def samples_file_name(data_path: Path) -> str:
    """Parquet in, Parquet out; anything else gives a CSV."""
    return "samples.parquet" if data_path.suffix.lower() in (".parquet", ".pq") else "samples.csv"


def write_outputs(out: Path, prediction: Prediction, samples: pd.DataFrame, summary: dict, samples_name: str,
                  plot: bool = True) -> None:
    """Write the samples, summary.json and (with `plot`) marginals.png into `out`, all or nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would otherwise become OUT's mode
    try:
        if samples_name.endswith(".parquet"):
            samples.to_parquet(staging / samples_name, index=False)
        else:
            samples.to_csv(staging / samples_name, index=False)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        written = [samples_name, "summary.json"]
        if plot:
            prediction.plot_marginals(staging / "marginals.png", samples)
            written.append("marginals.png")
        if not out.exists():
            os.replace(staging, out)
        else:
            for name in written:
                os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def predict_to_folder(
    model: str | os.PathLike,
    data: str | os.PathLike,
    targets: Sequence[str],
    out: str | os.PathLike,
    value: float | None = None,
    samples: int = 1000,
    prior_samples: int = 50,
    seed: int = 0,
    device: str = "cpu",
    plot: bool = True,
) -> tuple[str, list[str]]:
    """Predict do(targets = value) on the table at `data` and write the outputs into `out` (the marginals'
    plot, ~1.5 s of matplotlib, only with `plot`); returns the effect summary (text) and the warnings
    raised (each once, as text)."""
    data_path, out = Path(data), Path(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_table(data_path)
        predictor = load(model, device=device)
        target = targets[0] if len(targets) == 1 else list(targets)
        prediction = predictor.predict(table, target, value, prior_samples=prior_samples, seed=seed)
    messages = list(dict.fromkeys(str(warning.message) for warning in caught))

    drawn = prediction.sample(samples, seed=seed)
    summary = prediction.summary(drawn)
    summary.update({"model": str(model), "data": str(data_path), "samples": samples, "seed": seed,
                    "warnings": messages})
    write_outputs(out, prediction, drawn, summary, samples_file_name(data_path), plot)
    return prediction.format_effects(), messages
