"""Which Ray to use: the cluster named by RAY_ADDRESS (set by `ray job submit`), else a fresh local one."""

from __future__ import annotations

import logging
import os

import ray


def connect_or_start(num_cpus: int | None = None, log_to_driver: bool = True, **local_options) -> bool:
    """Initialise Ray unless it already is; return True when this call started a local instance.

    Without RAY_ADDRESS a fresh local instance is started even when a `ray start` cluster runs on
    this machine (RAY_ADDRESS=auto uses that one). A local instance gets at least 4 logical CPUs:
    on a 2-core machine, two training workers plus Ray Data tasks deadlock on 2 (shared notes).
    `local_options` (e.g. object_store_memory) apply only to a local start. log_to_driver=False keeps
    the workers' own log lines (Ray Train's per-report dumps) in Ray's log files instead of the console,
    and the driver's Ray logger at ERROR (the token-auth notice and the dashboard URL are not news).
    """
    if ray.is_initialized():
        return False
    level = logging.INFO if log_to_driver else logging.ERROR
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=log_to_driver, logging_level=level)
        return False
    ray.init(address="local", num_cpus=num_cpus or max(4, os.cpu_count() or 1), log_to_driver=log_to_driver,
             logging_level=level, **local_options)
    return True
