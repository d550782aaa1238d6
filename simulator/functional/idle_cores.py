"""Whether the CPUs this process may run on have a core to spare, measured.

`--threads auto` (the functional model's default) splits a large tensor-core tile over every
numba thread only while the other processes on the machine leave a core idle. On a shared
machine a fork-join tile waits for its slowest thread, and a thread that shares a core with
another job waits for that job's time slice: two threads then made the step several times
slower (docs/functional.md, "Speed"). So the choice follows what the other processes use, read
from the kernel's counters over a short window; it changes the speed only, never a result.

Linux only (`/proc/stat`); elsewhere, or where it cannot be read, there is no measurement and
the tiles stay on one thread. A container's CPU quota (cgroup `cpu.max`, or v1's
`cpu.cfs_quota_us`) below the thread count also keeps them on one: the waiting threads of a
parallel launch would spend the quota.
"""

from __future__ import annotations

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
    """Decides, at most once per `window_s`, whether other processes leave a core idle.

    Other processes' load = (busy CPU-seconds of the allowed CPUs - this process's CPU-seconds)
    / elapsed seconds. The answer is yes while that is below `spare_below` cores and this
    process itself uses no more cores than its tiles explain (another busy thread of ours, a
    Dask worker say, counts as load too). Until the first window has passed it is no; under a
    CPU quota below the thread count it is always no.
    """

    def __init__(
        self,
        window_s: float = 0.2,
        spare_below: float = 0.3,
        sampler: Callable[[], CpuSample | None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        quota: float | Literal["cgroup"] | None = "cgroup",
    ) -> None:
        cpus = _allowed_cpus()
        self.quota = cpu_quota() if quota == "cgroup" else quota
        self.window_s = window_s
        self.spare_below = spare_below
        self._sampler = sampler or (lambda: read_sample(cpus))
        self._clock = clock
        self._last: CpuSample | None = None
        self._spare = False
        self._lock = threading.Lock()

    def spare(self, threads: int) -> bool:
        """True while a core is idle for a tile on `threads` threads (the answer of the
        window before: our own threads used up to `threads` cores while it was yes)."""
        if self.quota is not None and self.quota < threads:
            return False
        if not self._lock.acquire(blocking=False):
            return self._spare  # another thread is measuring
        try:
            now = self._clock()
            if self._last is not None and now - self._last.wall_s < self.window_s:
                return self._spare
            cur = self._sampler()
            if cur is None:
                self._last, self._spare = None, False
                return False
            if self._last is not None:
                dt = cur.wall_s - self._last.wall_s
                own = (cur.own_s - self._last.own_s) / dt
                others = (cur.busy_s - self._last.busy_s) / dt - own
                ours = threads if self._spare else 1
                self._spare = others < self.spare_below and own < ours + self.spare_below
            self._last = cur
            return self._spare
        finally:
            self._lock.release()
