"""Real interventional datasets that PyPI packages ship, converted to the table of eval/real.py
(variables as columns plus `intervention`).

Sachs et al. (2005), flow cytometry of 11 phosphoproteins and phospholipids in human T cells,
as `cdt` (CausalDiscoveryToolbox, 0.6.0) ships it: cdt/data/resources/cyto_full_data.csv, 7466
rows without labels. The rows are the nine experiment files of the paper's main result, one
after another, in the paper's order and sizes:

    1 cd3cd28 (853)   2 cd3cd28+icam2 (902)   3 +akt-inhibitor (911)   4 +G06976 (723)
    5 +psitectorigenin (810)   6 +U0126 (799)   7 +LY294002 (848)   8 pma (913)   9 b2camp (707)

(9 sizes summing to exactly 7466; the rolling medians of the log values jump at exactly these
boundaries, within a few rows). Rows of file 1, the general CD3/CD28 stimulation, are the
observational rows. Files 3-7 add a reagent acting on one measured molecule, mapped as the
paper's figure 1 and the literature that uses these data do:

    akt-inhibitor -> pakts473 (Akt)   G06976 -> PKC   psitectorigenin -> PIP2
    U0126 -> pmek (MEK)               LY294002 -> PIP3 (via PI3K)

Files 8 and 9 (PMA activating PKC, beta2cAMP activating PKA) replace the CD3/CD28 stimulation
rather than adding to it, so file 1 is not their observational reference; file 2 adds ICAM-2,
which is no measured variable. The three are left out.

A reagent inhibits a molecule's activity, not its measured phosphorylation (U0126 raises
phospho-MEK), so "do(target = its mean level)" is an approximation of what happened.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd

from activa_ray.eval.real import INTERVENTION_COLUMN, OBSERVATIONAL, RealDataError

CDT_SACHS_FILE = Path("data") / "resources" / "cyto_full_data.csv"
# (experiment, rows, target variable or None for the observational rows, "" to leave out)
SACHS_EXPERIMENTS = (
    ("cd3cd28", 853, None),
    ("cd3cd28+icam2", 902, ""),
    ("cd3cd28+aktinhib", 911, "pakts473"),
    ("cd3cd28+g0076", 723, "PKC"),
    ("cd3cd28+psitect", 810, "PIP2"),
    ("cd3cd28+u0126", 799, "pmek"),
    ("cd3cd28+ly", 848, "PIP3"),
    ("pma", 913, ""),
    ("b2camp", 707, ""),
)


def cdt_sachs_path() -> Path:
    """cdt's copy of the Sachs data, found without importing cdt (whose import pulls in torch and R checks)."""
    spec = importlib.util.find_spec("cdt")
    if spec is None or not spec.submodule_search_locations:
        raise RealDataError("the Sachs data comes from the cdt package: pip install cdt==0.6.0 (or pass the file's path)")
    return Path(next(iter(spec.submodule_search_locations))) / CDT_SACHS_FILE


def sachs_2005(path: str | os.PathLike | None = None, log: bool = False) -> pd.DataFrame:
    """The Sachs et al. (2005) table: CD3/CD28 rows observational, the five inhibitor conditions by target.

    path: cdt's cyto_full_data.csv (default: the installed cdt's). log: natural log of every value
    (all are >= 1), the usual scale for these data and one close to that of the synthetic training data.
    """
    path = Path(path) if path is not None else cdt_sachs_path()
    if not path.is_file():
        raise RealDataError(f"{path}: no such file (cdt's cyto_full_data.csv)")
    data = pd.read_csv(path)
    expected = sum(rows for _, rows, _ in SACHS_EXPERIMENTS)
    if data.shape != (expected, 11):
        raise RealDataError(f"{path}: expected cdt's 7466 x 11 Sachs table, got {data.shape[0]} x {data.shape[1]}")
    labels = np.concatenate([np.full(rows, OBSERVATIONAL if target is None else target, dtype=object)
                             for _, rows, target in SACHS_EXPERIMENTS])
    if log:
        data = np.log(data)
    data.insert(0, INTERVENTION_COLUMN, labels)
    return data[labels != ""].reset_index(drop=True)
