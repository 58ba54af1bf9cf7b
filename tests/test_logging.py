"""W&B runs of init_run survive a process killed the way Ray kills a stopped trial's workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wandb_records import logged_values, run_group, wait_for_keys

# A Ray Train worker's stand-in: an offline run, one report, then (on a line from stdin) what Ray's core
# worker does to a force-killed actor: SIGKILL every child process (W&B's service, wandb-core), then itself.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from activa_ray.config import config_from_dict
    from activa_ray.logging import init_run

    cfg = config_from_dict({"name": "killed", "wandb": {"mode": "offline", "group": "g"}})
    run = init_run(cfg, sys.argv[1])
    run.log({"val/elbo": -1.5}, step=4, commit=True)
    print("logged", flush=True)
    sys.stdin.readline()
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            if ppid == me:
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the child processes in /proc")
def test_a_killed_runs_records_are_in_its_file(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "logged"
        [path] = tmp_path.glob("wandb/offline-run-*/run-*.wandb")  # created by init_run
        # W&B's own interval is 15 s: well before it, the run and its report are in the file.
        wait_for_keys([path], {"val/elbo"}, timeout=10)
        proc.stdin.write("die\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == -9  # killed: no finish(), no exit hooks
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert run_group(path) == "g"
    assert logged_values(path)["val/elbo"] == "-1.5"
