"""The latency benchmark script (``distillrec bench service``): output parsers and a short smoke run."""

from __future__ import annotations

import json
import shutil

import pytest
from svc_support import models_dir

from distillrec.benchmarks.service_latency import headline_concurrency, parse_concurrency, parse_hey, parse_wrk, run, wrk_script

HEY = """
Summary:
  Total:	5.0042 secs
  Slowest:	0.0603 secs
  Fastest:	0.0003 secs
  Average:	0.0081 secs
  Requests/sec:	1969.0034

Latency distribution:
  10% in 0.0041 secs
  50% in 0.0081 secs
  95% in 0.0130 secs
  99% in 0.0280 secs

Status code distribution:
  [200]	9850 responses
  [404]	11 responses

Error distribution:
  [3]	Get "http://127.0.0.1:1/": dial tcp: connection refused
"""


def test_parse_hey():
    r = parse_hey(HEY)
    assert r["rps"] == pytest.approx(1969.0034)
    assert (r["p50_ms"], r["p95_ms"], r["p99_ms"], r["mean_ms"]) == pytest.approx((8.1, 13.0, 28.0, 8.1))
    assert r["errors"] == 11 + 3 and r["requests"] == 9850 + 11 + 3


def test_parse_wrk_and_script():
    out = 'Running 10s test\nWRKJSON {"requests": 20000, "duration_us": 10000000, "connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0, "p50_us": 7000.0, "p95_us": 12000.0, "p99_us": 20000.5, "mean_us": 7500.0}\n'
    r = parse_wrk(out)
    assert r["rps"] == 2000 and r["errors"] == 3 and r["p99_ms"] == pytest.approx(20.0005)
    with pytest.raises(RuntimeError, match="no summary"):
        parse_wrk("garbage")
    script = wrk_script([json.dumps({"user_id": "1", "k": 10}), json.dumps({"user_id": "2", "k": 10})])
    assert '[==[{"user_id": "2", "k": 10}]==]' in script and "WRKJSON" in script and 'wrk.format("POST"' in script
    assert 'wrk.format("GET"' in wrk_script(None)


def test_concurrency_lists_and_the_headline_concurrency():
    assert parse_concurrency(16) == [16] and parse_concurrency("16,1,4,4") == [1, 4, 16] and parse_concurrency([8, 2]) == [2, 8]
    for bad in ("", "0,4", "a,b"):
        with pytest.raises(ValueError, match="--concurrency"):
            parse_concurrency(bad)
    assert headline_concurrency([1, 4, 16, 64]) == 16 and headline_concurrency([1, 4]) == 4


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_smoke_run_on_127_0_0_1(tmp_path):
    report = run(
        models_dir(),
        "student",
        ["neumf"],
        tmp_path,
        tool="wrk",
        duration=1,
        concurrency=[1, 4],
        rounds=1,
        bench_requests=20,
        in_process_requests=200,
        command="pytest smoke",
    )
    assert (tmp_path / "service_latency.json").is_file() and "| target | met |" in (tmp_path / "service_latency.md").read_text()
    [row] = report["rounds"]
    assert row["healthz"]["requests"] > 0 and row["recommend"]["requests"] > 0 and report["summary"]["errors"] == 0
    assert row["recommend"]["server_cpu_us"] > 0
    assert [r["model"] for r in report["v1_benchmark"]["results"]] == ["student", "neumf"]
    assert set(report["speedup_p50"]) == {"neumf"} and report["in_process"]["requests"] == 200
    assert "127.0.0.1" in report["server"]["command"]
    # the sweep: healthz, the student and every teacher at every concurrency; the headline pair reuses its rounds
    assert report["concurrency"] == 4 and report["concurrencies"] == [1, 4]
    assert [(r["target"], r["concurrency"]) for r in report["load"]] == [(t, c) for c in (1, 4) for t in ("healthz", "student", "neumf")]
    for r in report["load"]:
        assert r["requests"] > 0 and r["errors"] == 0 and r["rps"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["rounds"] == 1
        assert r["endpoint"] == ("/healthz" if r["target"] == "healthz" else "/v1/recommend")
    assert {r["target"]: r["role"] for r in report["load"]} == {"healthz": "healthz", "student": "student", "neumf": "teacher"}
    assert [m["bundle"] for m in report["in_process_models"]] == ["student", "neumf"] and report["in_process_models"][1]["requests"] == 200
    md = (tmp_path / "service_latency.md").read_text()
    assert "| neumf | teacher | 1 |" in md and "| neumf | teacher | 4 |" in md and "| healthz | healthz | 1 |" in md
    assert report["plot"] is True and (tmp_path / "service_latency.png").read_bytes()[:4] == b"\x89PNG"
