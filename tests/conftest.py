"""Shared fixtures: one local Ray instance for the whole test session."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 4 logical CPUs (Train workers and Ray Data tasks both need some),
    started once, shut down at the end of the session."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False)
    yield ray
    ray.shutdown()
