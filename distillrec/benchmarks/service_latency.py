"""Latency of the REST service on 127.0.0.1: a real load generator, one uvicorn worker.

What it measures (``distillrec bench service``):

1. **In-process**: ``Recommender.recommend`` of the student and of every teacher for random users
   (p50/p95/p99, ms) — the work one request does, without HTTP. Each model is loaded and timed on
   its own, ONNX Runtime and FAISS on one thread; teachers get a fifth of the student's requests.
2. **Over HTTP**: a uvicorn server (one worker, no access log) on 127.0.0.1 serving the bundles;
   ``wrk`` (default; a Lua script sends a random user per request) or ``hey`` (one fixed user)
   drives the load. First the headline: ``GET /healthz`` and ``POST /v1/recommend`` for the student
   at the headline concurrency (16 if listed, else the largest), in ``--rounds`` alternating rounds;
   reported per round and as medians: requests per second, p50/p95/p99 (ms), errors, server CPU per
   request and the recommend/healthz throughput ratio of the round. Then the sweep: at every
   concurrency of ``--concurrency`` (default 1,4,16), ``GET /healthz`` and ``POST /v1/recommend`` for
   the student and for each teacher (the body names the model), ``--sweep-rounds`` runs each (the
   headline pair is not run again at its concurrency: its rounds are reused).
3. **Student vs teachers**: ``POST /v1/benchmark`` on the running server (same users, same code
   path, interleaved), with the student first so that overlap@k is the teachers' agreement with it.

Prints a markdown report checked against the latency targets in ``TARGETS`` and writes ``service_latency.json``,
``service_latency.md`` and ``service_latency.png`` (latency percentiles and throughput per model vs
concurrency, and the in-process latency distributions; needs matplotlib, skipped without it) into
``--out``. Only ever targets 127.0.0.1. Needs the ``serve`` extra, not torch.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from distillrec.benchmarks.environment import LATENCY_PERCENTILES, environment, footer, pyplot, run_conditions
from distillrec.http_client import request_json
from distillrec.local_service import LocalService

#: acceptance targets: recommend RPS ≥ 0.4 × healthz RPS, recommend p99 ≤ 25 ms over HTTP, in-process p99 ≤ 0.5 ms,
#: student ≥ 5× faster than each non-factorised teacher at p50 (`/v1/benchmark`)
TARGETS = {"rps_ratio": 0.4, "p99_ms": 25.0, "in_process_p99_ms": 0.5, "speedup_p50": 5.0}
DEFAULT_CONCURRENCY = (1, 4, 16)
#: the concurrency the ``TARGETS`` are checked at (the largest listed one when it is not listed)
HEADLINE_CONCURRENCY = 16


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
    return (
        f"""local reqs = {{}}
local i = 0
{make}
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
"""
        + WRK_DONE
    )


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


# ----------------------------------------------------------------------------------- measures
def in_process(models_dir: Path, bundle: str, n: int, seed: int = 0) -> dict:
    """p50/p99 (ms) of ``Recommender.recommend`` for ``n`` random users, in this process (1 ORT/FAISS/BLAS thread)."""
    from service.bundle.artifacts import read_latest
    from service.latency_benchmark import latency_summary
    from service.loading import load_recommender
    from service.threads import one_thread_per_request

    one_thread_per_request()
    rec = load_recommender(bundle, read_latest(models_dir / bundle), ort_threads=1)
    rec.warm_up(64)
    users = rec.data.user_ids[np.random.default_rng(seed).integers(0, rec.n_users, size=n)].tolist()
    lat = np.empty(n)
    for i, u in enumerate(users):
        t0 = time.perf_counter()
        rec.recommend(u, 10)
        lat[i] = time.perf_counter() - t0
    summary = {k: v for k, v in latency_summary(lat).items() if k != "requests_per_second"}
    return {
        "bundle": bundle,
        "role": rec.role,
        "family": rec.family,
        "parameters": rec.manifest.parameters,
        "requests": n,
        **summary,
        "percentiles_ms": {str(q): float(np.percentile(lat * 1e3, q)) for q in LATENCY_PERCENTILES},
    }


def median_of(rows: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def parse_concurrency(value) -> list[int]:
    """``16``, ``[1, 4, 16]`` or ``"1,4,16"`` → a sorted list of distinct positive ints."""
    if isinstance(value, int):
        values = [value]
    elif isinstance(value, str):
        try:
            values = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--concurrency: {value!r} is not a comma-separated list of integers (e.g. 1,4,16).") from None
    else:
        values = [int(v) for v in value]
    if not values or min(values) < 1:
        raise ValueError(f"--concurrency: {value!r} must list at least one concurrency, each at least 1.")
    return sorted(set(values))


def headline_concurrency(concurrencies: list[int]) -> int:
    """The concurrency the ``TARGETS`` are checked at: 16 when listed, else the largest listed."""
    return HEADLINE_CONCURRENCY if HEADLINE_CONCURRENCY in concurrencies else max(concurrencies)


def aggregate(target: str, role: str, concurrency: int, runs: list[dict]) -> dict:
    """One (target, concurrency) row of the sweep: medians over its runs, errors and requests summed."""
    row = {"target": target, "role": role, "endpoint": "/healthz" if target == "healthz" else "/v1/recommend", "concurrency": concurrency, "rounds": len(runs)}
    for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "server_cpu_us"):
        row[key] = median_of(runs, key)
    row["errors"] = int(sum(r["errors"] for r in runs))
    row["requests"] = int(sum(r["requests"] for r in runs))
    row["runs"] = runs
    return row


def _user_sample(models_dir: Path, models: list[str], size: int = 512) -> list[str]:
    """Up to ``size`` random users known to every model in ``models`` (in the first model's order)."""
    from service.bundle.artifacts import read_ids, read_latest

    ids = read_ids(read_latest(models_dir / models[0]) / "user_ids.npy").tolist()
    shared = set(ids)
    for m in models[1:]:
        shared &= set(read_ids(read_latest(models_dir / m) / "user_ids.npy").tolist())
    ids = [u for u in ids if u in shared]
    if not ids:
        raise RuntimeError(f"bundles {models} share no user ids, so they cannot be driven with the same requests.")
    return [ids[i] for i in np.random.default_rng(0).integers(0, len(ids), size=min(len(ids), size))]


def run(
    models_dir: Path,
    student: str,
    teachers: list[str],
    out: Path,
    tool: str = "wrk",
    duration: int = 10,
    concurrency=DEFAULT_CONCURRENCY,
    rounds: int = 3,
    bench_requests: int = 1000,
    in_process_requests: int = 5000,
    ort_threads: int = 1,
    command: str = "",
    sweep_rounds: int = 1,
    teacher_in_process_requests: int | None = None,
) -> dict:
    """Runs the measurements (see the module doc); writes JSON + markdown + PNG into ``out``; returns the report.

    ``concurrency``: an int or a list (comma-separated string allowed). ``teacher_in_process_requests``
    defaults to a fifth of ``in_process_requests`` (at least 200)."""
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is not installed (apt-get install {tool}); or pass --tool {'hey' if tool == 'wrk' else 'wrk'}.")
    models_dir = Path(models_dir)
    concurrencies = parse_concurrency(concurrency)
    head = headline_concurrency(concurrencies)
    n_teacher = teacher_in_process_requests or max(200, in_process_requests // 5)
    env = {**environment(), **run_conditions()}
    inproc_all = [in_process(models_dir, student, in_process_requests)] + [in_process(models_dir, t, n_teacher) for t in teachers]
    inproc = inproc_all[0]
    server = LocalService(
        models_dir,
        student,
        settings={"BENCHMARK_MAX_REQUESTS": max(bench_requests, 1), "ORT_THREADS": ort_threads},
        quiet=True,
        extra_env={"OMP_NUM_THREADS": "1"},
    )
    try:
        ready = server.start()
        loaded = {b["name"]: b for b in ready["loaded"]}
        missing = [b for b in [student, *teachers] if b not in loaded]
        if missing:
            raise RuntimeError(f"bundles not loaded by the server: {missing}; loaded: {sorted(loaded)}; failed: {ready['failed']}")
        roles = {"healthz": "healthz", **{b: loaded[b]["role"] for b in [student, *teachers]}}
        sample = _user_sample(models_dir, [student, *teachers])
        bodies = {m: [json.dumps({"user_id": u, "k": 10, "model": m}) for u in sample] for m in [student, *teachers]}

        def measure(target: str, c: int, workdir: Path) -> dict:
            cpu0 = server.cpu_seconds()
            if target == "healthz":
                res = run_load(tool, server.base + "/healthz", c, duration, None, workdir)
            else:
                res = run_load(tool, server.base + "/v1/recommend", c, duration, bodies[target], workdir)
            # server CPU per request: unlike RPS, it does not depend on what else the machine runs
            res["server_cpu_us"] = (server.cpu_seconds() - cpu0) * 1e6 / max(1, res["requests"])
            return res

        rows, sweep = [], {}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            run_load(tool, server.base + "/healthz", head, 2, None, work)  # warm the connection path
            # the headline: healthz vs the student at the headline concurrency, alternating rounds
            for r in range(rounds):
                order = ["healthz", student] if r % 2 == 0 else [student, "healthz"]
                res = {("healthz" if what == "healthz" else "recommend"): measure(what, head, work) for what in order}
                rows.append(
                    {
                        "round": r + 1,
                        **res,
                        "rps_ratio": res["recommend"]["rps"] / res["healthz"]["rps"],
                        "cpu_ratio": res["healthz"]["server_cpu_us"] / res["recommend"]["server_cpu_us"],
                    }
                )
            sweep[("healthz", head)] = [r["healthz"] for r in rows]
            sweep[(student, head)] = [r["recommend"] for r in rows]
            # the sweep: every target at every concurrency; the order flips from one concurrency to the next
            targets = ["healthz", student, *teachers]
            for i, c in enumerate(concurrencies):
                for target in targets if i % 2 == 0 else targets[::-1]:
                    if (target, c) not in sweep:
                        sweep[(target, c)] = [measure(target, c, work) for _ in range(sweep_rounds)]
        bench = request_json(
            "POST", server.base + "/v1/benchmark", {"models": [student, *teachers], "requests": bench_requests, "k": 10, "warmup": min(50, bench_requests)}
        )
    finally:
        server.stop()

    load = [aggregate(target, roles[target], c, sweep[(target, c)]) for c in concurrencies for target in ["healthz", student, *teachers]]
    by_key = {(row["target"], row["concurrency"]): row for row in load}
    for row in load:
        row["rps_vs_healthz"] = row["rps"] / by_key[("healthz", row["concurrency"])]["rps"]
        row["p50_vs_student"] = None if row["target"] == "healthz" else row["p50_ms"] / by_key[(student, row["concurrency"])]["p50_ms"]

    rec_rows = [r["recommend"] for r in rows]
    summary = {
        "concurrency": head,
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
        "load_errors": int(sum(row["errors"] for row in load)),
    }
    by_model = {row["model"]: row for row in bench["results"]}
    speedups = {t: by_model[t]["p50_ms"] / by_model[student]["p50_ms"] for t in teachers}
    checks = {
        f"recommend RPS >= {TARGETS['rps_ratio']} x healthz RPS at concurrency {head} (median of per-round ratios)": summary["rps_ratio"]
        >= TARGETS["rps_ratio"],
        f"recommend p99 <= {TARGETS['p99_ms']:g} ms at concurrency {head} (median over rounds)": summary["recommend_p99_ms"] <= TARGETS["p99_ms"],
        "zero errors (every load run)": summary["load_errors"] == 0,
        f"in-process student p99 <= {TARGETS['in_process_p99_ms']} ms": inproc["p99_ms"] <= TARGETS["in_process_p99_ms"],
        **{f"student >= {TARGETS['speedup_p50']:g}x faster than {t} at p50": s >= TARGETS["speedup_p50"] for t, s in speedups.items()},
    }
    report = {
        "benchmark": "service-latency",
        "command": command,
        "environment": env,
        "tool": tool,
        "student": student,
        "teachers": teachers,
        "concurrency": head,
        "concurrencies": concurrencies,
        "duration_s": duration,
        "sweep_rounds": sweep_rounds,
        "rounds": rows,
        "summary": summary,
        "load": load,
        "in_process": inproc,
        "in_process_models": inproc_all,
        "server": {"command": " ".join(server.cmd), "workers": 1, "ort_threads": ort_threads},
        "v1_benchmark": bench,
        "speedup_p50": speedups,
        "checks": checks,
    }
    out.mkdir(parents=True, exist_ok=True)
    report["plot"] = plot(report, out / "service_latency.png")
    (out / "service_latency.json").write_text(json.dumps(report, indent=2))
    md = markdown(report, student)
    (out / "service_latency.md").write_text(md)
    print(md)
    return report


def markdown(report: dict, student: str) -> str:
    """The report as markdown tables."""
    s, ip = report["summary"], report["in_process"]
    lines = [
        f"### Service latency ({report['tool']}, {report['duration_s']} s per run, one uvicorn worker, 127.0.0.1)",
        "",
        f"#### Student vs `/healthz` at concurrency {report['concurrency']} ({len(report['rounds'])} alternating round(s))",
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
    lines += [
        "",
        "Server CPU per request (user + system time of the uvicorn process / requests) does not depend on other load on the machine; "
        "its healthz/recommend ratio is the throughput ratio a dedicated core would show.",
    ]
    if report.get("load"):
        lines += [
            "",
            f"#### Over HTTP by model and concurrency (`POST /v1/recommend` naming the model, `GET /healthz`; "
            f"medians of {len(report['rounds'])} round(s) for the headline pair at concurrency {report['concurrency']}, else {report['sweep_rounds']} run(s))",
            "",
            "| target | role | concurrency | RPS | p50 / p95 / p99 (ms) | errors | server CPU µs/request | RPS / healthz RPS | p50 / student p50 |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for row in report["load"]:
            vs = "—" if row["p50_vs_student"] is None else f"{row['p50_vs_student']:.1f}×"
            lines.append(
                f"| {row['target']} | {row['role']} | {row['concurrency']} | {row['rps']:,.0f} | {row['p50_ms']:.2f} / {row['p95_ms']:.2f} / {row['p99_ms']:.2f} | "
                f"{row['errors']} | {row['server_cpu_us']:.0f} | {row['rps_vs_healthz']:.2f} | {vs} |"
            )
    lines += [
        "",
        f"In-process `Recommender.recommend` ({student}, {ip['requests']} random users, k=10): p50 {ip['p50_ms']:.3f} ms, p99 {ip['p99_ms']:.3f} ms.",
    ]
    models = report.get("in_process_models") or [ip]
    if len(models) > 1:
        lines += [
            "",
            "In-process, each model loaded and timed alone (k=10, seen items excluded, ONNX Runtime, FAISS and numpy's BLAS on 1 thread):",
            "",
            "| model | role | parameters | requests | p50 ms | p95 ms | p99 ms | mean ms | p50 / student p50 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in models:
            lines.append(
                f"| {m['bundle']} | {m.get('role', '')} | {m.get('parameters', 0):,} | {m['requests']:,} | {m['p50_ms']:.3f} | {m.get('p95_ms', float('nan')):.3f} | "
                f"{m['p99_ms']:.3f} | {m['mean_ms']:.3f} | {m['p50_ms'] / ip['p50_ms']:.1f}× |"
            )
    lines += [
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
    lines += ["", *footer(report), ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    """HTTP p50/p99 and RPS per target vs concurrency, and the in-process latency distributions; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    import matplotlib.ticker

    fig, (ax_lat, ax_rps, ax_in) = plt.subplots(1, 3, figsize=(15, 4.6))
    targets = list(dict.fromkeys(row["target"] for row in report["load"]))
    colours = {t: plt.cm.tab10(i) for i, t in enumerate(targets)}
    for t in targets:
        rs = sorted((row for row in report["load"] if row["target"] == t), key=lambda row: row["concurrency"])
        cs = [row["concurrency"] for row in rs]
        ax_lat.plot(cs, [row["p50_ms"] for row in rs], marker="o", markersize=4, color=colours[t], label=t)
        ax_lat.plot(cs, [row["p99_ms"] for row in rs], linestyle="--", marker="^", markersize=4, color=colours[t])
        ax_rps.plot(cs, [row["rps"] for row in rs], marker="o", color=colours[t], label=t)
    for ax, title, ylabel in ((ax_lat, "HTTP latency: p50 (solid), p99 (dashed)", "ms"), (ax_rps, "HTTP throughput", "requests / s")):
        ax.set(xscale="log", yscale="log", xlabel="concurrent connections", ylabel=ylabel, title=title)
        ax.set_xticks(report["concurrencies"], [str(c) for c in report["concurrencies"]])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    ax_lat.legend(fontsize=7)
    ax_rps.legend(fontsize=7)
    for m in report["in_process_models"]:
        qs = sorted(m["percentiles_ms"].items(), key=lambda kv: float(kv[0]))
        ax_in.plot([float(k) for k, _ in qs], [v for _, v in qs], marker="o", markersize=3, color=colours.get(m["bundle"], "black"), label=m["bundle"])
    ax_in.set(yscale="log", xlim=(0, 100), xlabel="percentile", ylabel="ms", title="In-process recommend: latency by percentile")
    ax_in.grid(True, which="both", alpha=0.3)
    ax_in.legend(fontsize=7)
    fig.suptitle(f"distillrec service on 127.0.0.1, one uvicorn worker ({report['tool']}, {report['duration_s']} s per run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
