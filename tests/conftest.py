"""Shared fixtures: one local Ray instance for the whole test session, the jobs/*.py scripts (each runs
the `main` of its command in activa_ray/cli) as modules, one torch thread for tiny models."""

import importlib.util
from pathlib import Path

import pytest
import torch

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def _load_job(name: str):
    """jobs/<name>.py as a module (jobs/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_job", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_job():
    """A function: load_job("predict") is jobs/predict.py as a module, its `main(argv)` the CLI."""
    return _load_job


@pytest.fixture
def one_thread():
    """For tiny models: one torch thread is faster, and immune to oversubscription on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 4 logical CPUs (Train workers and Ray Data tasks both need some), started
    once, shut down at the end of the session.

    The dashboard stays on: Ray Train's placement-group cleaner asks the State API (served by the
    dashboard) whether a controller is gone; without it, trials that Tune's ASHA stops keep their
    CPUs reserved and later trials wait forever for resources.
    """
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=True)
    yield ray
    ray.shutdown()
