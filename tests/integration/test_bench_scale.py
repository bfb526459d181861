"""The synthetic logs, the scale benchmark's smallest sizes and the whole-pipeline benchmark on a tiny log
(fresh processes, a few seconds each)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillrec.benchmarks import pipeline
from distillrec.benchmarks.scale import STAGES, check_arguments, growth_exponent, merge, merge_groups, run
from distillrec.benchmarks.synthetic import ML20M, Shape, cached_log, generate, shape_for, write_log
from distillrec.commands.common import counts
from training.config import DataConfig
from training.data import load_dataset
from training.errors import DistillrecError


def test_shapes_run_from_movielens_100k_to_20m():
    assert (shape_for(100_000).n_users, shape_for(100_000).n_items) == (943, 1682)
    big = shape_for(20_000_000)
    assert (big.n_users, big.n_items) == ML20M[:2]
    assert shape_for(2_000_000, wide=True).n_items == 1_000_000


def test_logs_are_seeded_power_laws_and_read_by_the_user_reader(tmp_path):
    shape = Shape("t", 300, 2000, 20_000)
    a, b = generate(shape, seed=1), generate(shape, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    users, items, _ = a
    counts = np.sort(np.bincount(items, minlength=2000))[::-1]
    assert counts[:20].sum() > 0.1 * counts.sum()  # the top 1 % of items hold over 10 % of the interactions
    assert counts[0] > 20 * np.median(counts)  # and a long tail
    assert np.bincount(users).min() >= 3
    assert len(np.unique(users * 2000 + items)) == len(users) == 20_000  # as many distinct pairs as asked for
    written = write_log(shape, tmp_path / "log.parquet", seed=1)
    ds = load_dataset(DataConfig(source="file", path=tmp_path / "log.parquet", timestamp_col="ts"))
    assert ds.train.nnz + ds.valid.nnz + ds.test.nnz == written["interactions"] == len(users)


def test_growth_exponent_is_the_log_log_slope():
    assert growth_exponent([1e5, 1e6], [2.0, 20.0]) == pytest.approx(1.0)
    assert growth_exponent([1e5, 1e6], [2.0, 200.0]) == pytest.approx(2.0)
    assert growth_exponent([1e5], [2.0]) is None


def test_small_sizes_run_every_requested_stage_in_fresh_processes(tmp_path):
    report = run(tmp_path, [4000, 8000], [], ["data", "student", "eval"], timeout=300, requests=50)
    assert [r["size"] for r in report["sizes"]] == ["4k", "8k"]
    for r in report["sizes"]:
        for stage in ("data", "student", "eval"):
            row = r["stages"][stage]
            assert "error" not in row, row
            assert row["seconds"] > 0 and row["peak_rss_mib"] > 50
        assert r["stages"]["student"]["engine"] == "fused"
        assert r["stages"]["student"]["pairs"] == r["stages"]["student"]["train_interactions"] * 4  # the shipped student: 4 negatives
    assert set(report["exponents"]) == {"data", "student", "eval"}
    assert json.loads((tmp_path / "scale.json").read_text())["command"].startswith("distillrec bench scale --sizes 4000,8000")
    assert "| student |" in (tmp_path / "scale.md").read_text()


def test_epochs_option_times_the_last_of_fewer_epochs(tmp_path):
    report = run(tmp_path, [4000], [], ["teacher", "de"], timeout=300, requests=50, epochs=2)
    for stage in ("teacher", "de"):
        row = report["sizes"][0]["stages"][stage]
        assert "error" not in row, row
        assert row["epochs"] == 2 and len(row["epoch_cpu_seconds"]) == 2 and row["seconds"] == row["epoch_cpu_seconds"][1]
    assert " --epochs 2 " in report["command"]
    assert "Timed with fewer than 3 epochs (the last one reported): 4k teacher, 4k de" in (tmp_path / "scale.md").read_text()


def test_runs_the_benchmark_cannot_do_are_refused_naming_the_option():
    with pytest.raises(DistillrecError, match="--epochs 1: .* use --epochs 2"):
        check_arguments([4000], [], ["student"], 1)
    with pytest.raises(DistillrecError, match="unknown stage 'foo'; the stages are data, teacher"):
        check_arguments([4000], [], ["student", "foo"], 3)
    with pytest.raises(DistillrecError, match="name no size"):
        check_arguments([], [], ["student"], 3)
    with pytest.raises(DistillrecError, match="size 500: .* at least 1,000"):
        check_arguments([4000], [500], ["student"], 3)
    check_arguments([1000], [], ["student-implicit"], 2)  # the smallest log, an optional stage
    assert counts(" 100000, 1e6,", "--sizes", "interaction count") == [100_000, 1_000_000]
    for bad in ("abc", "1.5", "nan", "inf"):
        with pytest.raises(DistillrecError, match=f"--wide: '{bad}' is not a whole interaction count"):
            counts(f"1000,{bad}", "--wide", "interaction count")


def _scale_json(folder, seconds, rss=100.0):
    """A scale.json as a run of the teacher stage at two sizes writes it."""
    sizes = [
        {
            "size": name,
            "wide": False,
            "asked": n,
            "interactions": n,
            "users": 10,
            "items": 20,
            "stages": {"teacher": {"stage": "teacher", "seconds": t, "peak_rss_mib": rss}},
        }
        for (name, n), t in zip((("1k", 1000), ("10k", 10000)), seconds, strict=True)
    ]
    folder.mkdir()
    (folder / "scale.json").write_text(json.dumps({"sizes": sizes}))
    return str(folder)


def test_merge_takes_each_cell_of_repeated_runs_from_the_run_with_the_median_time(tmp_path):
    once = _scale_json(tmp_path / "once", [5.0, 50.0])  # an earlier group: the repeated runs win its stage
    runs = [_scale_json(tmp_path / f"run{k}", t, rss) for k, (t, rss) in enumerate((([1.0, 12.0], 100.0), ([3.0, 10.0], 200.0), ([2.0, 30.0], 300.0)))]
    rep = merge(merge_groups(f"{once},{'+'.join(runs)}"), tmp_path / "out")
    cells = [entry["stages"]["teacher"] for entry in rep["sizes"]]
    assert [c["seconds"] for c in cells] == [2.0, 12.0]
    assert [c["peak_rss_mib"] for c in cells] == [300.0, 100.0]  # the whole cell of the median run
    assert [c["runs_seconds"] for c in cells] == [[1.0, 3.0, 2.0], [12.0, 10.0, 30.0]]
    assert rep["exponents"]["teacher"] == pytest.approx(growth_exponent([1000, 10000], [2.0, 12.0]))
    assert "teacher (3 runs; their own exponents 1.08, 0.52, 1.18)" in (tmp_path / "out" / "scale.md").read_text()
    assert rep["command"] == f"distillrec bench scale --merge {once},{'+'.join(runs)} --out {tmp_path / 'out'}"
    single = merge(merge_groups(once), tmp_path / "single")
    assert single["sizes"][0]["stages"]["teacher"] == {"stage": "teacher", "seconds": 5.0, "peak_rss_mib": 100.0}
    assert "Medians of repeated runs" not in (tmp_path / "single" / "scale.md").read_text()
    with pytest.raises(DistillrecError, match="missing holds no scale.json"):
        merge(merge_groups(f"{once}+{tmp_path / 'missing'}"), tmp_path / "bad")


def test_the_implicit_reference_stage_runs_only_when_asked_for(tmp_path):
    pytest.importorskip("implicit")  # the optional peers extra
    report = run(tmp_path, [4000], [], ["student", "student-implicit"], timeout=300, requests=50)
    entry = report["sizes"][0]
    row = entry["stages"]["student-implicit"]
    assert "error" not in row, row
    train = entry["stages"]["student"]["train_interactions"]
    assert 0 < row["pairs"] <= train  # one sampled pair per interaction, less those whose negative the user has
    assert row["epochs"] == 3 and row["seconds"] == min(row["epoch_cpu_seconds"][1:])
    table = (tmp_path / "scale.md").read_text()
    assert "| student-implicit |" in table and "implicit's BPR epoch, training pairs per CPU second on one thread: 4k:" in table
    assert "student-implicit" not in STAGES  # not part of a default run


def test_cached_logs_are_written_once_and_linked(tmp_path):
    shape = Shape("c", 50, 80, 1000)
    first = cached_log(shape, tmp_path / "a" / "log.parquet", seed=2, cache=tmp_path / "cache")
    stamp = (tmp_path / "cache" / "c-seed2" / "log.parquet").stat().st_mtime_ns
    second = cached_log(shape, tmp_path / "b" / "log.parquet", seed=2, cache=tmp_path / "cache")
    assert (tmp_path / "cache" / "c-seed2" / "log.parquet").stat().st_mtime_ns == stamp
    assert first == second and (tmp_path / "b" / "log.parquet").resolve() == (tmp_path / "cache" / "c-seed2" / "log.parquet")


def test_the_pipeline_refuses_a_log_or_epochs_it_cannot_run_before_any_work(tmp_path):
    with pytest.raises(DistillrecError, match="--size 10: .* at least 1,000"):
        pipeline.run(tmp_path / "a", 10, teacher_epochs=2, student_epochs=1, cache=None, timeout=300, requests=20)
    with pytest.raises(DistillrecError, match="--student-epochs 0: train at least 1 epoch"):
        pipeline.run(tmp_path / "b", 6000, teacher_epochs=2, student_epochs=0, cache=None, timeout=300, requests=20)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_pipeline_runs_every_step_on_a_tiny_log(tmp_path):
    rep = pipeline.run(tmp_path, 6000, teacher_epochs=2, student_epochs=1, cache=None, timeout=300, requests=20)
    steps = rep["steps"]
    assert list(steps) == list(pipeline.STEPS) and all("error" not in r for r in steps.values()), steps
    assert steps["teacher"]["epochs"] == 2 and steps["teacher"]["engine"] == "fused"
    assert steps["student"]["epochs"] == 1 and steps["student"]["engine"] == "torch"  # RRD needs autograd
    assert 0 < steps["student"]["test_ndcg_at_10"] <= 1 and steps["student"]["test_users"] == steps["data"]["users"]
    assert steps["serve"]["flat_p50_ms"] > 0
    assert rep["total_seconds"] == pytest.approx(sum(r["process_seconds"] for r in steps.values()))
    assert "| **total** |" in (tmp_path / "pipeline.md").read_text()
    again = pipeline.run(tmp_path, 6000, teacher_epochs=2, student_epochs=1, cache=None, timeout=300, requests=20, resume=True)
    assert again["steps"] == steps and again["resumed"] == sorted(pipeline.STEPS)  # nothing left to run
