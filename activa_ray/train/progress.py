"""Training progress a person can read: one line per report of rank 0, and a closing summary.

The driver follows RUN_DIR/metrics.jsonl (rank 0 appends one record per report) from a thread, so
the same lines appear for a local run and under `ray job submit`, while Ray's own per-report log
lines stay off (`connect_or_start(log_to_driver=False)`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TextIO


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_line(record: dict, total_steps: int) -> str:
    """`step 500/2000  612 ex/s  ETA 2m03s  loss 81.2  | val MMD ACTIVA 0.271 vs baseline 0.607`."""
    step, rate = record["step"], record.get("train/examples_per_s", 0.0)
    parts = [f"step {step}/{total_steps}", f"{rate:,.0f} ex/s"]
    steps_per_s = record.get("train/steps_per_s", 0.0)
    if steps_per_s > 0 and step < total_steps:
        parts.append(f"ETA {duration((total_steps - step) / steps_per_s)}")
    parts.append(f"loss {record['train/loss']:.4g}")
    if record.get("train/nonfinite_grads"):
        parts.append(f"non-finite grads {record['train/nonfinite_grads']}")
    line = "  ".join(parts)
    if record.get("val/step") == step:
        line += f"  | val MMD ACTIVA {record['val/activa_mmd']:.3f} vs baseline {record['val/baseline_mmd']:.3f}"
    return line


class ProgressPrinter:
    """Prints `progress_line` for every new record of a metrics.jsonl while training runs (a context manager)."""

    def __init__(self, metrics_path: Path, total_steps: int, stream: TextIO = sys.stdout, poll_s: float = 0.5):
        self.path, self.total_steps, self.stream, self.poll_s = Path(metrics_path), total_steps, stream, poll_s
        self.offset = self.path.stat().st_size if self.path.is_file() else 0  # a resumed run: only new records
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "ProgressPrinter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self._print_new()

    def _follow(self) -> None:
        while not self.done.wait(self.poll_s):
            self._print_new()

    def _print_new(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path) as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete.encode())
        for line in complete.splitlines():
            print(progress_line(json.loads(line), self.total_steps), file=self.stream, flush=True)


def summary(result: dict, started: float) -> str:
    """The closing lines of a training job: the validation result, where things are, how to predict."""
    lines = [f"trained in {duration(time.perf_counter() - started)}"]
    metrics = result.get("last_record") or {}
    if "val/activa_mmd" in metrics:
        lines.append(
            "validation (held-out models): "
            + ", ".join(f"{name.upper()} ACTIVA {metrics[f'val/activa_{name}']:.3f} vs baseline "
                        f"{metrics[f'val/baseline_{name}']:.3f}" for name in ("mmd", "wsd", "erg"))
        )
    lines.append(f"run directory:  {result['run_dir']}")
    lines.append(f"exported model: {result['export']}")
    lines.extend(f"figure:         {path}" for path in result["figures"])
    lines.append(f"predict with:   ./run predict --model {result['export']} --data YOUR.csv --target COLUMN "
                 f"--value V --out runs/pred")
    return "\n".join(lines)
