"""``distillrec bench pareto`` on the tiny shared bundles: the report's structure and logic, never its timings."""

from __future__ import annotations

import json

import pytest
from svc_support import models_dir

from distillrec.benchmarks import pareto

BUNDLES = ("student", "neumf", "ensemble")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _manifest(name: str) -> dict:
    from service.bundle.artifacts import read_latest

    return json.loads((read_latest(models_dir(*BUNDLES) / name) / "manifest.json").read_text())


def test_every_bundle_gets_a_row_in_json_markdown_and_plot(tmp_path):
    from distillrec.cli import main

    models, out = models_dir(*BUNDLES), tmp_path / "bench"
    code = main(["bench", "pareto", "--models-dir", str(models), "--out", str(out), "--requests", "40", "--rounds", "2", "--warmup", "2"])
    assert code == 0
    report = json.loads((out / "pareto.json").read_text())
    assert report["benchmark"] == "pareto" and report["failed"] == []
    assert report["command"] == f"distillrec bench pareto --models-dir {models} --requests 40 --rounds 2 --warmup 2 --out {out}"
    assert {"cpu", "cores", "python", "versions", "load_average", "nice"} <= set(report["environment"])
    assert {"onnxruntime", "faiss-cpu", "numpy"} <= set(report["environment"]["versions"])
    assert report["settings"] == {"requests": 40, "rounds": 2, "warmup": 2, "k": 10, "metric": "ndcg@10", "part": "test", "ort_threads": 1, "seed": 0}
    rows = {r["bundle"]: r for r in report["rows"]}
    assert set(rows) >= set(BUNDLES)  # the shared models dir may hold more bundles than these
    keys = {
        "bundle",
        "version",
        "role",
        "family",
        "dim",
        "parameters",
        "offline",
        "requests",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "cpu_p50_ms",
        "speedup_vs_slowest",
        "best_teacher",
        "accuracy_vs_best_teacher",
        "pareto_latency",
        "pareto_parameters",
        "percentiles_ms",
    }
    for name, r in rows.items():
        m = _manifest(name)
        assert keys <= set(r)
        assert (r["role"], r["family"], r["dim"], r["parameters"], r["version"]) == (m["role"], m["family"], m["dim"], m["parameters"], m["version"])
        assert r["offline"]["value"] == pytest.approx(m["metrics"]["test"]["metrics"]["ndcg@10"])
        assert r["offline"]["protocol"] == m["metrics"]["test"]["protocol"]
        assert r["requests"] == 40 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["speedup_vs_slowest"] >= 1.0 - 1e-9
    assert [r["p50_ms"] for r in report["rows"]] == sorted(r["p50_ms"] for r in report["rows"])
    assert max(r["speedup_vs_slowest"] for r in rows.values()) >= 1 and min(r["speedup_vs_slowest"] for r in rows.values()) == pytest.approx(1.0)
    assert rows["student"]["role"] == "student" and rows["ensemble"]["dim"] is None and rows["ensemble"]["member_dims"]
    teachers = [r for r in rows.values() if r["role"] in ("teacher", "ensemble")]
    top = max(r["offline"]["value"] for r in teachers)
    assert rows["student"]["best_teacher"] in {r["bundle"] for r in teachers if r["offline"]["value"] == top}  # ties: either
    best = rows[rows["student"]["best_teacher"]]
    assert rows["student"]["accuracy_vs_best_teacher"] == pytest.approx(rows["student"]["offline"]["value"] / best["offline"]["value"])
    assert best["accuracy_vs_best_teacher"] == pytest.approx(1.0)

    md = (out / "pareto.md").read_text()
    assert md.startswith("| bundle | role | family | dim | parameters | NDCG@10 (test, protocol) | p50 ms | p99 ms |")
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| bundle") and not line.startswith("|---")]
    assert sorted(line.split(" | ")[0][2:] for line in table) == sorted(rows)
    for name, r in rows.items():
        assert f"| {name} | {r['role']} | {r['family']} |" in md and f"{r['parameters']:,}" in md
    assert f"- **student** vs the most accurate teacher **{best['bundle']}**" in md
    assert "Hardware: " in md and "load average at start" in md and f"Command: `{report['command']}`" in md
    assert report["plot"] is True and (out / "pareto.png").read_bytes()[:8] == PNG_MAGIC


def test_bundles_option_selects_and_unknown_names_are_refused(tmp_path, capsys):
    from distillrec.cli import main

    models = models_dir(*BUNDLES)
    code = main(
        [
            "bench",
            "pareto",
            "--models-dir",
            str(models),
            "--bundles",
            "neumf,student",
            "--out",
            str(tmp_path / "a"),
            "--requests",
            "10",
            "--rounds",
            "1",
            "--warmup",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "a" / "pareto.json").read_text())
    assert sorted(r["bundle"] for r in report["rows"]) == ["neumf", "student"] and "--bundles neumf,student" in report["command"]
    assert main(["bench", "pareto", "--models-dir", str(models), "--bundles", "student,nope", "--out", str(tmp_path / "b")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["bench", "pareto", "--models-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "c")]) == 2
    assert "no bundles" in capsys.readouterr().err


def _row(name, role, p50, params, acc, protocol="full", fp="d"):
    return {"bundle": name, "role": role, "p50_ms": p50, "parameters": params, "offline": {"value": acc, "protocol": protocol}, "data": {"fingerprint": fp}}


def test_pareto_flags_compare_only_like_with_like():
    rows = [
        _row("student", "student", 0.05, 50, 0.069),
        _row("bpr", "teacher", 0.06, 500, 0.074),
        _row("lightgcn", "teacher", 0.07, 500, 0.067),  # slower, larger and less accurate than bpr: dominated
        _row("neumf", "teacher", 1.0, 700, 0.077),
        _row("sampled", "teacher", 2.0, 900, 0.5, protocol="sampled"),  # another protocol: compared with nothing
        _row("no-metric", "teacher", 0.01, 10, None),
    ]
    pareto.mark_pareto(rows, "p50_ms", "front")
    assert {r["bundle"]: r["front"] for r in rows} == {"student": True, "bpr": True, "lightgcn": False, "neumf": True, "sampled": True, "no-metric": None}
    pareto.mark_pareto(rows, "parameters", "small")
    assert [r["bundle"] for r in rows if r["small"] is False] == ["lightgcn"]


def test_settings_are_checked():
    with pytest.raises(pareto.BenchmarkError, match="--rounds"):
        pareto.ParetoSettings(requests=3, rounds=5).check()
    with pytest.raises(pareto.BenchmarkError, match="--k"):
        pareto.ParetoSettings(k=0).check()
