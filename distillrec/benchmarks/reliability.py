"""Reliability of the REST service on 127.0.0.1: hostile requests, broken files, memory, a soak.

``python -m distillrec.benchmarks.reliability --models-dir models --student S --scorer N`` (or
``distillrec bench reliability …``) copies the bundles into a scratch models dir, starts
``uvicorn service.main:app`` (one worker) on 127.0.0.1 over the copy and tries, as an attacker or a
careless operator would:

* **scorer memory**: 4 concurrent ``/v1/recommend/batch`` calls of 256 users, k=100, to a learned
  scorer (NeuMF) bundle, three rounds; the server's resident memory must stay within
  ``--memory-limit-mb`` (150) of its idle value;
* **bad LATEST**: a pointer that is not UTF-8, a symlink to ``/proc/self/environ``, a 20 MB file;
  reloads must answer per bundle (never 500) and no public answer may carry file contents, the
  admin token or server paths, nor grow with the file;
* **swapped graph**: a bundle whose ONNX graph was cut to 5 users and whose checksums were
  recomputed must be refused at reload, never answer 500;
* **dropped benchmark**: a ``/v1/benchmark`` call dropped by its client after 1 s must free the
  benchmark within 3 s; one that runs past ``DISTILLREC_BENCHMARK_MAX_SECONDS`` must stop;
* **request limits**: a 100 MB body (413), a long-id batch (422, short answer), ``text/plain`` and
  type-less bodies (415), ``HEAD /healthz``;
* **metric labels**: 510 benchmark calls with different model lists and 100 WebDAV-method calls to
  100 unknown paths must not grow ``/metrics`` by more than 20 kB;
* **disconnect mid-body**: 20 clients that send half a body and leave: no 500 in the metrics;
* **not ready**: a server over an empty models dir answers 503 with a reason and no server path;
* **soak** (``--soak-seconds``, 0 to skip): concurrency 8 of mixed traffic (recommend, batch,
  history, similar, models, readiness, metrics, benchmark, a reload every 15 s): no unexpected
  status; resident memory and open file descriptors at start and end.

Each case counts its requests, the expected and unexpected non-2xx answers, 5xx answers, server
crashes, failed checks and the server's RSS before and after. With ``--speed-rounds N`` it also
measures the ``POST /v1/recommend`` ÷ ``GET /healthz`` throughput ratio at concurrency 16 with wrk.
Prints a markdown table; writes ``reliability.json`` and ``reliability.md`` into ``--out``; exits 1
when a case fails. Only ever targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from distillrec.benchmarks.service_latency import run_load
from distillrec.commands.common import non_negative
from distillrec.local_service import HOST, LocalService

MB = 1 << 20
DESCRIPTION = (
    "Copies the --student and --scorer bundles into a scratch models dir, starts `uvicorn service.main:app` (one worker) on "
    "127.0.0.1 and tries what an attacker or a careless operator would: 4 concurrent 256-user k=100 batch calls to the learned "
    "scorer (the server's resident set size, RSS, must stay within --memory-limit-mb of idle), broken LATEST pointers, a swapped "
    "ONNX graph, dropped and overlong /v1/benchmark calls, oversized and mistyped bodies, metric-label growth, clients leaving "
    "mid-body, an empty models dir, then a soak of mixed traffic with reloads at concurrency 8 (--soak-seconds). Prints a table "
    "(requests, expected and unexpected non-2xx answers, 5xx, crashes, RSS before/after), writes reliability.json/.md into --out "
    "and exits 1 if a case fails. With --speed-rounds it also measures the recommend / healthz throughput ratio with wrk."
)


# ------------------------------------------------------------------------------------ accounting
@dataclass
class Case:
    """The outcome of one case: what was sent and what came back."""

    name: str
    requests: int = 0
    expected_non_2xx: int = 0
    unexpected: int = 0
    server_errors: int = 0  # every 5xx; a 5xx the case did not expect is also counted as unexpected
    crashes: int = 0
    failed_checks: list[str] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    notes: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (self.unexpected or self.crashes or self.failed_checks)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failed_checks.append(what)


class Client:
    """HTTP/1.1 calls to the server under test, each tallied into the current :class:`Case`."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.case: Case | None = None
        self._lock = threading.Lock()

    def call(
        self, method: str, path: str, body=None, ok=(200,), headers: dict | None = None, raw: bytes | None = None, timeout: float = 120
    ) -> tuple[int, bytes]:
        """``method path`` (``body`` as JSON, or ``raw`` bytes) → (status, body); 0 when the connection failed."""
        hdrs = dict(headers if headers is not None else {"content-type": "application/json"})
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            reply = conn.getresponse()
            status, payload = reply.status, reply.read()
        except (OSError, http.client.HTTPException):
            status, payload = 0, b""
        finally:
            conn.close()
        self.tally(status, ok)
        return status, payload

    def admin(self, path: str, ok=(200,)) -> tuple[int, bytes]:
        return self.call("POST", path, None, ok, {"authorization": f"Bearer {self.token}"})

    def tally(self, status: int, ok) -> None:
        with self._lock:
            c = self.case
            c.requests += 1
            if status in ok:
                c.expected_non_2xx += not 200 <= status < 300
            else:
                c.unexpected += 1
            c.server_errors += status >= 500


# --------------------------------------------------------------------------------------- server
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Harness:
    """The server under test over a scratch copy of the bundles, restarted if a case crashes it."""

    def __init__(self, models_dir: Path, student: str, scorer: str, work: Path, benchmark_seconds: float):
        self.models = work / "models"
        for name in (student, scorer):
            shutil.copytree(models_dir / name, self.models / name, symlinks=True)
        self.student, self.scorer = student, scorer
        self.token, self.canary = secrets.token_hex(16), secrets.token_hex(16)  # the canary is in the environment only
        os.environ.update({"DISTILLREC_ADMIN_TOKEN": self.token, "DISTILLREC_BENCHMARK_MAX_SECONDS": str(benchmark_seconds), "RELIABILITY_CANARY": self.canary})
        self.start()

    def start(self) -> None:
        self.server = _service(self.models, self.student)
        self.server.start()
        self.client = Client(self.server.port, self.token)

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def run(self, name: str, fn) -> Case:
        case = Case(name, rss_before_mb=rss_mb(self.pid))
        self.client.case = case
        t0 = time.monotonic()
        try:
            fn(self, case)
        except Exception as exc:  # a case that cannot finish is a failed case, not a crashed script
            case.failed_checks.append(f"{type(exc).__name__}: {exc}")
        case.notes["seconds"] = round(time.monotonic() - t0, 1)
        if self.server.proc.poll() is not None:
            case.crashes += 1
            self.start()
        case.rss_after_mb = rss_mb(self.pid)
        status = "ok" if case.passed else f"FAILED {case.failed_checks}"
        print(f"  {name}: {case.requests} requests, {case.unexpected} unexpected, {case.server_errors} 5xx — {status}", flush=True)
        return case

    def user_ids(self, bundle: str) -> list[str]:
        from service.bundle.artifacts import read_ids, read_latest

        return read_ids(read_latest(self.models / bundle) / "user_ids.npy").tolist()

    def copy_bundle(self, src: str, dest: str) -> Path:
        shutil.copytree(self.models / src, self.models / dest, symlinks=True)
        return self.models / dest

    def stop(self) -> None:
        self.server.stop()


# ---------------------------------------------------------------------------------------- cases
def case_scorer_memory(h: Harness, case: Case, limit_mb: float = 150.0) -> None:
    users = h.user_ids(h.scorer)
    body = {"model": h.scorer, "user_ids": [users[i % len(users)] for i in range(256)], "k": 100}
    idle = rss_mb(h.pid)
    peak = idle
    for _ in range(3):
        threads = [threading.Thread(target=h.client.call, args=("POST", "/v1/recommend/batch", body)) for _ in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(h.pid))
            time.sleep(0.05)
    after = rss_mb(h.pid)
    case.notes.update(idle_mb=round(idle, 1), peak_mb=round(peak, 1), after_mb=round(after, 1), limit_mb=limit_mb)
    case.check(peak - idle < limit_mb, f"peak RSS {peak:.0f} MB is {peak - idle:.0f} MB over idle (limit {limit_mb:.0f})")
    case.check(after - idle < limit_mb, f"RSS after {after:.0f} MB is {after - idle:.0f} MB over idle (limit {limit_mb:.0f})")


def _public(h: Harness) -> bytes:
    return h.client.call("GET", "/readyz", ok=(200, 503))[1] + h.client.call("GET", "/v1/models")[1]


def case_bad_latest(h: Harness, case: Case) -> None:
    bundle = h.copy_bundle(h.scorer, "broken-latest")
    pointer = bundle / "LATEST"
    damages = {
        "not UTF-8": lambda: pointer.write_bytes(b"\xff\xfe\x00"),
        "symlink to /proc/self/environ": lambda: (pointer.unlink(), pointer.symlink_to("/proc/self/environ")),
        "20 MB": lambda: (pointer.unlink(), pointer.write_bytes(b"A" * (20 * MB))),
    }
    for what, damage in damages.items():
        damage()
        h.client.admin("/v1/admin/reload", ok=(409,))  # a new failure of that bundle: 409, never 500
        h.client.admin("/v1/admin/reload", ok=(200,))  # the same failure again: reported, not a 409
        public = _public(h)
        case.check(h.token.encode() not in public and h.canary.encode() not in public, f"{what}: a public answer leaks the environment")
        case.check(str(h.models).encode() not in public, f"{what}: a public answer shows a server path")
        case.check(len(public) < 64 * 1024, f"{what}: public answers are {len(public)} bytes")
        case.check(
            h.client.call("POST", "/v1/recommend", {"user_id": h.user_ids(h.student)[0], "model": h.student})[0] == 200,
            f"{what}: the other bundle stopped serving",
        )
    shutil.rmtree(bundle)
    h.client.admin("/v1/admin/reload")


def case_swapped_graph(h: Harness, case: Case) -> None:
    import onnx
    from onnx import numpy_helper

    from service.bundle.artifacts import (
        file_entries,
        read_latest,
        read_manifest,
        write_manifest,
    )

    folder = read_latest(h.copy_bundle(h.student, "swapped"))
    model, n_users = onnx.load(str(folder / "model.onnx")), read_manifest(folder).data.n_users
    for init in model.graph.initializer:  # the user table cut to 5 rows, checksums recomputed
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2 and arr.shape[0] == n_users:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr[:5]), init.name))
    onnx.save(model, str(folder / "model.onnx"))
    write_manifest(folder, read_manifest(folder).model_copy(update={"files": file_entries(folder)}))
    _status, body = h.client.admin("/v1/admin/reload", ok=(409,))
    case.check(b"swapped" in body and b"model.onnx" in body, "the reload does not name the swapped bundle's graph")
    for user in h.user_ids(h.student)[-20:]:
        h.client.call("POST", "/v1/recommend", {"user_id": user, "model": "swapped"}, ok=(404,))
    shutil.rmtree(folder.parent)
    h.client.admin("/v1/admin/reload")


def case_dropped_benchmark(h: Harness, case: Case) -> None:
    body = json.dumps({"models": [h.scorer] * 8, "requests": 100000, "warmup": 0}).encode()
    sock = socket.create_connection((HOST, h.server.port))
    sock.sendall(b"POST /v1/benchmark HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    case.requests += 1
    time.sleep(1.0)
    sock.close()
    t0 = time.monotonic()
    small = {"models": [h.student], "requests": 5, "warmup": 0}
    while time.monotonic() - t0 < 10 and h.client.call("POST", "/v1/benchmark", small, ok=(200, 429))[0] == 429:
        time.sleep(0.1)
    freed = time.monotonic() - t0
    case.notes["freed_after_s"] = round(freed, 2)
    case.check(freed < 3.0, f"the dropped benchmark held the lock for {freed:.1f} s after its client left")
    metrics = h.client.call("GET", "/metrics")[1].decode()
    dropped = [line for line in metrics.splitlines() if line.startswith("distillrec_http_requests_total{") and "/v1/benchmark" in line and 'status="5' in line]
    case.check(not dropped, f"the dropped benchmark was counted as a server error: {dropped}")
    t0 = time.monotonic()
    h.client.call("POST", "/v1/benchmark", {"models": [h.scorer, h.student], "requests": 100000, "warmup": 0}, ok=(503,))
    case.notes["time_limited_after_s"] = round(time.monotonic() - t0, 2)


def case_request_limits(h: Harness, case: Case) -> None:
    sock = socket.create_connection((HOST, h.server.port), timeout=30)  # 100 MB announced, refused before it is sent
    sock.sendall(b"POST /v1/recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (100 * MB))
    sock.sendall(b"{" + b" " * MB)
    reply = sock.recv(4096)
    sock.close()
    case.requests += 1
    case.check(reply.startswith(b"HTTP/1.1 413"), f"a 100 MB body got {reply[:12]!r}")
    long_ids = {"user_ids": ["u" * 5000] * 100, "k": 10}
    _status, body = h.client.call("POST", "/v1/recommend/batch", long_ids, ok=(422,))
    case.check(len(body) < 8192, f"a long-id batch was answered with {len(body)} bytes")
    for headers in ({"content-type": "text/plain"}, {}):
        h.client.call("POST", "/v1/benchmark", ok=(415,), headers=headers, raw=json.dumps({"models": [h.student]}).encode())
    h.client.call("HEAD", "/healthz")
    h.client.call("POST", "/v1/recommend", {"user_id": "x" * 300}, ok=(422,))


def case_metric_labels(h: Harness, case: Case) -> None:
    before = len(h.client.call("GET", "/metrics")[1])
    names, rng = [h.student, h.scorer], random.Random(0)
    for _ in range(510):
        models = [rng.choice(names) for _ in range(rng.randint(1, 8))]
        h.client.call("POST", "/v1/benchmark", {"models": models, "requests": 1, "warmup": 0})
    odd = ["PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PURGE", "REPORT", "SEARCH", "LINK"]  # methods uvicorn passes on
    for i in range(100):
        h.client.call(odd[i % len(odd)], f"/healthz/{i}", ok=(404, 405))
    after = len(h.client.call("GET", "/metrics")[1])
    case.notes.update(metrics_bytes_before=before, metrics_bytes_after=after)
    case.check(after - before < 20_000, f"/metrics grew from {before} to {after} bytes")


def case_disconnect_mid_body(h: Harness, case: Case) -> None:
    for _ in range(20):
        sock = socket.create_connection((HOST, h.server.port))
        sock.sendall(b'POST /v1/recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"user_id": ')
        sock.close()
        case.requests += 1
    time.sleep(0.5)
    metrics = h.client.call("GET", "/metrics")[1]
    case.check(b'status="500"' not in metrics, "a client gone mid-body was counted as a 500")


def _service(models: Path, default_model: str) -> LocalService:
    """The service under test: one worker, one ONNX Runtime and OpenMP thread, settings from this process's environment."""
    return LocalService(models, default_model, settings={"BENCHMARK_MAX_REQUESTS": 100000, "ORT_THREADS": 1}, quiet=True, extra_env={"OMP_NUM_THREADS": "1"})


def case_not_ready(h: Harness, case: Case) -> None:
    empty = h.models.parent / "empty-models"
    empty.mkdir(exist_ok=True)
    srv = _service(empty, "none")
    srv.start(wait_ready=False)
    try:
        client = Client(srv.port, "")
        client.case = case
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and client.call("GET", "/healthz", ok=(200, 0))[0] != 200:
            time.sleep(0.2)
        _status, body = client.call("GET", "/readyz", ok=(503,))
        reason = json.loads(body or b"{}").get("reason") or ""
        case.check("DISTILLREC_MODELS_DIR" in reason and str(empty) not in reason, f"/readyz reason is {reason!r}")
        client.call("POST", "/v1/recommend", {"user_id": "1"}, ok=(503,))
    finally:
        srv.stop()


def case_public_paths(h: Harness, case: Case) -> None:
    body = h.client.call("GET", "/v1/models")[1].decode()
    case.check(str(h.models) not in body and '"/' not in body, "/v1/models shows a server path")


CASES = {
    "scorer batch memory": case_scorer_memory,
    "bad LATEST": case_bad_latest,
    "swapped graph": case_swapped_graph,
    "dropped / long benchmark": case_dropped_benchmark,
    "request limits": case_request_limits,
    "metric labels": case_metric_labels,
    "disconnect mid-body": case_disconnect_mid_body,
    "not ready": case_not_ready,
    "no paths in /v1/models": case_public_paths,
}


# ----------------------------------------------------------------------------------------- soak
def soak(h: Harness, case: Case, seconds: float, concurrency: int = 8) -> None:
    """``concurrency`` threads of mixed traffic for ``seconds``; one of them reloads every 15 s."""
    students, scorers = h.user_ids(h.student), h.user_ids(h.scorer)
    stop_at = time.monotonic() + seconds
    samples: list[tuple[float, float, int]] = []

    def worker(seed: int) -> None:
        rng, next_reload = random.Random(seed), time.monotonic() + 15
        c = h.client
        while time.monotonic() < stop_at:
            roll = rng.random()
            if seed == 0 and time.monotonic() > next_reload:
                c.admin("/v1/admin/reload")
                next_reload += 15
            elif roll < 0.45:
                c.call("POST", "/v1/recommend", {"user_id": rng.choice(students), "k": 10})
            elif roll < 0.55:
                c.call("POST", "/v1/recommend/batch", {"model": h.scorer, "user_ids": rng.sample(scorers, 32), "k": 20})
            elif roll < 0.65:
                c.call("POST", "/v1/recommend", {"user_id": f"unknown-{rng.random()}"}, ok=(404,))
            elif roll < 0.75:
                c.call("POST", "/v1/recommend/history", {"item_ids": ["1", "2", "3"], "k": 10}, ok=(200, 404))
            elif roll < 0.82:
                c.call("GET", "/v1/items/1/similar?k=10", ok=(200, 404))
            elif roll < 0.9:
                c.call("GET", rng.choice(["/v1/models", "/readyz", "/metrics", "/healthz"]))
            else:
                c.call("POST", "/v1/benchmark", {"models": [h.student, h.scorer], "requests": 20, "warmup": 0}, ok=(200, 429))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while any(t.is_alive() for t in threads):
        samples.append((round(time.monotonic() - t0, 1), round(rss_mb(h.pid), 1), open_fds(h.pid)))
        time.sleep(min(10.0, max(0.5, seconds / 20)))
    samples.append((round(time.monotonic() - t0, 1), round(rss_mb(h.pid), 1), open_fds(h.pid)))
    first, last = samples[min(1, len(samples) - 1)], samples[-1]  # start: after the first sample's warm-up
    case.notes.update(seconds=seconds, concurrency=concurrency, rss_start_mb=first[1], rss_end_mb=last[1], fds_start=first[2], fds_end=last[2], samples=samples)
    print(f"  soak start: RSS {first[1]} MB, {first[2]} fds; end: RSS {last[1]} MB, {last[2]} fds", flush=True)
    case.check(last[2] - first[2] <= 8, f"open file descriptors grew from {first[2]} to {last[2]}")
    case.check(last[1] - first[1] <= 50, f"RSS grew from {first[1]} to {last[1]} MB")


def speed(h: Harness, rounds: int, duration: int = 10, concurrency: int = 16) -> dict:
    """Median ``POST /v1/recommend`` ÷ ``GET /healthz`` throughput at ``concurrency`` (wrk, alternating rounds)."""
    users = h.user_ids(h.student)
    random.Random(0).shuffle(users)
    bodies = [json.dumps({"user_id": u, "k": 10}) for u in users[:512]]
    base = f"http://{HOST}:{h.server.port}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            health = run_load("wrk", base + "/healthz", concurrency, duration, None, Path(tmp))
            rec = run_load("wrk", base + "/v1/recommend", concurrency, duration, bodies, Path(tmp))
            rows.append(
                {
                    "healthz_rps": round(health["rps"]),
                    "recommend_rps": round(rec["rps"]),
                    "ratio": round(rec["rps"] / health["rps"], 3),
                    "errors": health["errors"] + rec["errors"],
                }
            )
            print(f"  speed round: {rows[-1]}", flush=True)
    return {"concurrency": concurrency, "duration_s": duration, "rounds": rows, "median_ratio": statistics.median(r["ratio"] for r in rows)}


# ---------------------------------------------------------------------------------------- report
def markdown(cases: list[Case], speed_report: dict | None) -> str:
    lines = [
        "| case | requests | expected non-2xx | unexpected | 5xx | crashes | RSS before → after (MB) | result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in cases:
        result = "pass" if c.passed else "FAIL: " + "; ".join(c.failed_checks)
        lines.append(
            f"| {c.name} | {c.requests} | {c.expected_non_2xx} | {c.unexpected} | {c.server_errors} | {c.crashes} | {c.rss_before_mb:.0f} → {c.rss_after_mb:.0f} | {result} |"
        )
    for c in cases:
        extra = {k: v for k, v in c.notes.items() if k != "samples"}
        if extra:
            lines.append(f"\n{c.name}: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    if speed_report:
        ratios = ", ".join(str(r["ratio"]) for r in speed_report["rounds"])
        lines.append(
            f"\nrecommend ÷ healthz throughput at concurrency {speed_report['concurrency']} (wrk): median {speed_report['median_ratio']:.3f} (rounds: {ratios})"
        )
    return "\n".join(lines)


def run(
    models_dir: Path,
    student: str,
    scorer: str,
    out: Path,
    soak_seconds: float = 600,
    speed_rounds: int = 0,
    only: list[str] | None = None,
    memory_limit_mb: float = 150.0,
    benchmark_seconds: float = 5.0,
) -> int:
    """Runs the cases (and the soak and speed, if asked); returns the exit status (1 when a case failed)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="distillrec-reliability-") as tmp:
        h = Harness(Path(models_dir), student, scorer, Path(tmp), benchmark_seconds)
        try:
            cases = []
            print(f"server pid {h.pid} on {HOST}:{h.server.port}, idle RSS {rss_mb(h.pid):.0f} MB", flush=True)
            for name, fn in CASES.items():
                if only and name not in only:
                    continue
                if fn is case_scorer_memory:
                    cases.append(h.run(name, lambda hh, c: case_scorer_memory(hh, c, memory_limit_mb)))
                else:
                    cases.append(h.run(name, fn))
            if soak_seconds > 0:
                cases.append(h.run(f"soak ({soak_seconds:g} s, concurrency 8)", lambda hh, c: soak(hh, c, soak_seconds)))
            speed_report = speed(h, speed_rounds) if speed_rounds > 0 else None
        finally:
            h.stop()
    report = {"cases": [{**asdict(c), "passed": c.passed} for c in cases], "speed": speed_report}
    (out / "reliability.json").write_text(json.dumps(report, indent=2))
    md = markdown(cases, speed_report)
    (out / "reliability.md").write_text(md + "\n")
    print(md)
    return 0 if all(c.passed for c in cases) else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", default="models", help="model repository holding the bundles (copied; the copy is damaged, never the original)")
    p.add_argument("--student", required=True, help="a factorised bundle (MF, LightGCN): the fast path under load")
    p.add_argument("--scorer", required=True, help="a learned-scorer bundle (NeuMF): the memory case")
    p.add_argument("--soak-seconds", type=float, default=600, help="length of the soak at concurrency 8 (default 600; 0 skips it)")
    p.add_argument("--speed-rounds", type=non_negative, default=0, help="wrk rounds of recommend ÷ healthz at concurrency 16 (default 0: skipped)")
    p.add_argument("--memory-limit-mb", type=float, default=150.0, help="allowed RSS growth over idle in the scorer memory case (default 150)")
    p.add_argument("--only", action="append", default=None, metavar="CASE", help=f"run only this case (repeatable): {', '.join(CASES)}")
    p.add_argument("--out", default="results/bench-reliability", help="folder for reliability.json / .md")


def register_cli(bsub) -> None:
    """``distillrec bench reliability``."""
    p = bsub.add_parser(
        "reliability", help="hostile requests, broken bundle files, scorer memory and a soak against the service on 127.0.0.1", description=DESCRIPTION
    )
    add_arguments(p)
    p.set_defaults(
        handler=lambda args: run(
            Path(args.models_dir), args.student, args.scorer, Path(args.out), args.soak_seconds, args.speed_rounds, args.only, args.memory_limit_mb
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distillrec.benchmarks.reliability", description=DESCRIPTION)
    add_arguments(p)
    args = p.parse_args(argv)
    return run(Path(args.models_dir), args.student, args.scorer, Path(args.out), args.soak_seconds, args.speed_rounds, args.only, args.memory_limit_mb)


if __name__ == "__main__":
    sys.exit(main())
