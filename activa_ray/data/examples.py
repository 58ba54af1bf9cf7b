"""Training examples from model batches, numpy only (the training code wraps them in torch).

An example is one (model, condition) pair: the model's observational samples, the samples
of that condition, which variables it intervenes on and the index of its value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np

EXAMPLE_KEYS = ("obs", "x", "targets", "value_index", "values")


def explode(batch: dict) -> dict[str, np.ndarray]:
    """Every (model, condition) pair once, model-major (example e = m * C + c):
    obs (E, N, d), x (E, N, d), targets float32 (E, d), value_index int64 (E,), values float32 (E,)."""
    interventional = batch["int"]  # (M, C, N, d)
    n_models, n_conditions, n_samples, d = interventional.shape
    n_examples = n_models * n_conditions
    return {
        "obs": np.repeat(batch["obs"], n_conditions, axis=0),
        "x": interventional.reshape(n_examples, n_samples, d),
        "targets": batch["targets"].reshape(n_examples, d).astype(np.float32),
        "value_index": batch["value_index"].reshape(n_examples).astype(np.int64),
        "values": batch["values"].reshape(n_examples).astype(np.float32),
    }


class ShuffleBuffer:
    """A local shuffle: examples go in by the model batch, random fixed-size batches come out.

    `pop` draws `batch_size` examples uniformly from the buffer without replacement and
    fills their slots with the buffer's tail, so each pop costs O(batch_size), not O(buffer).
    """

    def __init__(self, batch_size: int, rng: np.random.Generator):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.rng = rng
        self._arrays: dict[str, np.ndarray] | None = None
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, examples: dict[str, np.ndarray]) -> None:
        incoming = len(examples["x"])
        if self._arrays is None:
            self._arrays = {k: np.array(examples[k]) for k in EXAMPLE_KEYS}
            self._size = incoming
            return
        capacity = len(self._arrays["x"])
        if self._size + incoming > capacity:
            grown = max(2 * capacity, self._size + incoming)
            for key, array in self._arrays.items():
                bigger = np.empty((grown, *array.shape[1:]), dtype=array.dtype)
                bigger[: self._size] = array[: self._size]
                self._arrays[key] = bigger
        for key, array in self._arrays.items():
            array[self._size : self._size + incoming] = examples[key]
        self._size += incoming

    def pop(self) -> dict[str, np.ndarray]:
        """`batch_size` random examples, removed from the buffer."""
        if self._size < self.batch_size:
            raise ValueError(f"the buffer holds {self._size} examples, fewer than batch_size={self.batch_size}")
        chosen = self.rng.choice(self._size, size=self.batch_size, replace=False)
        batch = {key: array[chosen] for key, array in self._arrays.items()}
        # Move the tail examples that were not chosen into the chosen slots below the new end.
        keep = self._size - self.batch_size
        holes = chosen[chosen < keep]
        tail = np.setdiff1d(np.arange(keep, self._size), chosen, assume_unique=True)
        for array in self._arrays.values():
            array[holes] = array[tail]
        self._size = keep
        return batch


def iter_examples(
    batches: Iterable[dict], batch_size: int, rng: np.random.Generator, buffer_size: int = 4096
) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size shuffled example batches from an iterable of model batches.

    Batches are drawn from a buffer of at least `buffer_size` examples while input lasts, then
    the remainder is drained; a final remainder smaller than `batch_size` is dropped."""
    buffer = ShuffleBuffer(batch_size, rng)
    for model_batch in batches:
        buffer.add(explode(model_batch))
        while len(buffer) >= max(buffer_size, batch_size) + batch_size:
            yield buffer.pop()
    while len(buffer) >= batch_size:
        yield buffer.pop()


def iter_examples_in_passes(
    batches: Iterator[dict], pass_models: int, batch_size: int, rng: np.random.Generator, buffer_size: int = 4096
) -> Iterator[dict[str, np.ndarray]]:
    """iter_examples over an endless source that repeats passes of `pass_models` models, with the buffer
    capped at one pass less a batch: the first batch comes at the end of the first pass, never after a
    second read of the source (for a Ray Data shard, every pass is a new read of the files)."""
    first = next(batches)
    pass_examples = pass_models * first["int"].shape[1]  # models x conditions per model
    buffer_size = min(buffer_size, max(batch_size, pass_examples - batch_size))
    yield from iter_examples(itertools.chain([first], batches), batch_size, rng, buffer_size)
