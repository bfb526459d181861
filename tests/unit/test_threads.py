"""Thread defaults from the CPUs a process may really use (affinity, cgroup quota)."""

from __future__ import annotations

import os

import pytest

from training.threads import available_cpus, cgroup_cpu_limit, default_threads, other_running_tasks, use_passive_wait


@pytest.mark.parametrize(("content", "limit"), [("max 100000\n", None), ("150000 100000\n", 1.5), ("50000 100000\n", 0.5), ("200000\n", 2.0)])
def test_cgroup_v2_quota(tmp_path, content, limit):
    (tmp_path / "cpu.max").write_text(content)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_cpu_limit(tmp_path) == 3.0


def test_available_cpus_is_the_affinity_capped_by_the_quota_rounded_up(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(affinity + 7) * 100000} 100000\n")
    assert available_cpus(tmp_path) == affinity


def test_passive_wait_is_a_default_the_user_can_override(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    use_passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    use_passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def _stat(tmp_path, *running: int):
    """A /proc/stat whose procs_running reads ``running`` in turn (the last value repeats)."""
    values = iter(running)
    last = [running[-1]]
    path = tmp_path / "stat"

    class Stat(type(path)):
        def read_text(self, *a, **k):
            last[0] = next(values, last[0])
            return f"cpu  1 2 3 4\nprocs_running {last[0]}\nprocs_blocked 0\n"

    return Stat(path)


def test_other_running_tasks_ignores_this_process_and_momentary_bursts(tmp_path):
    assert other_running_tasks(_stat(tmp_path, 1), interval=0) == 0  # only this process
    assert other_running_tasks(_stat(tmp_path, 3), interval=0) == 2
    assert other_running_tasks(_stat(tmp_path, 6, 3, 5), samples=3, interval=0) == 2  # the fewest seen
    assert other_running_tasks(tmp_path / "missing", interval=0) == 0


def test_default_threads_leave_the_cores_other_work_keeps_busy(tmp_path):
    cpus = available_cpus(tmp_path)
    assert default_threads(tmp_path, _stat(tmp_path, 1)) == (cpus, 0)
    assert default_threads(tmp_path, _stat(tmp_path, 1 + cpus)) == (1, cpus)  # at least one thread
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert default_threads(tmp_path, _stat(tmp_path, 2))[0] == max(1, min(cpus, 4) - 1)


def test_a_run_records_its_thread_count(tiny_dataset, tmp_path, capsys, monkeypatch):
    from training import trainer
    from training.config import config_from_dict
    from training.runs import train_run

    monkeypatch.setattr(trainer, "default_threads", lambda: (available_cpus(), 0))  # an idle host
    base = {"name": "threads", "model": {"family": "mf", "dim": 4}, "eval": {"ks": [5]}}
    auto = train_run(config_from_dict({**base, "train": {"epochs": 1, "progress": False}}), tmp_path / "auto", dataset=tiny_dataset)
    assert auto["threads"] == available_cpus() and auto["other_running_tasks_at_start"] == 0
    assert f"{available_cpus()} torch thread(s)" in capsys.readouterr().err
    one = train_run(config_from_dict({**base, "train": {"epochs": 1, "progress": False, "threads": 1}}), tmp_path / "one", dataset=tiny_dataset)
    assert one["threads"] == 1
