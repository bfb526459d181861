"""POST /v1/compare and shadow mode between real uvicorn processes on 127.0.0.1.

A teacher service and student services run as separate processes; teacher endpoints that are down
(nothing listening), hung (accepts, never answers), slow (answers after the timeout) or failing
(500) are small local servers. The student must report them and keep answering, never with a 5xx.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from svc_support import models_dir

from distillrec.local_service import LocalService, free_port

TIMEOUT_S = 2.0  # DISTILLREC_REMOTE_TIMEOUT_S of the students (generous: the machine running the tests may be busy)


def _stub(delay: float, status: int) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A 127.0.0.1 server answering every request with ``status`` after ``delay`` seconds."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(delay)
            body = b'{"error": {"code": "boom", "message": "stub", "details": null}}' if status != 200 else b'{"items": []}'
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout)
                pass

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def cluster():
    """A teacher process (student + NeuMF bundles), a student process with five endpoints, stub servers."""
    models = models_dir("student", "neumf")
    slow, slow_url = _stub(delay=2 * TIMEOUT_S, status=200)
    broken, broken_url = _stub(delay=0.0, status=500)
    hung = socket.socket()  # listens, never accepts: connections hang until the timeout
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    down_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    teacher = LocalService(models, "neumf", quiet=True)
    servers = [teacher]
    try:
        teacher.start()
        endpoints = f"same={teacher.base}#student,remote-neumf={teacher.base}#neumf,down={down_url},slow={slow_url},broken={broken_url}"
        common = {"DISTILLREC_TEACHER_ENDPOINTS": endpoints, "DISTILLREC_REMOTE_TIMEOUT_S": str(TIMEOUT_S)}
        # the student mirrors every request to the same bundle (agreement 1.0) …
        student = LocalService(models, "student", quiet=True, extra_env={**common, "DISTILLREC_SHADOW_ENDPOINT": "same", "DISTILLREC_SHADOW_FRACTION": "1"})
        # … and a second one mirrors to a teacher that never answers, through a tiny queue
        shadowed = LocalService(
            models,
            "student",
            quiet=True,
            extra_env={
                "DISTILLREC_TEACHER_ENDPOINTS": f"hung={hung_url}",
                "DISTILLREC_REMOTE_TIMEOUT_S": "0.5",
                "DISTILLREC_SHADOW_ENDPOINT": "hung",
                "DISTILLREC_SHADOW_FRACTION": "1",
                "DISTILLREC_SHADOW_CONCURRENCY": "2",
                "DISTILLREC_SHADOW_QUEUE": "4",
            },
        )
        servers += [student, shadowed]
        student.start()
        shadowed.start()
        yield {"teacher": teacher.base, "student": student.base, "shadowed": shadowed.base}
    finally:
        for s in servers:
            s.stop()
        slow.shutdown()
        broken.shutdown()
        hung.close()


def _metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", line)
        if m and all(part in (m.group(1) or "") for part in want.split(",")):
            return float(m.group(2))
    return 0.0


def test_models_lists_remote_teachers_and_readyz_ignores_them(cluster):
    body = httpx.get(f"{cluster['student']}/v1/models").json()
    remote = {t["name"]: t for t in body["remote_teachers"]}
    assert sorted(remote) == ["broken", "down", "remote-neumf", "same", "slow"]
    assert remote["same"]["reachable"] and remote["same"]["ready"] and remote["same"]["model"] == "student"
    assert not remote["down"]["reachable"] and remote["down"]["problem"]
    assert remote["broken"]["reachable"] and not remote["broken"]["ready"] and "500" in remote["broken"]["problem"]
    assert httpx.get(f"{cluster['student']}/readyz").status_code == 200  # a teacher being down never makes the student unready


def test_compare_same_bundle_agrees_fully_and_counts_every_request(cluster):
    r = httpx.post(f"{cluster['student']}/v1/compare", json={"targets": ["same", "student", "remote-neumf"], "users": 24, "concurrency": 4, "k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["reference"] == "same" and out["users_done"] == 24 and not out["stopped_early"]
    rows = {t["name"]: t for t in out["targets"]}
    for row in rows.values():
        assert (row["requests"], row["ok"], row["errors"]) == (24, 24, 0)
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["throughput_rps"] > 0
    same, student = rows["same"], rows["student"]
    assert same["kind"] == "endpoint" and student["kind"] == "local"
    agree = student["agreement"]
    assert (
        agree["users"] == 24
        and agree["overlap_at_k"] == 1.0
        and agree["ndcg_at_k"] == pytest.approx(1.0)
        and agree["rbo"] == pytest.approx(1.0)
        and agree["kendall_tau"] == 1.0
    )
    assert rows["remote-neumf"]["agreement"]["overlap_at_k"] < 1.0  # a different model: the numbers are measured, not assumed
    # same seed → same users → the same agreement; the reference can be chosen
    again = httpx.post(
        f"{cluster['student']}/v1/compare", json={"targets": ["same", "remote-neumf"], "users": 24, "k": 5, "reference": "remote-neumf"}, timeout=60
    ).json()
    assert again["reference"] == "remote-neumf"
    assert {t["name"]: t for t in again["targets"]}["same"]["agreement"]["overlap_at_k"] == pytest.approx(rows["remote-neumf"]["agreement"]["overlap_at_k"])


def test_failing_teachers_are_reported_never_a_5xx(cluster):
    r = httpx.post(f"{cluster['student']}/v1/compare", json={"targets": ["down", "slow", "broken", "student"], "users": 6, "concurrency": 3}, timeout=60)
    assert r.status_code == 200, r.text
    rows = {t["name"]: t for t in r.json()["targets"]}
    assert rows["down"]["error_kinds"] == {"unreachable": 6} and rows["down"]["ok"] == 0
    assert rows["slow"]["timeouts"] == 6 and rows["slow"]["p50_ms"] is None
    assert rows["broken"]["error_kinds"] == {"http_500": 6}
    student = rows["student"]
    assert student["ok"] == 6 and student["errors"] == 0
    assert student["p99_ms"] < TIMEOUT_S * 1e3  # its own requests never wait for a teacher
    assert student["agreement"]["users"] == 0 and student["agreement"]["overlap_at_k"] is None  # nothing to agree with


def test_compare_validates_targets_and_limits(cluster):
    base = cluster["student"]
    assert httpx.post(f"{base}/v1/compare", json={"targets": ["nope"]}).status_code == 404
    assert httpx.post(f"{base}/v1/compare", json={"targets": ["student", "student"]}).status_code == 422
    assert httpx.post(f"{base}/v1/compare", json={"targets": ["student"], "timeout_s": 5}).json()["error"]["message"].endswith("(DISTILLREC_REMOTE_TIMEOUT_S).")
    assert httpx.post(f"{base}/v1/compare", json={"targets": ["student"], "concurrency": 17}).status_code == 422
    assert httpx.post(f"{base}/v1/compare", json={"targets": ["student"], "url": "http://169.254.169.254"}).status_code == 422  # no addresses from requests


def test_one_comparison_at_a_time_and_cancelled_when_the_client_leaves(cluster):
    base = cluster["student"]
    long_run = {"targets": ["slow", "student"], "users": 200, "concurrency": 1}  # ≈ 200 × 2 s if it were not cancelled

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.create_task(client.post(f"{base}/v1/compare", json=long_run))
            await asyncio.sleep(1.0)
            busy = await client.post(f"{base}/v1/compare", json={"targets": ["student"], "users": 2})
            first.cancel()  # the client goes away: the connection is closed
            await asyncio.gather(first, return_exceptions=True)
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(20):  # the server notices within a poll interval and frees the slot
                after = await client.post(f"{base}/v1/compare", json={"targets": ["student"], "users": 2})
                if after.status_code != 429:
                    break
                await asyncio.sleep(0.25)
        return busy, after

    busy, after = asyncio.run(scenario())
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "busy"
    assert after.status_code == 200 and after.json()["targets"][0]["ok"] == 2


def test_shadow_mode_agreement_metrics(cluster):
    base = cluster["student"]
    for user in ("1", "2", "3", "4"):
        assert httpx.post(f"{base}/v1/recommend", json={"user_id": user, "k": 5}).status_code == 200
    time.sleep(1.0)
    text = httpx.get(f"{base}/metrics").text
    assert _metric(text, "distillrec_shadow_requests_total", endpoint="same", outcome="ok") >= 4
    count = _metric(text, "distillrec_shadow_agreement_count", endpoint="same", measure="overlap_at_k")
    assert count >= 4 and _metric(text, "distillrec_shadow_agreement_sum", endpoint="same", measure="overlap_at_k") == pytest.approx(count)
    assert _metric(text, "distillrec_shadow_teacher_duration_seconds_count", endpoint="same") >= 4


def test_shadow_mode_with_the_teacher_down_never_fails_the_student(cluster):
    base = cluster["shadowed"]
    total, concurrency = 300, 8

    async def load():
        async with httpx.AsyncClient(timeout=10) as client:
            queue = iter(range(total))

            async def worker():
                codes = []
                for i in queue:
                    r = await client.post(f"{base}/v1/recommend", json={"user_id": str(1 + i % 50), "k": 10})
                    codes.append(r.status_code)
                return codes

            return [c for codes in await asyncio.gather(*(worker() for _ in range(concurrency))) for c in codes]

    t0 = time.perf_counter()
    codes = asyncio.run(load())
    elapsed = time.perf_counter() - t0
    assert len(codes) == total and set(codes) == {200}  # 0 failed student requests
    assert elapsed < total * 0.5 / 2  # far less than if the student waited for the hung teacher (0.5 s each, 2 at a time)
    deadline = time.monotonic() + 10
    while True:  # let the queued mirrors time out
        text = httpx.get(f"{base}/metrics").text
        dropped = _metric(text, "distillrec_shadow_dropped_total", endpoint="hung")
        sent = sum(_metric(text, "distillrec_shadow_requests_total", endpoint="hung", outcome=o) for o in ("ok", "timeout", "unreachable"))
        if dropped + sent == total or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert dropped > 0 and sent > 0 and dropped + sent == total  # every mirror is either sent (and timed out) or dropped and counted
    assert _metric(text, "distillrec_shadow_requests_total", endpoint="hung", outcome="ok") == 0
    assert _metric(text, "distillrec_shadow_queue_depth", endpoint="hung") == 0


CLIENT = r"""
import json, sys
from distillrec.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "matplotlib"))
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def test_compare_client_between_two_services(cluster, tmp_path):
    student, teacher = cluster["student"], cluster["teacher"]
    args = [
        "compare",
        "--student",
        student,
        "--teacher",
        f"same={teacher}#student",
        "--teacher",
        f"neumf={teacher}#neumf",
        "--users",
        "1-60",
        "--requests",
        "16",
        "--concurrency",
        "1,4",
        "--k",
        "5",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run([sys.executable, "-c", CLIENT, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status["rc"] == 0 and not any(m.startswith("torch") for m in status["heavy"])  # torch-free (matplotlib only for the PNG)
    assert "| 4 | student |" in proc.stdout and "same (reference)" in proc.stdout
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [r["concurrency"] for r in report["runs"]] == [1, 4]
    for run in report["runs"]:
        rows = {t["name"]: t for t in run["targets"]}
        assert all(t["ok"] == 16 and len(t["latencies_ms"]) == 16 for t in rows.values())
        assert rows["student"]["agreement"]["overlap_at_k"] == 1.0 and rows["neumf"]["agreement"]["overlap_at_k"] < 1.0
    assert (tmp_path / "compare.png").stat().st_size > 10_000 and (tmp_path / "compare.md").read_text().startswith("| concurrency |")
    bad = subprocess.run(
        [sys.executable, "-m", "distillrec.cli", "compare", "--student", "ftp://x", "--teacher", teacher, "--users", "1-3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not an http:// or https:// URL" in bad.stderr


def test_comparison_stops_at_its_wall_time_limit():
    from service.comparison import Target, run_comparison

    slow, url = _stub(delay=0.2, status=200)
    try:
        out = asyncio.run(run_comparison([Target("slow", "url", url)], [str(u) for u in range(50)], 5, concurrency=2, timeout=1.0, max_seconds=0.5))
    finally:
        slow.shutdown()
    assert out["stopped_early"] and 0 < out["users_done"] < 50 and out["wall_s"] < 2.0
    assert out["targets"][0]["requests"] == out["users_done"]  # requests cut off mid-flight are not counted
