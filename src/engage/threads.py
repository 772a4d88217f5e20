"""How many threads a step may use: its share of the CPUs it was given, from one setting.

xgboost, scikit-learn's histogram boosting and the BLAS libraries each start one thread per CPU they
see, and they see the whole machine, not the container's CPU limit. Two such steps at once on two
cores ran 10-16x slower than one alone (measured on these machines). So each step caps its threads,
before those libraries load, to

* ``ENGAGE_THREADS`` when set (> 0), else
* the CPUs this process may use (its CPU affinity and, in a container, the cgroup's CPU quota: a pod's
  ``limits.cpu``) divided by ``ENGAGE_PARALLEL_STEPS`` (default 1: the steps that run beside each other
  on the same CPUs), at least 1.

Variables the user set himself (``OMP_NUM_THREADS`` …) are left as they are.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["THREAD_VARIABLES", "available_cpus", "cap_threads", "step_threads"]

#: the variables the OpenMP and BLAS runtimes read at start-up
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    """CPUs this process may use: its affinity, and at most the cgroup's quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, quota) if quota is not None else cpus)


def _cgroup_quota() -> int | None:
    try:  # cgroup v2: "max 100000" or "150000 100000"
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if limit == "max" else math.ceil(int(limit) / int(period))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else math.ceil(quota_us / period_us)
    except (OSError, ValueError):
        return None


def step_threads() -> int:
    """The threads one step may use (see the module's description)."""
    from engage.errors import ConfigError

    def number(name: str, default: int) -> int:
        text = os.environ.get(name, "").strip()
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected a whole number") from None
        if value < 0:
            raise ConfigError(f"{name}={value}: must not be negative")
        return value

    threads = number("ENGAGE_THREADS", 0)
    if threads:
        return threads
    return max(1, available_cpus() // max(1, number("ENGAGE_PARALLEL_STEPS", 1)))


def cap_threads() -> int:
    """Set the thread variables this process's numeric libraries read (unless already set) to
    :func:`step_threads`; returns the number. Call it before xgboost, sklearn or numpy's BLAS start."""
    threads = step_threads()
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    return threads
