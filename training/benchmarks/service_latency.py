"""Latency of the REST service on 127.0.0.1: a real load generator, one uvicorn worker.

What it measures (``distillrec bench service``):

1. **In-process**: ``Recommender.recommend`` of the student for random users (p50/p99, ms) — the
   work one request does, without HTTP.
2. **Over HTTP**: a uvicorn server (one worker, no access log) on 127.0.0.1 serving the bundles;
   ``wrk`` (default; a Lua script sends a random user per request) or ``hey`` (one fixed user)
   drives ``GET /healthz`` and ``POST /v1/recommend`` (the student) at the same concurrency, in
   alternating rounds. Reported per round and as medians: requests per second, p50/p95/p99 (ms),
   errors, and the recommend/healthz throughput ratio of the round.
3. **Student vs teachers**: ``POST /v1/benchmark`` on the running server (same users, same code
   path, interleaved), with the student first so that overlap@k is the teachers' agreement with it.

Prints a markdown report with the targets of issue 5 and writes ``service_latency.json`` and
``service_latency.md`` into ``--out``. Only ever targets 127.0.0.1. Needs the ``serve`` extra, not torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from training.benchmarks.environment import environment, environment_line

HOST = "127.0.0.1"
TARGETS = {"rps_ratio": 0.4, "p99_ms": 25.0, "in_process_p99_ms": 0.5, "speedup_p50": 5.0}


# ------------------------------------------------------------------------------ load generators
def wrk_script(bodies: list[str] | None) -> str:
    """A wrk Lua script: GET (``bodies`` None) or POST of ``bodies`` in turn (random users, shuffled by
    the caller). Requests are formatted once in ``init`` so that the per-request client cost is the
    same small table lookup for both endpoints; a JSON summary is printed at the end."""
    if bodies:
        items = ",\n".join(f"[==[{b}]==]" for b in bodies)
        make = f"""local bodies = {{
{items}
}}
init = function(args)
  for i, b in ipairs(bodies) do reqs[i] = wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, b) end
end"""
    else:
        make = """init = function(args)
  reqs[1] = wrk.format("GET", nil)
end"""
    return f"""local reqs = {{}}
local i = 0
{make}
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
""" + WRK_DONE


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %f, "p95_us": %f, "p99_us": %f, "mean_us": %f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


def parse_wrk(output: str) -> dict:
    """The summary the Lua ``done`` hook prints → rps, latency percentiles (ms), errors."""
    match = re.search(r"WRKJSON (\{.*\})", output)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    s = json.loads(match.group(1))
    errors = s["connect"] + s["read"] + s["write"] + s["status"] + s["timeout"]
    return {
        "requests": s["requests"],
        "rps": s["requests"] / (s["duration_us"] / 1e6),
        "p50_ms": s["p50_us"] / 1e3,
        "p95_ms": s["p95_us"] / 1e3,
        "p99_ms": s["p99_us"] / 1e3,
        "mean_ms": s["mean_us"] / 1e3,
        "errors": errors,
    }


def parse_hey(output: str) -> dict:
    """hey's text summary → rps, latency percentiles (ms), errors (non-2xx responses and transport errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    pct = {int(p): float(v) * 1e3 for p, v in re.findall(r"(\d+)%+ in ([\d.]+) secs", output)}
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)}
    error_part = output.split("Error distribution:")[1] if "Error distribution:" in output else ""
    transport = sum(int(n) for n in re.findall(r"\[(\d+)\]\s", error_part))
    mean = re.search(r"Average:\s+([\d.]+) secs", output)
    return {
        "requests": sum(statuses.values()) + transport,
        "rps": rps,
        "p50_ms": pct.get(50, float("nan")),
        "p95_ms": pct.get(95, float("nan")),
        "p99_ms": pct.get(99, float("nan")),
        "mean_ms": float(mean.group(1)) * 1e3 if mean else float("nan"),
        "errors": sum(n for c, n in statuses.items() if not 200 <= c < 300) + transport,
    }


def run_load(tool: str, url: str, concurrency: int, duration: int, bodies: list[str] | None, workdir: Path) -> dict:
    """One load-generator run against ``url`` (GET when ``bodies`` is None, else POST of the bodies)."""
    if tool == "wrk":
        script = workdir / ("post.lua" if bodies else "get.lua")
        script.write_text(wrk_script(bodies))
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "5s", "-s", str(script), url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
        return {**parse_wrk(out), "command": " ".join(cmd)}
    cmd = ["hey", "-z", f"{duration}s", "-c", str(concurrency)]
    if bodies:
        cmd += ["-m", "POST", "-T", "application/json", "-d", bodies[0]]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    return {**parse_hey(out), "command": " ".join(cmd)}


# --------------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, timeout: float = 600) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url} answered {exc.code}: {exc.read().decode(errors='replace')}") from None


class Server:
    """``uvicorn service.main:app`` with one worker on 127.0.0.1, started and stopped by this script."""

    def __init__(self, models_dir: Path, default_model: str, max_requests: int, ort_threads: int):
        self.port = _free_port()
        self.base = f"http://{HOST}:{self.port}"
        env = {
            **os.environ,
            "DISTILLREC_MODELS_DIR": str(models_dir),
            "DISTILLREC_DEFAULT_MODEL": default_model,
            "DISTILLREC_BENCHMARK_MAX_REQUESTS": str(max(max_requests, 1)),
            "DISTILLREC_ORT_THREADS": str(ort_threads),
            "DISTILLREC_LOG_LEVEL": "warning",
            "OMP_NUM_THREADS": "1",
        }
        self.cmd = [sys.executable, "-m", "uvicorn", "service.main:app", "--host", HOST, "--port", str(self.port), "--workers", "1", "--no-access-log", "--log-level", "warning"]
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read()}")
            try:
                return _http("GET", self.base + "/readyz", timeout=2)
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far, from /proc (Linux)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ----------------------------------------------------------------------------------- measures
def in_process(models_dir: Path, bundle: str, n: int, seed: int = 0) -> dict:
    """p50/p99 (ms) of ``Recommender.recommend`` for ``n`` random users, in this process (1 ORT/FAISS thread)."""
    import faiss

    from service.artifacts import read_latest
    from service.loading import load_recommender

    faiss.omp_set_num_threads(1)
    rec = load_recommender(bundle, read_latest(models_dir / bundle), ort_threads=1)
    rec.warm_up(64)
    users = rec.data.user_ids[np.random.default_rng(seed).integers(0, rec.n_users, size=n)].tolist()
    lat = np.empty(n)
    for i, u in enumerate(users):
        t0 = time.perf_counter()
        rec.recommend(u, 10)
        lat[i] = time.perf_counter() - t0
    ms = lat * 1e3
    return {"bundle": bundle, "requests": n, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def median_of(rows: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def run(models_dir: Path, student: str, teachers: list[str], out: Path, tool: str = "wrk", duration: int = 10, concurrency: int = 16,
        rounds: int = 3, bench_requests: int = 1000, in_process_requests: int = 5000, ort_threads: int = 1, command: str = "") -> dict:
    """Runs the three measurements; writes JSON + markdown into ``out``; returns the report."""
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is not installed (apt-get install {tool}); or pass --tool {'hey' if tool == 'wrk' else 'wrk'}.")
    models_dir = Path(models_dir)
    inproc = in_process(models_dir, student, in_process_requests)
    server = Server(models_dir, student, bench_requests, ort_threads)
    try:
        ready = server.wait_ready()
        loaded = {b["name"]: b for b in ready["loaded"]}
        missing = [b for b in [student, *teachers] if b not in loaded]
        if missing:
            raise RuntimeError(f"bundles not loaded by the server: {missing}; loaded: {sorted(loaded)}; failed: {ready['failed']}")
        from service.artifacts import read_ids, read_latest

        ids = read_ids(read_latest(models_dir / student) / "user_ids.npy").tolist()
        sample = [ids[i] for i in np.random.default_rng(0).integers(0, len(ids), size=min(len(ids), 512))]
        bodies = [json.dumps({"user_id": u, "k": 10}) for u in sample]
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            run_load(tool, server.base + "/healthz", concurrency, 2, None, Path(tmp))  # warm the connection path
            for r in range(rounds):
                order = ["healthz", "recommend"] if r % 2 == 0 else ["recommend", "healthz"]
                res = {}
                for what in order:
                    cpu0 = server.cpu_seconds()
                    if what == "healthz":
                        res[what] = run_load(tool, server.base + "/healthz", concurrency, duration, None, Path(tmp))
                    else:
                        res[what] = run_load(tool, server.base + "/v1/recommend", concurrency, duration, bodies, Path(tmp))
                    # server CPU per request: unlike RPS, it does not depend on what else the machine runs
                    res[what]["server_cpu_us"] = (server.cpu_seconds() - cpu0) * 1e6 / max(1, res[what]["requests"])
                rows.append({"round": r + 1, **res, "rps_ratio": res["recommend"]["rps"] / res["healthz"]["rps"],
                             "cpu_ratio": res["healthz"]["server_cpu_us"] / res["recommend"]["server_cpu_us"]})
        bench = _http("POST", server.base + "/v1/benchmark", {"models": [student, *teachers], "requests": bench_requests, "k": 10, "warmup": min(50, bench_requests)})
    finally:
        server.stop()

    rec_rows = [r["recommend"] for r in rows]
    summary = {
        "healthz_rps": median_of([r["healthz"] for r in rows], "rps"),
        "recommend_rps": median_of(rec_rows, "rps"),
        "rps_ratio": float(statistics.median(r["rps_ratio"] for r in rows)),
        "healthz_server_cpu_us": median_of([r["healthz"] for r in rows], "server_cpu_us"),
        "recommend_server_cpu_us": median_of(rec_rows, "server_cpu_us"),
        "cpu_ratio": float(statistics.median(r["cpu_ratio"] for r in rows)),
        "recommend_p50_ms": median_of(rec_rows, "p50_ms"),
        "recommend_p95_ms": median_of(rec_rows, "p95_ms"),
        "recommend_p99_ms": median_of(rec_rows, "p99_ms"),
        "errors": int(sum(r["healthz"]["errors"] + r["recommend"]["errors"] for r in rows)),
    }
    by_model = {row["model"]: row for row in bench["results"]}
    speedups = {t: by_model[t]["p50_ms"] / by_model[student]["p50_ms"] for t in teachers}
    checks = {
        f"recommend RPS >= {TARGETS['rps_ratio']} x healthz RPS (median of per-round ratios)": summary["rps_ratio"] >= TARGETS["rps_ratio"],
        f"recommend p99 <= {TARGETS['p99_ms']:g} ms (median over rounds)": summary["recommend_p99_ms"] <= TARGETS["p99_ms"],
        "zero errors": summary["errors"] == 0,
        f"in-process student p99 <= {TARGETS['in_process_p99_ms']} ms": inproc["p99_ms"] <= TARGETS["in_process_p99_ms"],
        **{f"student >= {TARGETS['speedup_p50']:g}x faster than {t} at p50": s >= TARGETS["speedup_p50"] for t, s in speedups.items()},
    }
    report = {
        "benchmark": "service-latency",
        "command": command,
        "environment": environment(),
        "tool": tool,
        "concurrency": concurrency,
        "duration_s": duration,
        "rounds": rows,
        "summary": summary,
        "in_process": inproc,
        "server": {"command": " ".join(server.cmd), "workers": 1, "ort_threads": ort_threads},
        "v1_benchmark": bench,
        "speedup_p50": speedups,
        "checks": checks,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "service_latency.json").write_text(json.dumps(report, indent=2))
    md = markdown(report, student)
    (out / "service_latency.md").write_text(md)
    print(md)
    return report


def markdown(report: dict, student: str) -> str:
    """The report as markdown tables."""
    s, ip = report["summary"], report["in_process"]
    lines = [
        f"### Service latency ({report['tool']}, concurrency {report['concurrency']}, {report['duration_s']} s per run, one uvicorn worker, 127.0.0.1)",
        "",
        "| round | healthz RPS | recommend RPS | RPS ratio | recommend p50 / p95 / p99 (ms) | errors | server CPU µs/request healthz / recommend (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        rec = r["recommend"]
        lines.append(
            f"| {r['round']} | {r['healthz']['rps']:,.0f} | {rec['rps']:,.0f} | {r['rps_ratio']:.2f} | {rec['p50_ms']:.2f} / {rec['p95_ms']:.2f} / {rec['p99_ms']:.2f} | "
            f"{r['healthz']['errors'] + rec['errors']} | {r['healthz']['server_cpu_us']:.0f} / {rec['server_cpu_us']:.0f} ({r['cpu_ratio']:.2f}) |"
        )
    lines.append(
        f"| **median** | **{s['healthz_rps']:,.0f}** | **{s['recommend_rps']:,.0f}** | **{s['rps_ratio']:.2f}** | "
        f"**{s['recommend_p50_ms']:.2f} / {s['recommend_p95_ms']:.2f} / {s['recommend_p99_ms']:.2f}** | **{s['errors']}** | "
        f"**{s['healthz_server_cpu_us']:.0f} / {s['recommend_server_cpu_us']:.0f} ({s['cpu_ratio']:.2f})** |"
    )
    lines += ["", "Server CPU per request (user + system time of the uvicorn process / requests) does not depend on other load on the machine; "
              "its healthz/recommend ratio is the throughput ratio a dedicated core would show."]
    lines += [
        "",
        f"In-process `Recommender.recommend` ({student}, {ip['requests']} random users, k=10): p50 {ip['p50_ms']:.3f} ms, p99 {ip['p99_ms']:.3f} ms.",
        "",
        f"`POST /v1/benchmark` ({report['v1_benchmark']['requests']} requests per model, k={report['v1_benchmark']['k']}, same users, interleaved):",
        "",
        "| model | role | family | parameters | p50 ms | p95 ms | p99 ms | req/s | p50 speed-up vs slowest | overlap@10 with student |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["v1_benchmark"]["results"]:
        lines.append(
            f"| {row['model']} | {row['role']} | {row['family']} | {row['parameters']:,} | {row['p50_ms']:.3f} | {row['p95_ms']:.3f} | {row['p99_ms']:.3f} | "
            f"{row['requests_per_second']:,.0f} | {row['speedup_vs_slowest']:.1f}x | {row['overlap_at_k']:.2f} |"
        )
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in report["checks"].items()]
    lines += ["", f"Hardware: {environment_line(report['environment'])}", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)
