"""Thread defaults from the CPUs a process may really use (affinity, cgroup quota)."""

from __future__ import annotations

import json
import os

import pytest

from training.threads import ThreadTuner, available_cpus, candidate_counts, cgroup_cpu_limit, use_passive_wait


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


def _tune(most: int, ms_per_batch: dict[int, float], epochs: int = 6, batches: int = 10, **kw):
    """Drives a tuner through ``epochs`` epochs of ``batches`` batches whose duration depends on the thread count."""
    now, calls = [0.0], []
    tuner = ThreadTuner(most, calls.append, clock=lambda: now[0], **kw)
    used = []
    for _ in range(epochs):
        for _ in range(batches):
            tuner.before_batch()
            used.append(tuner.threads)
            now[0] += ms_per_batch[tuner.threads] / 1000
        tuner.pause()
        now[0] += 100.0  # evaluation between epochs: never counted as a batch
    return tuner, calls, used


def test_candidates_halve_down_to_one():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [2, 1]
    assert candidate_counts(6) == [6, 3, 1]
    assert candidate_counts(16) == [16, 8, 4, 2, 1]


@pytest.mark.parametrize(
    ("speeds", "chosen"), [({2: 5.0, 1: 2.7}, 1), ({2: 2.0, 1: 3.9}, 2), ({2: 2.9, 1: 3.0}, 1), ({4: 1.0, 2: 1.6, 1: 3.0}, 4), ({4: 2.0, 2: 1.5, 1: 1.56}, 1)]
)
def test_the_tuner_keeps_the_fewest_threads_within_five_percent_of_the_fastest(speeds, chosen):
    tuner, calls, used = _tune(max(speeds), speeds)
    assert tuner.chosen == chosen
    assert tuner.report() == {"chosen": chosen, "ms_per_batch": {str(n): pytest.approx(ms) for n, ms in speeds.items()}}
    plan = 3 * len(speeds) * 5  # rounds × candidates × (one untimed + four timed batches)
    assert set(used[:plan]) == set(speeds) and set(used[plan:]) == {chosen}
    assert calls[0] == max(speeds) and calls[-1] == chosen
    assert all(a != b for a, b in zip(calls, calls[1:]))  # torch is told only when the count changes


def test_a_run_shorter_than_the_tuning_keeps_timing_and_one_cpu_needs_none():
    tuner, _, used = _tune(2, {2: 1.0, 1: 2.0}, epochs=1, batches=5)
    assert tuner.chosen is None and used == [2] * 5
    single, calls, used = _tune(1, {1: 1.0})
    assert single.chosen == 1 and calls == [1] and set(used) == {1}


def test_a_run_records_its_thread_count(tiny_dataset, tmp_path, capsys):
    from training.config import config_from_dict
    from training.runs import train_run

    base = {"name": "threads", "model": {"family": "mf", "dim": 4}, "eval": {"ks": [5]}}
    auto = train_run(config_from_dict({**base, "train": {"epochs": 8, "batch_size": 16, "progress": False}}), tmp_path / "auto", dataset=tiny_dataset)
    err = capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()]
    if available_cpus() > 1:
        assert "timed on the first batches" in err and f"{auto['threads']} torch thread(s) from here on" in err
        assert auto["thread_tuning"]["chosen"] == auto["threads"] == records[-1]["threads"]
        assert set(auto["thread_tuning"]["ms_per_batch"]) == {str(n) for n in candidate_counts(available_cpus())}
    else:
        assert auto["threads"] == 1 and "thread_tuning" not in auto
    one = train_run(config_from_dict({**base, "train": {"epochs": 1, "progress": False, "threads": 1}}), tmp_path / "one", dataset=tiny_dataset)
    assert one["threads"] == 1 and "thread_tuning" not in one
    assert "1 torch thread(s) (train.threads)" in capsys.readouterr().err
