"""Run named benchmarks: `python bench/run.py NAME...` (no name: list them).

Each `bench/bench_*.py` module defines `BENCHES = {name: function}`; a function takes no
arguments and returns a dict of figures. Every result prints as one JSON line
`{"bench": NAME, ...figures}`.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def registry() -> dict:
    sys.path.insert(0, str(HERE))
    benches = {}
    for path in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(path.stem)
        for name, fn in module.BENCHES.items():
            if name in benches:
                raise SystemExit(f"benchmark {name} defined twice ({path.name})")
            benches[name] = fn
    return benches


def main(names: list[str]) -> int:
    benches = registry()
    if not names:
        print("available benchmarks:", " ".join(sorted(benches)))
        return 0
    unknown = [n for n in names if n not in benches]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {sorted(benches)}", file=sys.stderr)
        return 2
    for name in names:
        figures = benches[name]()
        print(json.dumps({"bench": name, **figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
