"""Trained models shipped inside the package, loadable by name: `activa_ray.predict.load("gauss8")`.

Each folder here is an export (`model.safetensors` + `config.json`) whose meta carries a `shipped`
record: what it was trained on, for how long, and its scores on its held-out test split.
`ship` writes one from a training run's export and its evaluation folder (jobs/ship.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from activa_ray.model.io import CONFIG_FILE, ModelFileError, load_model, save_model

PRETRAINED_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "universal"  # what predict answers with when no model is named: any d, N, units and value
SCORED_METHODS = ("activa_s1", "activa_s50", "baseline", "no_effect", "floor")
SHIPPED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def resolve(model: str | os.PathLike) -> Path:
    """An export folder for `model`: a path to one, or the name of a shipped model."""
    path = Path(model)
    if path.is_dir():
        return path
    if str(model) in available():
        return PRETRAINED_DIR / str(model)
    raise ModelFileError(f"{model}: neither an exported model folder nor a shipped model ({', '.join(available())})")


def evaluation_scores(eval_dir: Path) -> dict:
    """Mean ± s.e. of MMD / WSD / ERG per method from an evaluation's results.json (what `shipped` records),
    or, for a unit-free protocol's folder (protocol.json), per set and method every score's [mean, s.e.]."""
    if (eval_dir / "protocol.json").is_file():
        protocol = json.loads((eval_dir / "protocol.json").read_text())
        return {"protocol": "unit-free", "seed": protocol["seed"], "sets": {
            name: {method: {score: [round(v[0], 4), round(v[1], 4)] for score, v in scores.items()}
                   for method, scores in entry["methods"].items()} | {"pairs": entry["methods"]["floor"]["mmd"][2]}
            for name, entry in protocol["sets"].items()}}
    results = json.loads((eval_dir / "results.json").read_text())
    return {
        method: {metric: [round(results[method][metric]["mean"], 4), round(results[method][metric]["sem"], 4)]
                 for metric in ("mmd", "wsd", "erg")}
        for method in SCORED_METHODS if method in results
    } | {"pairs": next(iter(results.values()))["mmd"]["n"]}


def export_examples_seen(meta: dict) -> int:
    """(model, condition) examples an export's weights were trained on: what its training run, GPU run or
    shipping recorded (warm starts included), else its step times its config's batch size (an export
    from before runs recorded it)."""
    recorded = meta.get("examples_seen_total") or (meta.get("shipped") or {}).get("examples_seen")
    if recorded:
        return int(recorded)
    return int(meta.get("step", 0)) * int(meta.get("config", {}).get("train", {}).get("batch_size", 0))


def ship(export_dir: str | os.PathLike, name: str, eval_dir: str | os.PathLike, purpose: str) -> Path:
    """Copy a trained export into the package as `name`, recording its budget and test scores."""
    if not SHIPPED_NAME.fullmatch(name):
        raise ModelFileError(f"name {name!r}: a shipped model's name is letters, digits, _ and - "
                             f"(it names a folder under {PRETRAINED_DIR})")
    model, meta = load_model(export_dir)
    meta["shipped"] = {
        "name": name,
        "purpose": purpose,
        "steps": meta.get("step"),
        "examples_seen": export_examples_seen(meta),
        "test_scores": evaluation_scores(Path(eval_dir)),
        "test_scores_note": "mean and standard error over (test model, condition) pairs; activa_s1: one prior sample",
    }
    target = PRETRAINED_DIR / name
    staging = PRETRAINED_DIR / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, staging, meta)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
