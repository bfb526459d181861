"""How many threads torch may use: the CPUs this process can actually run on, not the host's.

``os.cpu_count()`` (and torch's default) counts every core of the host, also inside a container or a
Kubernetes pod whose CPU limit is one or two cores, and on a shared machine. More threads than the
CPUs available make OpenMP threads wait for each other: an epoch then runs several times slower
than with fewer threads. Here the default is the smaller of the process's CPU affinity and its
cgroup CPU quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us / cpu.cfs_period_us`` in v1), and
:class:`ThreadTuner` then times the run's first batches at that count and at fewer threads and keeps
the fastest.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
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


def candidate_counts(most: int) -> list[int]:
    """The thread counts worth timing: ``most``, then halved down to one (8 → 8, 4, 2, 1)."""
    counts = [most]
    while counts[-1] > 1:
        counts.append(counts[-1] // 2)
    return counts


class ThreadTuner:
    """Picks torch's thread count by timing the run's own first batches at each candidate count.

    More threads are not always faster: on a small or busy machine the batches of a small model
    finish sooner on one thread, whose work the others only slow down by waking up and waiting.
    The tuner trains ``rounds`` rounds; in each, every candidate count (``most``, halved down to
    one) trains one unmeasured batch and then ``measure`` timed ones. It then keeps the fewest
    threads whose median seconds per batch is within ``slack`` of the fastest. The batches are the
    run's ordinary training batches, so nothing is trained twice; only their speed differs.

    The trainer calls :meth:`before_batch` at the start of every batch and :meth:`pause` when an
    epoch ends (the time until the next batch is not a batch's). ``set_threads`` is
    ``torch.set_num_threads``; ``clock`` a monotonic clock in seconds.
    """

    def __init__(
        self,
        most: int,
        set_threads: Callable[[int], None],
        rounds: int = 3,
        measure: int = 4,
        slack: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.candidates = candidate_counts(most)
        self.set_threads, self.clock, self.slack = set_threads, clock, slack
        # one entry per batch of the tuning: (thread count, whether the batch is timed)
        self._plan = [(n, i > 0) for _ in range(rounds) for n in self.candidates for i in range(measure + 1)]
        self.seconds: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.chosen: int | None = most if len(self.candidates) == 1 else None
        self._current: tuple[int, bool] | None = None
        self._started: float | None = None
        set_threads(most)

    @property
    def threads(self) -> int:
        """The thread count in use now."""
        if self.chosen is not None:
            return self.chosen
        return self._current[0] if self._current else self.candidates[0]

    def before_batch(self) -> None:
        """Records the batch that just ended and sets the thread count of the next one."""
        if self.chosen is not None:
            return
        self._record()
        if not self._plan:
            self._choose()
            return
        previous = self.threads
        self._current = self._plan.pop(0)
        if self._current[0] != previous:
            self.set_threads(self._current[0])
        self._started = self.clock()

    def pause(self) -> None:
        """The epoch's batches are over: the last one is recorded, the time until the next batch is not."""
        self._record()
        self._started = None

    def _record(self) -> None:
        """Adds the batch that just ended to its count's timings when the plan times it."""
        if self._current is not None and self._current[1] and self._started is not None:
            self.seconds[self._current[0]].append(self.clock() - self._started)

    def _choose(self) -> None:
        medians = {n: statistics.median(s) for n, s in self.seconds.items() if s}
        fastest = min(medians.values())
        previous = self.threads
        self.chosen = min(n for n, m in medians.items() if m <= fastest * (1 + self.slack))
        if self.chosen != previous:
            self.set_threads(self.chosen)

    def report(self) -> dict:
        """The choice and the median milliseconds per batch of each candidate (for result.json)."""
        return {
            "chosen": self.chosen,
            "ms_per_batch": {str(n): round(1000 * statistics.median(s), 3) for n, s in self.seconds.items() if s},
        }
