"""The user's observational table: read a CSV or Parquet file, or take a DataFrame, a dict of
columns or an (N, d) array, and check it into a float64 DataFrame; bad input is one PredictError
naming the column and row (and the file line for a CSV)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class PredictError(ValueError):
    """Input a user can fix (table, query, model directory); the message says what and where."""


def _check_frame(
    frame: pd.DataFrame, source: str, line_offset: int | None, min_rows: int
) -> tuple[np.ndarray, list[str]]:
    """Numeric (N, d) float64 values and the column names of `frame`, or one PredictError.

    line_offset: the file line of data row 0 (2 for a CSV with a header), so errors can name it.
    """
    def where(row: int) -> str:
        return f"row {row}" + (f" (line {row + line_offset})" if line_offset is not None else "")

    names = [str(name) for name in frame.columns]
    if not names:
        raise PredictError(f"{source}: the table has no columns")
    unnamed = [name for name in names if name.startswith("Unnamed:")]
    if unnamed:
        raise PredictError(
            f"{source}: column {unnamed[0]!r} has no name in the header (an index written with the data?); "
            "name every column, e.g. write the CSV with index=False"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise PredictError(f"{source}: duplicated column name(s) {duplicated}")
    if len(frame) < min_rows:
        raise PredictError(f"{source}: needs at least {min_rows} row(s); got {len(frame)}")

    columns = []
    for name, column in zip(names, (frame.iloc[:, j] for j in range(frame.shape[1]))):
        if column.dtype.kind in "iuf":
            columns.append(column.to_numpy(dtype=np.float64))
            continue
        if column.dtype.kind == "b":
            raise PredictError(f"{source}: column {name!r} holds true/false values; every cell must be a number")
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna().to_numpy() & column.notna().to_numpy()  # text that is not a number
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PredictError(f"{source}: column {name!r}, {where(row)}: {column.iloc[row]!r} is not a number")
        columns.append(numeric.to_numpy(dtype=np.float64))
    values = np.stack(columns, axis=1)  # (N, d)
    nonfinite = ~np.isfinite(values)
    if nonfinite.any():
        row, col = (int(i) for i in np.argwhere(nonfinite)[0])
        cell = values[row, col]
        what = "an empty or NaN cell" if np.isnan(cell) else f"{cell} (infinite)"
        raise PredictError(f"{source}: column {names[col]!r}, {where(row)}: {what}; every cell must be a finite number")
    return values, names


def as_table(
    obs_table: pd.DataFrame | Mapping[str, Any] | np.ndarray,
    columns: Sequence[str] | None = None,
    source: str = "observational table",
    line_offset: int | None = None,
    min_rows: int = 2,
) -> pd.DataFrame:
    """The observational table as a float64 DataFrame with string column names, checked.

    obs_table: a DataFrame, a dict of columns, or an (N, d) array (names from `columns`, else
    V0..V{d-1}). Raises PredictError naming the column and row of a non-numeric or non-finite cell.
    """
    if isinstance(obs_table, pd.DataFrame):
        frame = obs_table
        if columns is not None:
            raise PredictError("columns= is for numpy arrays; a DataFrame carries its own column names")
    elif isinstance(obs_table, Mapping):
        try:
            frame = pd.DataFrame(dict(obs_table))
        except ValueError as error:
            raise PredictError(f"{source}: the dict of columns is not a table ({error})") from None
        if columns is not None:
            raise PredictError("columns= is for numpy arrays; a dict carries its own column names")
    elif isinstance(obs_table, np.ndarray):
        if obs_table.ndim != 2:
            raise PredictError(f"{source}: expected an (N, d) array; got shape {obs_table.shape}")
        if columns is None:
            columns = [f"V{j}" for j in range(obs_table.shape[1])]
        if len(columns) != obs_table.shape[1]:
            raise PredictError(f"{source}: {len(columns)} column names for {obs_table.shape[1]} columns")
        frame = pd.DataFrame(obs_table, columns=list(columns))
    else:
        raise PredictError(
            f"{source}: expected a pandas DataFrame, a dict of columns or an (N, d) numpy array; got {type(obs_table).__name__}"
        )
    values, names = _check_frame(frame, source, line_offset, min_rows)
    return pd.DataFrame(values, columns=names)


def read_frame(path: str | os.PathLike, error: type[ValueError], **csv_options) -> tuple[pd.DataFrame, int | None]:
    """The raw frame of a CSV (with a header row) or Parquet file, and the file line of its first row (None for
    Parquet); a missing, empty or unreadable file raises `error` naming it. `csv_options` go to pandas.read_csv."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise error(f"{path}: expected a .csv or .parquet file")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, **csv_options), 2  # line 1 is the header
        return pd.read_parquet(path), None
    except pd.errors.EmptyDataError:
        raise error(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as problem:
        first_line = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        raise error(f"{path}: cannot be read as {suffix[1:]} ({first_line})") from None


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a CSV (with a header row) or Parquet table -> float64 DataFrame."""
    frame, line_offset = read_frame(path, PredictError)
    return as_table(frame, source=str(Path(path)), line_offset=line_offset)

