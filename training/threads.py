"""How many threads torch may use: the CPUs this process can actually run on, not the host's.

``os.cpu_count()`` (and torch's default) counts every core of the host, also inside a container or a
Kubernetes pod whose CPU limit is one or two cores, and on a shared machine. More threads than the
CPUs available make OpenMP threads wait for each other: an epoch then runs several times slower
than with fewer threads. Here the default is the smaller of the process's CPU affinity and its
cgroup CPU quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us / cpu.cfs_period_us`` in v1), less
the CPUs that other work keeps busy when training starts (the tasks the kernel reports as running,
other than this one): on a host where other processes already compete for the cores, an epoch with
one thread per remaining core keeps close to its idle time, while threads that share a core with a
busy process wait for each other at every parallel step.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PROC_STAT = Path("/proc/stat")


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


def other_running_tasks(stat: Path = PROC_STAT, samples: int = 5, interval: float = 0.01) -> int:
    """Tasks the kernel reports running (``procs_running`` in /proc/stat, host-wide) besides this
    one: the fewest over ``samples`` reads ``interval`` seconds apart, so that a momentary burst does
    not count; 0 when unknown."""
    seen = []
    for k in range(samples):
        try:
            for line in stat.read_text().splitlines():
                if line.startswith("procs_running"):
                    seen.append(int(line.split()[1]) - 1)  # this process is running while it reads
                    break
        except (OSError, ValueError, IndexError):
            return 0
        if k + 1 < samples:
            time.sleep(interval)
    return max(0, min(seen)) if seen else 0


def default_threads(root: Path = CGROUP, stat: Path = PROC_STAT) -> tuple[int, int]:
    """(threads, busy): the CPUs available to this process (:func:`available_cpus`) less those other
    running tasks keep busy, at least 1; ``busy`` is that count of other running tasks."""
    busy = other_running_tasks(stat)
    return max(1, available_cpus(root) - busy), busy


def use_passive_wait() -> None:
    """OpenMP threads sleep instead of spinning while they wait (unless the user chose otherwise).

    Must run before torch is imported: OpenMP reads ``OMP_WAIT_POLICY`` when it starts. Spinning
    threads burn the CPU that the others need on a machine that does anything else.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
