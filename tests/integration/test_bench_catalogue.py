"""``distillrec bench catalogue`` at a tiny size: the report's fields and logic, never its timings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillrec.benchmarks import catalogue as cb


def test_tiny_run_writes_json_markdown_and_plot(tmp_path):
    from distillrec.cli import main

    out = tmp_path / "bench"
    code = main(
        [
            "bench",
            "catalogue",
            "--sizes",
            "2k",
            "--student-dim",
            "8",
            "--teacher-dim",
            "24",
            "--queries",
            "60",
            "--tune-queries",
            "40",
            "--exact-queries",
            "30",
            "--warmup",
            "5",
            "--repeats",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0  # without --max-p99-ms no timing can fail the run
    report = json.loads((out / "catalogue.json").read_text())
    assert report["benchmark"] == "catalogue"
    assert report["command"].startswith("distillrec bench catalogue --sizes 2000 --student-dim 8 --teacher-dim 24")
    assert {"cpu", "cores", "python", "versions", "load_average"} <= set(report["environment"])
    assert "faiss-cpu" in report["environment"]["versions"]
    rows = report["rows"]
    assert [(r["dim"], r["role"], r["method"]) for r in rows] == [
        (d, role, m) for d, role in ((8, "student"), (24, "teacher")) for m in ("flat", "ivf", "hnsw")
    ]
    for r in rows:
        assert r["n_items"] == 2000 and r["build_s"] >= 0 and r["index_bytes"] > r["n_items"] * r["dim"] * 4 * 0.99
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["cpu_p99_ms"] > 0 and r["p99_ms_first_pass"] > 0
        assert r["timed_queries"] == (30 if r["method"] == "flat" else 60)
        if r["method"] == "flat":
            assert r["recall_at_10"] == 1.0 and r["params"] == {} and r["factory"] == "Flat"
            assert {"items", "users"} == set(r["data_stats"])
        else:
            (param,) = r["params"]
            assert param == {"ivf": "nprobe", "hnsw": "efSearch"}[r["method"]]
            assert r["recall_at_10_tuning"] >= 0.95, "the chosen parameter reaches the target on the tuning queries"
            assert 0 < r["recall_at_10"] <= 1 and r["sweep"][-1][param] == r["params"][param]
            assert [s["recall_at_10"] >= 0.95 for s in r["sweep"]] == [False] * (len(r["sweep"]) - 1) + [True], (
                "the smallest value reaching the target is chosen"
            )
    assert rows[1]["factory"] == f"IVF{cb.default_nlist(2000)},Flat" and rows[2]["factory"] == "HNSW32,Flat"
    h = report["headline"]
    assert h["n_items"] == 2000 and h["within_p99_limit"] is None and h["student"]["method"] in ("ivf", "hnsw")
    assert set(h["speedup_vs_teacher_exact"]) == {"p50_ms", "p99_ms"}
    md = (out / "catalogue.md").read_text()
    assert "| 2,000 | 8 (student) | Flat | exact | 1.000 |" in md and "Hardware: " in md and f"Command: `{report['command']}`" in md
    assert (out / "catalogue.png").stat().st_size > 0 and report["plot"] is True


def test_synthetic_catalogue_is_reproducible_structured_and_chunk_independent():
    a, b = cb.SyntheticCatalogue(3000, 16, seed=1), cb.SyntheticCatalogue(3000, 16, seed=1)
    items_a = np.concatenate(list(a.item_chunks(chunk=1000)))
    assert items_a.shape == (3000, 16) and items_a.dtype == np.float32
    assert np.array_equal(items_a[:1000], next(b.item_chunks(chunk=1000)))
    assert not np.array_equal(a.users(50, stream=0), a.users(50, stream=1))
    mixture, iid = cb.vector_stats(items_a), cb.vector_stats(next(cb.SyntheticCatalogue(3000, 16, 1, cb.DataModel(kind="iid")).item_chunks(3000)))
    # the mixture has the structure of trained embeddings: lower effective rank, a shared direction, spread norms
    assert mixture["effective_rank"] < iid["effective_rank"] and mixture["cos_to_mean"] > 0.15 > abs(iid["cos_to_mean"])
    assert 0.1 < mixture["log_norm_sd"] < 0.3


def test_recall_grids_and_the_exporters_ivf_rule():
    from training.export.index_builder import default_nlist as exporter_nlist

    assert cb.recall_at_k(np.array([[1, 2, 3], [4, 5, -1]]), np.array([[3, 2, 9], [6, 7, 8]])) == pytest.approx(1 / 3)
    assert cb.nprobe_grid(20) == [1, 2, 3, 4, 6, 8, 12, 16, 20]
    for n in (1000, 10_000, 100_000, 1_000_000):
        assert cb.default_nlist(n) == exporter_nlist(n), "the benchmark must measure the IVF that `distillrec export --index ivf` builds"


def _row(role, method, p99, recall, n=1_000_000):
    return {
        "n_items": n,
        "role": role,
        "method": method,
        "factory": method,
        "params": {},
        "recall_at_10": recall,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "p99_ms_first_pass": p99,
        "cpu_p99_ms": p99,
        "index_bytes": 1,
    }


def test_headline_checks_the_p99_limit_only_when_given():
    s = cb.CatalogueSettings(max_p99_ms=1.0)
    exact = [_row("student", "flat", 8.0, 1.0), _row("teacher", "flat", 80.0, 1.0)]
    ok = cb.headline(exact + [_row("student", "ivf", 2.0, 0.97), _row("student", "hnsw", 0.3, 0.96)], s)
    assert ok["within_p99_limit"] is True and ok["student"]["method"] == "hnsw" and ok["speedup_vs_teacher_exact"]["p99_ms"] == pytest.approx(80 / 0.3)
    assert cb.headline(exact + [_row("student", "hnsw", 1.5, 0.96)], s)["within_p99_limit"] is False  # too slow
    assert cb.headline(exact + [_row("student", "hnsw", 0.3, 0.94)], s)["within_p99_limit"] is False  # not accurate enough
    assert cb.headline(exact + [_row("student", "hnsw", 1.5, 0.96)], cb.CatalogueSettings())["within_p99_limit"] is None  # no limit given
    assert "--max-p99-ms 1.0" in cb.command_line(s, "out")


def test_bad_options_are_clear_errors():
    with pytest.raises(cb.BenchmarkError, match="--methods"):
        cb.CatalogueSettings(methods=("flat", "annoy")).check()
    with pytest.raises(cb.BenchmarkError, match="at least 1000 items"):
        cb.CatalogueSettings(sizes=(500,)).check()
    with pytest.raises(cb.BenchmarkError, match="--target-recall"):
        cb.CatalogueSettings(target_recall=1.5).check()
