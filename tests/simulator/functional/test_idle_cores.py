"""`idle_cores`: the measured "is a core idle" answer behind `--threads auto`."""

from simulator.functional.idle_cores import CpuSample, IdleCores, cpu_quota, read_sample


class FakeMachine:
    """Counters that advance by chosen loads: `others` and `own` cores over each step."""

    def __init__(self):
        self.t = self.busy = self.own = 0.0
        self.reads = 0

    def advance(self, seconds: float, others: float, own: float) -> None:
        self.t += seconds
        self.busy += (others + own) * seconds
        self.own += own * seconds

    def sample(self) -> CpuSample:
        self.reads += 1
        return CpuSample(self.t, self.busy, self.own)


def _monitor(m: FakeMachine, cpus: int = 2, quota: float | None = None) -> IdleCores:
    return IdleCores(
        window_s=0.2, spare_below=0.3, sampler=m.sample, clock=lambda: m.t, quota=quota,
        cpus=frozenset(range(cpus)),
    )  # fmt: skip


def test_one_thread_before_the_first_window():
    m = FakeMachine()
    assert _monitor(m).threads(2) == 1


def test_idle_cores_are_used_and_busy_ones_are_not():
    m = FakeMachine()
    idle = _monitor(m)
    idle.threads(2)
    m.advance(0.25, others=0.05, own=1.0)  # our one thread and a daemon's crumbs
    assert idle.threads(2) == 2
    m.advance(0.25, others=1.0, own=1.6)  # a job took the other core while we ran on two
    assert idle.threads(2) == 1
    m.advance(0.25, others=0.35, own=1.0)  # a third of a core taken is taken
    assert idle.threads(2) == 1
    m.advance(0.25, others=0.0, own=1.0)  # it ended
    assert idle.threads(2) == 2


def test_many_cpus_give_the_idle_ones():
    m = FakeMachine()
    idle = _monitor(m, cpus=16)
    idle.threads(16)
    m.advance(0.25, others=5.5, own=1.0)  # 5.5 cores busy elsewhere: 6 taken, 10 left
    assert idle.threads(16) == 10
    assert idle.threads(4) == 4  # never more than asked
    m.advance(0.25, others=0.0, own=10.0)
    assert idle.threads(16) == 16


def test_the_answer_is_kept_within_a_window():
    m = FakeMachine()
    idle = _monitor(m)
    idle.threads(2)
    m.advance(0.25, others=0.0, own=1.0)
    assert idle.threads(2) == 2
    reads = m.reads
    m.advance(0.05, others=1.0, own=1.0)
    assert idle.threads(2) == 2 and m.reads == reads  # no new reading inside the window


def test_another_busy_thread_of_ours_counts_as_load():
    m = FakeMachine()
    idle = _monitor(m)
    idle.threads(2)
    m.advance(0.25, others=0.0, own=1.9)  # on one thread the tiles explain one core, not two
    assert idle.threads(2) == 1
    m.advance(0.25, others=0.0, own=1.0)
    assert idle.threads(2) == 2
    m.advance(0.25, others=0.0, own=1.9)  # on two threads they explain it
    assert idle.threads(2) == 2


def test_no_counters_means_one_thread():
    idle = IdleCores(sampler=lambda: None, clock=lambda: 0.0, quota=None, cpus=frozenset({0, 1}))
    assert idle.threads(2) == 1 and idle.threads(2) == 1


def test_the_cpus_and_the_quota_cap_the_threads():
    m = FakeMachine()
    idle = _monitor(m, cpus=2)
    idle.threads(8)
    m.advance(0.25, others=0.0, own=1.0)
    assert idle.threads(8) == 2  # NUMBA_NUM_THREADS above the CPUs
    m = FakeMachine()
    capped = _monitor(m, cpus=4, quota=1.5)
    capped.threads(4)
    m.advance(0.25, others=0.0, own=1.0)
    assert capped.threads(4) == 1
    assert _monitor(FakeMachine(), cpus=1).threads(4) == 1


def test_read_sample_sums_the_allowed_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  900 0 100 5000 50 0 0 0 0 0\n"
        "cpu0 100 0 50 2500 25 0 0 0 0 0\n"
        "cpu1 800 0 50 2500 25 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    one = read_sample(frozenset({0}), str(stat))
    both = read_sample(frozenset({0, 1}), str(stat))
    assert one is not None and both is not None
    assert both.busy_s > one.busy_s > 0  # idle and iowait are not busy
    assert both.busy_s / one.busy_s == 1000 / 150


def test_unreadable_or_garbled_counters_are_no_sample(tmp_path):
    assert read_sample(frozenset({0}), str(tmp_path / "missing")) is None
    bad = tmp_path / "stat"
    bad.write_text("cpu0 1 2 x 4 5\n")
    assert read_sample(frozenset({0}), str(bad)) is None
    bad.write_text("cpu7 1 2 3 4 5\n")
    assert read_sample(frozenset({0}), str(bad)) is None  # none of ours listed


def test_cpu_quota_reads_cgroup_v2_and_v1(tmp_path):
    assert cpu_quota(str(tmp_path)) is None  # neither file
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(str(tmp_path)) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(str(v1)) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cpu_quota(str(v1)) == 0.5
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("lots\n")
    assert cpu_quota(str(v1)) is None
