"""Shared fixtures: one local Ray instance for the whole test session."""

import pytest


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
