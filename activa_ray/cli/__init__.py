"""The console command: `activa COMMAND [ARGS...]`, installed by `pip install` ([project.scripts]).

Each command is a module here with a `main(argv) -> exit status`; this package and jobs/*.py are the
only places that read argv. `python jobs/COMMAND.py ARGS` (and `ray job submit -- python jobs/...`)
runs the same `main`. A command loads only what it needs once its arguments are read, so a typo or
`--help` answers at once, before torch or Ray start.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train ACTIVA with Ray Train (rerun with the same --out to resume)",
    "generate": "simulate causal models into Parquet shards with Ray",
    "evaluate": "score an exported model against baselines and the noise floor (or on a real table)",
    "tune": "sweep hyperparameters with Ray Tune (rerun with the same --out to resume)",
    "predict": "predict an interventional distribution from your observational table",
    "experiment": "one paper experiment end to end: generate, train, evaluate",
    "ship": "put a trained model in the package under a name",
    "curve": "draw a learning curve from training runs' metrics.jsonl",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(["usage: activa COMMAND [ARGS...]   (activa COMMAND --help for its arguments)", "", *lines])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"activa: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # The chosen command's module only: each imports what its job needs (see the module docstring).
    return importlib.import_module(f"activa_ray.cli.{name}").main(rest)
