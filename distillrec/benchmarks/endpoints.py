"""Student vs teacher *endpoints* over HTTP, and what shadow mode costs the student.

1. **Endpoints**: every bundle is served by its own ``uvicorn service.main:app`` process (one worker,
   127.0.0.1). For each teacher, :func:`service.comparison.run_comparison` (the measurement behind
   ``POST /v1/compare`` and ``distillrec compare``) sends the same sampled users to the teacher's and
   the student's ``POST /v1/recommend``, interleaved user by user, at each concurrency: end-to-end
   latency of both as a Python HTTP client sees it, their ratio, and the agreement of the student's
   lists with the teacher's. Then wrk/hey drives each process alone with the same users at each
   concurrency (teacher and student alternating), so that the ratio under load is not limited by the
   Python client; the server's CPU time per request (from ``/proc``) does not depend on other load.
2. **Shadow mode**: student processes with shadow mode off and at each fraction (mirroring to one
   teacher process) take the same load from wrk/hey in alternating rounds, closed-loop or at a fixed
   rate (``rate``, with hey); the student's p50/p99, throughput and CPU time per request per fraction
   (medians over rounds), the overhead against "off", and the mirrors answered, failed and dropped
   (from the student's ``/metrics``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from distillrec.benchmarks.environment import conditions_line, environment, publish, pyplot, run_conditions
from distillrec.benchmarks.service_latency import _user_sample, parse_hey, run_load
from distillrec.local_service import LocalService
from service.comparison import Target, run_comparison

SHADOW_TARGET_OVERHEAD = 0.10  # p99 overhead allowed at a 10 % mirror fraction
SHADOW_LOAD_CONCURRENCY = 16


def compare_endpoints(servers: dict[str, LocalService], student: str, teachers: list[str], users: list[str], concurrencies: list[int], k: int) -> list[dict]:
    """One comparison per (teacher, concurrency): the teacher's process is the reference."""
    rows = []
    for teacher in teachers:
        for c in concurrencies:
            targets = [Target(teacher, "url", servers[teacher].base), Target(student, "url", servers[student].base)]
            run = asyncio.run(run_comparison(targets, users, k, c, timeout=10.0, max_seconds=600.0, reference=0))
            t, s = run["targets"]
            rows.append(
                {
                    "teacher": teacher,
                    "concurrency": c,
                    "users": run["users_done"],
                    "wall_s": run["wall_s"],
                    "teacher_p50_ms": t["p50_ms"],
                    "teacher_p99_ms": t["p99_ms"],
                    "student_p50_ms": s["p50_ms"],
                    "student_p99_ms": s["p99_ms"],
                    "p50_ratio": _ratio(t["p50_ms"], s["p50_ms"]),
                    "p99_ratio": _ratio(t["p99_ms"], s["p99_ms"]),
                    "teacher_rps": t["throughput_rps"],
                    "student_rps": s["throughput_rps"],
                    "errors": t["errors"] + s["errors"],
                    "agreement": s["agreement"],
                }
            )
            print(
                f"  {teacher} vs {student} at concurrency {c}: p50 {t['p50_ms']:.2f} / {s['p50_ms']:.2f} ms, overlap {s['agreement']['overlap_at_k']:.3f}",
                flush=True,
            )
    return rows


def measured_load(server: LocalService, tool: str, concurrency: int, duration: int, bodies: list[str], workdir: Path, rate: int | None = None) -> dict:
    """One wrk/hey run against ``server``'s ``POST /v1/recommend`` with the server's CPU time per request."""
    cpu0 = server.cpu_seconds()
    url = f"{server.base}/v1/recommend"
    if rate:
        cmd = [
            "hey",
            "-z",
            f"{duration}s",
            "-c",
            str(concurrency),
            "-q",
            f"{rate / concurrency:g}",
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            bodies[0],
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
        result = {**parse_hey(out), "command": " ".join(cmd[:-3] + ["BODY", url])}
    else:
        result = run_load(tool, url, concurrency, duration, bodies, workdir)
    result["server_cpu_ms"] = (server.cpu_seconds() - cpu0) * 1e3 / max(1, result["requests"])
    return result


def load_ratios(
    servers: dict[str, LocalService], student: str, teachers: list[str], bodies: list[str], concurrencies: list[int], tool: str, duration: int, workdir: Path
) -> list[dict]:
    """wrk/hey against the teacher's and the student's process alone (same users), alternating which goes first."""
    rows = []
    for i, (teacher, c) in enumerate((t, c) for t in teachers for c in concurrencies):
        order = [teacher, student] if i % 2 == 0 else [student, teacher]
        res = {name: measured_load(servers[name], tool, c, duration, bodies, workdir) for name in order}
        t, s = res[teacher], res[student]
        rows.append(
            {
                "teacher": teacher,
                "concurrency": c,
                "teacher_load": t,
                "student_load": s,
                "p50_ratio": _ratio(t["p50_ms"], s["p50_ms"]),
                "p99_ratio": _ratio(t["p99_ms"], s["p99_ms"]),
                "rps_ratio": _ratio(s["rps"], t["rps"]),
                "cpu_ratio": _ratio(t["server_cpu_ms"], s["server_cpu_ms"]),
            }
        )
        print(f"  {tool} c={c}: {teacher} p50 {t['p50_ms']:.2f} ms {t['rps']:.0f} req/s, {student} p50 {s['p50_ms']:.2f} ms {s['rps']:.0f} req/s", flush=True)
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _shadow_counts(base: str, endpoint: str) -> dict:
    """Mirror outcomes and drops so far, from the student's Prometheus exposition."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts = {"ok": 0.0, "failed": 0.0, "dropped": 0.0}
    for line in text.splitlines():
        if line.startswith("distillrec_shadow_requests_total{") and f'endpoint="{endpoint}"' in line:
            counts["ok" if 'outcome="ok"' in line else "failed"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("distillrec_shadow_dropped_total{") and f'endpoint="{endpoint}"' in line:
            counts["dropped"] += float(line.rsplit(" ", 1)[1])
    return counts


def bench_service(models_dir: Path, default_model: str, settings: dict | None = None) -> LocalService:
    """One service process as the benchmark runs it: one ONNX Runtime and one OpenMP thread, quiet logs."""
    return LocalService(
        models_dir,
        default_model,
        settings={"BENCHMARK_MAX_REQUESTS": 1000, "ORT_THREADS": 1, **(settings or {})},
        quiet=True,
        extra_env={"OMP_NUM_THREADS": "1"},
    )


def shadow_overhead(
    models_dir: Path,
    student: str,
    teacher: LocalService,
    users: list[str],
    fractions: list[float],
    tool: str,
    duration: int,
    rounds: int,
    workdir: Path,
    rate: int | None = None,
) -> list[dict]:
    """The student's latency under load with shadow mode at each fraction (0 = off), rounds alternating."""
    endpoint = "shadow-teacher"
    servers = {}
    try:
        for f in fractions:
            settings = {"TEACHER_ENDPOINTS": f"{endpoint}={teacher.base}"}
            if f > 0:
                settings |= {"SHADOW_ENDPOINT": endpoint, "SHADOW_FRACTION": f}
            servers[f] = bench_service(models_dir, student, settings)
        for server in servers.values():
            server.start()
        bodies = [json.dumps({"user_id": u, "k": 10}) for u in users]
        runs: dict[float, list[dict]] = {f: [] for f in fractions}
        for r in range(rounds):
            order = fractions[r % len(fractions) :] + fractions[: r % len(fractions)]  # who goes first rotates
            for f in order:
                before = _shadow_counts(servers[f].base, endpoint)
                result = measured_load(servers[f], tool, SHADOW_LOAD_CONCURRENCY, duration, bodies, workdir, rate)
                time.sleep(1.0)  # let the last mirrors finish
                after = _shadow_counts(servers[f].base, endpoint)
                runs[f].append({**result, **{f"mirrors_{key}": after[key] - before[key] for key in after}})
                print(
                    f"  shadow {100 * f:.0f} %, round {r + 1}: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, {result['rps']:.0f} req/s",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    rows = []
    for f in fractions:
        med = {key: statistics.median(run[key] for run in runs[f]) for key in ("p50_ms", "p99_ms", "rps", "server_cpu_ms")}
        totals = {key: sum(run[key] for run in runs[f]) for key in ("requests", "errors", "mirrors_ok", "mirrors_failed", "mirrors_dropped")}
        rows.append({"fraction": f, **med, **totals, "runs": runs[f]})
    off = rows[0]
    for row in rows:
        row["p99_overhead"] = row["p99_ms"] / off["p99_ms"] - 1.0
        row["p50_overhead"] = row["p50_ms"] / off["p50_ms"] - 1.0
        row["cpu_overhead"] = row["server_cpu_ms"] / off["server_cpu_ms"] - 1.0
        # the same round's runs are minutes apart at most: the median of per-round ratios cancels slow drifts of the background load
        row["p99_overhead_paired"] = statistics.median(mine["p99_ms"] / base["p99_ms"] for mine, base in zip(row["runs"], off["runs"])) - 1.0
    return rows


def run(
    models_dir: Path,
    student: str,
    teachers: list[str],
    out: Path,
    requests: int = 500,
    concurrency: list[int] | None = None,
    k: int = 10,
    shadow_teacher: str | None = None,
    fractions: list[float] | None = None,
    tool: str = "wrk",
    duration: int = 10,
    rounds: int = 3,
    rate: int | None = None,
    command: str = "",
) -> dict:
    """Runs both parts (see the module doc); writes endpoints.json / .md / .png into ``out``; returns the report."""
    concurrency = concurrency or [1, 16]
    fractions = fractions or [0.0, 0.1, 1.0]
    if fractions[0] != 0.0:
        fractions = [0.0, *fractions]
    shadow_teacher = shadow_teacher or teachers[0]
    users = _user_sample(models_dir, [student, *teachers], size=requests)
    servers = {b: bench_service(models_dir, b) for b in dict.fromkeys([student, *teachers])}
    conditions = run_conditions()
    try:
        for server in servers.values():
            server.start()
        print(f"comparing {student} with {', '.join(teachers)} over HTTP ({len(users)} users)", flush=True)
        compared = compare_endpoints(servers, student, teachers, users, concurrency, k)
        bodies = [json.dumps({"user_id": u, "k": k}) for u in users]
        with tempfile.TemporaryDirectory() as tmp:
            print(f"each process alone under {tool}", flush=True)
            loads = load_ratios(servers, student, teachers, bodies, concurrency, tool, duration, Path(tmp))
            print(f"shadow mode: {student} mirroring to {shadow_teacher} at {', '.join(f'{100 * f:.0f} %' for f in fractions)}", flush=True)
            shadow = shadow_overhead(models_dir, student, servers[shadow_teacher], users, fractions, tool, duration, rounds, Path(tmp), rate)
    finally:
        for server in servers.values():
            server.stop()
    report = {
        "student": student,
        "teachers": teachers,
        "users": len(users),
        "k": k,
        "concurrency": concurrency,
        "compare": compared,
        "load": {"tool": tool, "duration_s": duration, "rows": loads},
        "shadow": {
            "teacher": shadow_teacher,
            "tool": "hey" if rate else tool,
            "rate": rate,
            "duration_s": duration,
            "rounds": rounds,
            "load_concurrency": SHADOW_LOAD_CONCURRENCY,
            "rows": shadow,
        },
        "environment": {**environment(("numpy", "onnxruntime", "faiss-cpu", "fastapi", "uvicorn", "httpx")), **conditions},
        "command": command,
    }
    ten = next((row for row in shadow if abs(row["fraction"] - 0.1) < 1e-9), None)
    report["shadow_target"] = {
        "fraction": 0.1,
        "max_p99_overhead": SHADOW_TARGET_OVERHEAD,
        "p99_overhead": ten["p99_overhead"] if ten else None,
        "cpu_overhead": ten["cpu_overhead"] if ten else None,
        "met": bool(ten and ten["p99_overhead"] < SHADOW_TARGET_OVERHEAD),
    }
    publish(out, "endpoints", report, markdown(report))
    if plot(report, Path(out) / "endpoints.png"):
        print(f"wrote {Path(out) / 'endpoints.png'}")
    return report


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> list[str]:
    k = report["k"]
    lines = [
        f"### {report['student']} vs teacher endpoints (each bundle in its own uvicorn process, 127.0.0.1, {report['users']} users, k = {k})",
        "",
        f"| teacher | concurrency | teacher p50 / p99 ms | student p50 / p99 ms | p50 ratio | p99 ratio | teacher / student req/s (c / mean) | errors | overlap@{k} | RBO | Kendall τ | NDCG@{k} vs teacher |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["compare"]:
        a = r["agreement"]
        lines.append(
            f"| {r['teacher']} | {r['concurrency']} | {_f(r['teacher_p50_ms'])} / {_f(r['teacher_p99_ms'])} | {_f(r['student_p50_ms'])} / {_f(r['student_p99_ms'])} | "
            f"{_f(r['p50_ratio'])}× | {_f(r['p99_ratio'])}× | {_f(r['teacher_rps'], 0)} / {_f(r['student_rps'], 0)} | {r['errors']} | "
            f"{_f(a['overlap_at_k'], 3)} | {_f(a['rbo'], 3)} | {_f(a['kendall_tau'], 3)} | {_f(a['ndcg_at_k'], 3)} |"
        )
    ld = report["load"]
    lines += [
        "",
        f"### Each process alone under {ld['tool']} ({ld['duration_s']} s per run, same users; teacher / student ratios)",
        "",
        "| teacher | concurrency | teacher p50 / p99 ms | student p50 / p99 ms | p50 ratio | p99 ratio | teacher / student req/s | server CPU ms per request, teacher / student | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ld["rows"]:
        t, s = r["teacher_load"], r["student_load"]
        lines.append(
            f"| {r['teacher']} | {r['concurrency']} | {_f(t['p50_ms'])} / {_f(t['p99_ms'])} | {_f(s['p50_ms'])} / {_f(s['p99_ms'])} | {_f(r['p50_ratio'])}× | "
            f"{_f(r['p99_ratio'])}× | {_f(t['rps'], 0)} / {_f(s['rps'], 0)} | {_f(t['server_cpu_ms'], 3)} / {_f(s['server_cpu_ms'], 3)} | {t['errors'] + s['errors']} |"
        )
    sh = report["shadow"]
    load = f"hey at {sh['rate']} req/s" if sh["rate"] else f"{sh['tool']}, closed loop"
    lines += [
        "",
        f"### Shadow mode: the student's latency while mirroring to {sh['teacher']} ({load}, concurrency {sh['load_concurrency']}, "
        f"{sh['duration_s']} s per run, medians of {sh['rounds']} alternating rounds)",
        "",
        "| mirrored | student p50 ms | student p99 ms | p99 vs off | p99 vs off, median of per-round ratios | req/s | server CPU ms per request | CPU vs off | requests | failed | mirrors answered | mirrors failed | mirrors dropped |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sh["rows"]:
        label = "off" if r["fraction"] == 0 else f"{100 * r['fraction']:.0f} %"
        lines.append(
            f"| {label} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | {100 * r['p99_overhead']:+.1f} % | {100 * r['p99_overhead_paired']:+.1f} % | {_f(r['rps'], 0)} | {_f(r['server_cpu_ms'], 3)} | "
            f"{100 * r['cpu_overhead']:+.1f} % | {r['requests']} | {r['errors']} | {r['mirrors_ok']:.0f} | {r['mirrors_failed']:.0f} | {r['mirrors_dropped']:.0f} |"
        )
    t = report["shadow_target"]
    if t["p99_overhead"] is not None:
        lines += [
            "",
            f"Shadow mode at 10 %: p99 {100 * t['p99_overhead']:+.1f} % against off (target: under {100 * t['max_p99_overhead']:.0f} %) — "
            f"{'met' if t['met'] else 'missed'}; the student's CPU time per request {100 * t['cpu_overhead']:+.1f} %.",
        ]
    conditions = conditions_line(report["environment"])
    return lines + (["", f"Run conditions: {conditions}."] if conditions else [])


def plot(report: dict, path: Path) -> bool:
    """p50/p99 ratios and agreement per teacher; the student's p99 by shadow fraction. False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    import numpy as np

    fig, (ax_ratio, ax_agree, ax_shadow) = plt.subplots(1, 3, figsize=(15, 4.4))
    rows = report["load"]["rows"]
    labels = [f"{r['teacher']}\nc={r['concurrency']}" for r in rows]
    x = np.arange(len(rows))
    ax_ratio.bar(x - 0.2, [r["p50_ratio"] or 0 for r in rows], 0.4, label="p50")
    ax_ratio.bar(x + 0.2, [r["p99_ratio"] or 0 for r in rows], 0.4, label="p99")
    ax_ratio.axhline(1.0, color="black", linewidth=0.8)
    ax_ratio.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
    ax_ratio.set(ylabel="teacher latency / student latency", title=f"latency ratio over HTTP, each process alone ({report['load']['tool']})")
    ax_ratio.legend(fontsize=8)
    first = [r for r in report["compare"] if r["concurrency"] == report["concurrency"][0]]
    measures = [("overlap_at_k", "overlap@k"), ("rbo", "RBO"), ("ndcg_at_k", "NDCG@k")]
    for i, (key, label) in enumerate(measures):
        ax_agree.bar(np.arange(len(first)) + (i - 1) * 0.27, [r["agreement"][key] or 0 for r in first], 0.27, label=label)
    ax_agree.set_xticks(np.arange(len(first)), [r["teacher"] for r in first], fontsize=8, rotation=15)
    ax_agree.set(ylim=(0, 1.05), title=f"agreement of {report['student']} with each teacher")
    ax_agree.legend(fontsize=8, loc="lower right")
    sh = report["shadow"]["rows"]
    names = ["off" if r["fraction"] == 0 else f"{100 * r['fraction']:.0f} %" for r in sh]
    ax_shadow.bar(np.arange(len(sh)) - 0.2, [r["p50_ms"] for r in sh], 0.4, label="p50")
    ax_shadow.bar(np.arange(len(sh)) + 0.2, [r["p99_ms"] for r in sh], 0.4, label="p99")
    ax_shadow.set_xticks(np.arange(len(sh)), names)
    ax_shadow.set(xlabel="requests mirrored to the teacher", ylabel="ms", title=f"student latency under load (c={report['shadow']['load_concurrency']})")
    ax_shadow.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
