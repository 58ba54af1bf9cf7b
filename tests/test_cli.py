"""The console command `activa` (activa_ray/cli): the same jobs as jobs/*.py, one line on a bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from activa_ray.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
ACTIVA = Path(sys.executable).parent / "activa"  # where pip installs the console script


def test_every_command_has_a_job_script_that_runs_the_same_main(load_job):
    for name in COMMANDS:
        assert load_job(name).main.__module__ == f"activa_ray.cli.{name}"
    assert sorted(p.stem for p in (REPO / "jobs").glob("*.py")) == sorted(COMMANDS)


def test_no_command_or_an_unknown_one_exits_2_naming_the_commands(capsys):
    assert main([]) == 2
    assert "usage: activa COMMAND" in capsys.readouterr().err
    assert main(["trian"]) == 2
    assert capsys.readouterr().err == f"activa: unknown command 'trian'; expected one of {', '.join(COMMANDS)}\n"
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert all(f"  {name} " in shown for name in COMMANDS)


@pytest.mark.skipif(not ACTIVA.is_file(), reason="the package is not installed with its console script")
def test_the_installed_command_refuses_a_bad_value_in_one_line_at_once(tmp_path):
    done = subprocess.run([str(ACTIVA), "train", "train.batch_size=-3"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "error: train.batch_size=-3: must be >= 1\n")
    assert list(tmp_path.iterdir()) == []
