"""How many threads torch may use: the CPUs this process can actually run on, not the host's.

``os.cpu_count()`` (and torch's default) counts every core of the host, also inside a container or a
Kubernetes pod whose CPU limit is one or two cores, and on a shared machine. More threads than the
CPUs available make OpenMP threads wait for each other: an epoch then runs several times slower
than with fewer threads. Here the default is the smaller of the process's CPU affinity and its
cgroup CPU quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us / cpu.cfs_period_us`` in v1).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 1.5), or None when there is no quota."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100000)
        quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota = int(quota_file.read_text())
            return None if quota <= 0 else quota / int(period_file.read_text())
    except (OSError, ValueError):  # unreadable or unexpected content: no limit known
        return None
    return None


def available_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup quota (rounded up), at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        n = min(n, math.ceil(limit))
    return max(1, n)


def use_passive_wait() -> None:
    """OpenMP threads sleep instead of spinning while they wait (unless the user chose otherwise).

    Must run before torch is imported: OpenMP reads ``OMP_WAIT_POLICY`` when it starts. Spinning
    threads burn the CPU that the others need on a machine that does anything else.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
