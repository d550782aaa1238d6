"""How many of the CPUs this process may run on are idle, measured.

`--threads auto` (the functional model's default) splits a large tensor-core tile over as
many numba threads as the other processes on the machine leave cores idle. On a shared
machine a fork-join tile waits for its slowest thread, and a thread that shares a core with
another job waits for that job's time slice: two threads then made the step several times
slower (docs/functional.md, "Speed"). So the choice follows what the other processes use, read
from the kernel's counters over a short window; it changes the speed only, never a result.

Linux only (`/proc/stat`); elsewhere, or where it cannot be read, there is no measurement and
the tiles stay on one thread. A container's CPU quota (cgroup `cpu.max`, or v1's
`cpu.cfs_quota_us`) caps the threads too: the waiting threads of a parallel launch would
spend the quota.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CpuSample:
    """Counters at one moment: wall clock (s, `time.perf_counter`), busy time of the allowed
    CPUs (CPU-seconds, every process), this process's CPU time (CPU-seconds, all threads)."""

    wall_s: float
    busy_s: float
    own_s: float


def _allowed_cpus() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return frozenset()


def read_sample(cpus: frozenset[int], stat_path: str = "/proc/stat") -> CpuSample | None:
    """Counters now, or None where `/proc/stat` cannot be read or names none of `cpus`."""
    try:
        with open(stat_path) as f:
            lines = f.readlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0
    seen = False
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        try:
            fields = [int(v) for v in rest.split()[:8]]
        except ValueError:
            return None
        if len(fields) < 5:
            return None
        busy += sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        seen = True
    if not seen:
        return None
    t = os.times()
    return CpuSample(time.perf_counter(), busy / tick, t.user + t.system)


def cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs the cgroup quota allows (v2 `cpu.max`, v1 `cpu/cpu.cfs_quota_us` over
    `cpu.cfs_period_us`), or None where there is none or it cannot be read."""
    for path, period_path in (
        (f"{root}/cpu.max", None),
        (f"{root}/cpu/cpu.cfs_quota_us", f"{root}/cpu/cpu.cfs_period_us"),
    ):
        try:
            with open(path) as f:
                fields = f.read().split()
            if period_path is not None:
                with open(period_path) as f:
                    fields = fields[:1] + f.read().split()[:1]
        except OSError:
            continue
        if len(fields) < 2 or fields[0] in ("max", "-1"):
            return None
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


class IdleCores:
    """Decides, at most once per `window_s`, how many threads a tile may use: as many as the
    CPUs this process may run on that other processes leave idle.

    Other processes' load = (busy CPU-seconds of the allowed CPUs - this process's CPU-seconds)
    / elapsed seconds, plus what this process used beyond what its tiles explain (another busy
    thread of ours, a Dask worker say). A CPU counts as taken from `spare_below` of a core's
    load on: threads = CPUs - ceil(load - spare_below), at least 1, at most the CPUs and the
    cgroup's CPU quota. Until the first window has passed, and without counters, it is 1.
    """

    def __init__(
        self,
        window_s: float = 0.2,
        spare_below: float = 0.3,
        sampler: Callable[[], CpuSample | None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        quota: float | Literal["cgroup"] | None = "cgroup",
        cpus: frozenset[int] | None = None,
    ) -> None:
        allowed = _allowed_cpus() if cpus is None else cpus
        self.cpus = len(allowed)
        self.quota = cpu_quota() if quota == "cgroup" else quota
        self.window_s = window_s
        self.spare_below = spare_below
        self._sampler = sampler or (lambda: read_sample(allowed))
        self._clock = clock
        self._last: CpuSample | None = None
        self._threads = 1
        self._lock = threading.Lock()

    def threads(self, most: int) -> int:
        """Threads (1..most) for a tile now: the answer of the last window, in which our own
        tiles used up to that many cores."""
        cap = min(most, self.cpus)
        if self.quota is not None:
            cap = min(cap, int(self.quota))
        if cap <= 1:
            return 1
        if not self._lock.acquire(blocking=False):
            return min(self._threads, cap)  # another thread is measuring
        try:
            now = self._clock()
            if self._last is not None and now - self._last.wall_s < self.window_s:
                return min(self._threads, cap)
            cur = self._sampler()
            if cur is None:
                self._last, self._threads = None, 1
                return 1
            last = self._last
            if last is not None and cur.wall_s > last.wall_s:
                dt = cur.wall_s - last.wall_s
                own = (cur.own_s - last.own_s) / dt
                others = (cur.busy_s - last.busy_s) / dt - own
                load = others + max(0.0, own - self._threads)  # our other threads count
                taken = max(0, math.ceil(load - self.spare_below))
                self._threads = max(1, min(cap, self.cpus - taken))
            self._last = cur
            return min(self._threads, cap)
        finally:
            self._lock.release()
