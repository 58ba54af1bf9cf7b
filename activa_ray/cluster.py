"""Which Ray to use: the cluster named by RAY_ADDRESS (set by `ray job submit`), else a fresh local one."""

from __future__ import annotations

import os


def connect_or_start(num_cpus: int | None = None, **local_options) -> bool:
    """Initialise Ray unless it already is; return True when this call started a local instance.

    Without RAY_ADDRESS a fresh local instance is started even when a `ray start` cluster runs on
    this machine (RAY_ADDRESS=auto uses that one). A local instance gets at least 4 logical CPUs:
    on a 2-core machine, two training workers plus Ray Data tasks deadlock on 2 (shared notes).
    `local_options` (e.g. object_store_memory) apply only to a local start.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return False
    ray.init(address="local", num_cpus=num_cpus or max(4, os.cpu_count() or 1), **local_options)
    return True
