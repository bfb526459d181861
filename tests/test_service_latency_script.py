"""The latency benchmark script (``distillrec bench service``): output parsers and a short smoke run."""

from __future__ import annotations

import json
import shutil

import pytest
from svc_support import models_dir

from training.benchmarks.service_latency import parse_hey, parse_wrk, run, wrk_script

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


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_smoke_run_on_127_0_0_1(tmp_path):
    report = run(models_dir(), "student", ["neumf"], tmp_path, tool="wrk", duration=1, concurrency=4, rounds=1,
                 bench_requests=20, in_process_requests=200, command="pytest smoke")
    assert (tmp_path / "service_latency.json").is_file() and "| target | met |" in (tmp_path / "service_latency.md").read_text()
    [row] = report["rounds"]
    assert row["healthz"]["requests"] > 0 and row["recommend"]["requests"] > 0 and report["summary"]["errors"] == 0
    assert row["recommend"]["server_cpu_us"] > 0
    assert [r["model"] for r in report["v1_benchmark"]["results"]] == ["student", "neumf"]
    assert set(report["speedup_p50"]) == {"neumf"} and report["in_process"]["requests"] == 200
    assert "127.0.0.1" in report["server"]["command"]
