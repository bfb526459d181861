"""Thread defaults from the CPUs a process may really use (affinity, cgroup quota)."""

from __future__ import annotations

import os

import pytest

from training.threads import available_cpus, cgroup_cpu_limit, use_passive_wait


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


def test_a_run_records_its_thread_count(tiny_dataset, tmp_path, capsys):
    from training.config import config_from_dict
    from training.runs import train_run

    base = {"name": "threads", "model": {"family": "mf", "dim": 4}, "eval": {"ks": [5]}}
    auto = train_run(config_from_dict({**base, "train": {"epochs": 1, "progress": False}}), tmp_path / "auto", dataset=tiny_dataset)
    assert auto["threads"] == available_cpus()
    assert f"{available_cpus()} torch thread(s)" in capsys.readouterr().err
    one = train_run(config_from_dict({**base, "train": {"epochs": 1, "progress": False, "threads": 1}}), tmp_path / "one", dataset=tiny_dataset)
    assert one["threads"] == 1
