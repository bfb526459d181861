"""Accuracy vs parameters vs latency of every served bundle: the students' and the teachers' Pareto picture.

``distillrec bench pareto`` reads, for every bundle of a models dir (or the ones ``--bundles`` lists),
its manifest — role, family, dimension, inference-time parameters and the offline test metrics with
their protocol, exactly as ``distillrec export`` recorded them — and times the bundle's
``Recommender.recommend`` in this process, through the code path the service uses:

* each bundle is loaded like the service's registry loads it (``service.served_models``: ``LATEST``
  version, files verified against their checksums, ONNX Runtime with ``--ort-threads`` intra-op
  threads (default 1), warmed up); FAISS searches on one thread;
* the same sampled users (known to every bundle) are asked of every bundle, k = 10, seen items
  excluded — what ``POST /v1/recommend`` runs, without HTTP;
* the requests are split into ``--rounds`` blocks; in each block every bundle answers the block's
  users back to back (after a few untimed requests), in an order rotated from block to block, so
  that each bundle runs with its own caches hot (as a dedicated server would) while background load
  on a shared machine is spread over all of them;
* per request the wall time (``time.perf_counter``) and the thread's CPU time are taken; p50 / p95 /
  p99 of both are reported.

Written into ``--out``: ``pareto.json`` (every row, the environment, the command), ``pareto.md`` (the
table) and ``pareto.png`` (x = p50 latency on a log scale, y = the offline metric, marker area ∝
parameters). Needs the ``serve`` extra (onnxruntime, faiss) and matplotlib for the plot; never torch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from distillrec.benchmarks.environment import LATENCY_PERCENTILES, environment, footer, pyplot, run_conditions
from training.atomic import write_atomic
from training.errors import DistillrecError

TEACHER_ROLES = ("teacher", "ensemble")
COLOURS = {"student": "tab:blue", "teacher": "tab:red", "ensemble": "tab:purple"}


class BenchmarkError(DistillrecError):
    """An option or a models dir that makes the run meaningless (the message says which and why)."""


@dataclass(frozen=True)
class ParetoSettings:
    requests: int = 2000
    rounds: int = 5
    warmup: int = 20
    k: int = 10
    metric: str = "ndcg@10"
    part: str = "test"
    ort_threads: int = 1
    seed: int = 0

    def check(self) -> None:
        if self.requests < 1 or self.rounds < 1 or self.requests < self.rounds:
            raise BenchmarkError(f"--requests ({self.requests}) must be at least --rounds ({self.rounds}) and both at least 1.")
        if self.k < 1 or self.warmup < 0 or self.ort_threads < 1:
            raise BenchmarkError("--k and --ort-threads must be at least 1, --warmup at least 0.")


# ------------------------------------------------------------------------------- loading
def load_bundles(models_dir: Path, names: list[str] | None, s: ParetoSettings) -> tuple[dict, list[dict]]:
    """(name → Recommender, failures) for ``names`` (default: every bundle), loaded as the service's registry does."""
    from service.bundle.artifacts import bundle_names
    from service.served_models import _load_one  # the registry's own loader: LATEST, checksums, warm-up

    available = bundle_names(models_dir)
    if names is None:
        names = available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise BenchmarkError(f"--bundles: {unknown} not found under {models_dir} (bundles there: {available or 'none'}).")
    if not names:
        raise BenchmarkError(f"no bundles under {models_dir}. Export some with `distillrec export --run RUN --models-dir {models_dir} --bundle NAME`.")
    models, failures = {}, []
    for name in names:
        rec, failure, _ = _load_one(name, models_dir, s.ort_threads, s.warmup)
        if rec is None:
            failures.append(failure.to_dict())
        else:
            models[name] = rec
    if not models:
        raise BenchmarkError(f"no bundle under {models_dir} could be loaded: {failures}")
    return models, failures


# -------------------------------------------------------------------------------- timing
def sample_users(models: dict, s: ParetoSettings) -> dict[str, list[str]]:
    """The users each model is asked for: the same ``requests`` users for all when they share users."""
    from service.latency_benchmark import common_users

    rng = np.random.default_rng(s.seed)
    shared = common_users(list(models.values()))
    if shared:
        users = [shared[i] for i in rng.integers(0, len(shared), size=s.requests)]
        return {name: users for name in models}
    return {name: m.data.user_ids[rng.integers(0, m.n_users, size=s.requests)].tolist() for name, m in models.items()}


def time_models(models: dict, s: ParetoSettings) -> dict[str, dict[str, np.ndarray]]:
    """Wall and thread-CPU seconds per request for every model (see the module doc for the schedule)."""
    from service.threads import one_thread_per_request

    one_thread_per_request()  # FAISS and numpy's BLAS on one thread, as in the service
    users = sample_users(models, s)
    names = list(models)
    times = {n: {"wall": np.empty(s.requests), "cpu": np.empty(s.requests)} for n in names}
    bounds = np.linspace(0, s.requests, s.rounds + 1).astype(int)
    wall, cpu = time.perf_counter, time.thread_time
    for r in range(s.rounds):
        lo, hi = bounds[r], bounds[r + 1]
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rec, block = models[name], users[name][lo:hi]
            for u in block[: s.warmup]:
                rec.recommend(u, s.k)
            w, c = times[name]["wall"], times[name]["cpu"]
            for i, u in enumerate(block, start=lo):
                t0, c0 = wall(), cpu()
                rec.recommend(u, s.k)
                c[i], w[i] = cpu() - c0, wall() - t0
    return times


# ------------------------------------------------------------------------------- the rows
def offline(manifest, s: ParetoSettings) -> dict:
    """The manifest's offline ``s.metric`` on ``s.part`` with its protocol (None where not recorded)."""
    part = (manifest.metrics or {}).get(s.part) or {}
    value = (part.get("metrics") or {}).get(s.metric)
    return {
        "metric": s.metric,
        "part": s.part,
        "value": float(value) if isinstance(value, (int, float)) else None,
        "protocol": part.get("protocol"),
        "users": part.get("users"),
        "excluded": part.get("excluded"),
        "hr@10": (part.get("metrics") or {}).get("hr@10"),
    }


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a * 1e3, q))


def build_rows(models: dict, times: dict, s: ParetoSettings) -> list[dict]:
    """One row per bundle: manifest facts, offline accuracy, latency, speed-up, accuracy ratio, Pareto flags."""
    from service.latency_benchmark import latency_summary

    rows = []
    for name, rec in models.items():
        m = rec.manifest
        w, c = times[name]["wall"], times[name]["cpu"]
        rows.append(
            {
                "bundle": name,
                "version": m.version,
                "role": m.role,
                "family": m.family,
                "dim": m.dim,
                "member_dims": [mem.manifest.dim for mem in getattr(rec, "members", [])] or None,
                "parameters": m.parameters,
                "score_function": m.score_function,
                "index": m.index.factory if m.index else None,
                "data": {"name": m.data.name, "split": m.data.split, "fingerprint": m.data.fingerprint, "users": m.data.n_users, "items": m.data.n_items},
                "teacher": m.teacher,
                "kd": [k.get("method", k) if isinstance(k, dict) else k for k in m.kd],
                "offline": offline(m, s),
                "requests": int(len(w)),
                **latency_summary(w),
                **{f"cpu_p{q}_ms": _pct(c, q) for q in (50, 99)},
                "percentiles_ms": {str(q): _pct(w, q) for q in LATENCY_PERCENTILES},
            }
        )
    slowest = max(r["p50_ms"] for r in rows)
    for r in rows:
        r["speedup_vs_slowest"] = slowest / max(r["p50_ms"], 1e-12)
        teachers = [
            t
            for t in rows
            if t["role"] in TEACHER_ROLES
            and t["offline"]["value"] is not None
            and t["data"]["fingerprint"] == r["data"]["fingerprint"]
            and t["offline"]["protocol"] == r["offline"]["protocol"]
        ]
        best = max(teachers, key=lambda t: t["offline"]["value"], default=None)
        r["best_teacher"] = best["bundle"] if best else None
        ok = best is not None and r["offline"]["value"] is not None and best["offline"]["value"] > 0
        r["accuracy_vs_best_teacher"] = r["offline"]["value"] / best["offline"]["value"] if ok else None
        r["speedup_vs_best_teacher"] = best["p50_ms"] / r["p50_ms"] if best else None
        r["parameters_vs_best_teacher"] = best["parameters"] / r["parameters"] if best and r["parameters"] else None
    mark_pareto(rows, "p50_ms", "pareto_latency")
    mark_pareto(rows, "parameters", "pareto_parameters")
    return sorted(rows, key=lambda r: r["p50_ms"])


def mark_pareto(rows: list[dict], cost: str, flag: str) -> None:
    """``row[flag]``: no other row with the same data and protocol has lower-or-equal ``cost`` and higher-or-equal
    accuracy, one of them strictly (None for rows without an offline metric)."""
    for r in rows:
        a = r["offline"]["value"]
        if a is None:
            r[flag] = None
            continue
        peers = [
            o
            for o in rows
            if o is not r
            and o["offline"]["value"] is not None
            and o["data"]["fingerprint"] == r["data"]["fingerprint"]
            and o["offline"]["protocol"] == r["offline"]["protocol"]
        ]
        r[flag] = not any(o[cost] <= r[cost] and o["offline"]["value"] >= a and (o[cost] < r[cost] or o["offline"]["value"] > a) for o in peers)


# ------------------------------------------------------------------------------- reports
def _fmt(v, spec: str, none: str = "—") -> str:
    return none if v is None else format(v, spec)


def render_markdown(report: dict) -> str:
    s, rows = report["settings"], report["rows"]
    metric = s["metric"].upper()
    lines = [
        f"| bundle | role | family | dim | parameters | {metric} ({s['part']}, protocol) | p50 ms | p99 ms | CPU p50 ms | speed-up vs slowest (p50) | {metric} vs best teacher | Pareto-optimal: latency / params |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        dim = str(r["dim"]) if r["dim"] is not None else ("members " + "+".join(str(d) for d in r["member_dims"]) if r["member_dims"] else "—")
        acc = r["offline"]
        acc_text = f"{acc['value']:.4f} ({acc['protocol']})" if acc["value"] is not None else "not recorded"
        ratio = _fmt(r["accuracy_vs_best_teacher"], ".2f")
        ratio = ratio if r["best_teacher"] is None or r["bundle"] == r["best_teacher"] or ratio == "—" else f"{ratio} (vs {r['best_teacher']})"
        if r["bundle"] == r["best_teacher"]:
            ratio = "1.00 (best teacher)"
        flags = " / ".join({True: "yes", False: "no", None: "—"}[r[f]] for f in ("pareto_latency", "pareto_parameters"))
        lines.append(
            f"| {r['bundle']} | {r['role']} | {r['family']} | {dim} | {r['parameters']:,} | {acc_text} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['cpu_p50_ms']:.3f} | {r['speedup_vs_slowest']:.1f}× | {ratio} | {flags} |"
        )
    lines.append("")
    for r in rows:
        if r["role"] == "student" and r["best_teacher"] and r["accuracy_vs_best_teacher"] is not None:
            lines.append(
                f"- **{r['bundle']}** vs the most accurate teacher **{r['best_teacher']}**: {r['speedup_vs_best_teacher']:.1f}× faster at p50, "
                f"{r['parameters_vs_best_teacher']:.1f}× fewer parameters, {100 * r['accuracy_vs_best_teacher']:.0f} % of its {metric}."
            )
    if report["failed"]:
        lines.append("")
        lines += [f"- not measured: {f['bundle']} ({f['reason']})" for f in report["failed"]]
    datasets = sorted({(r["data"]["name"], r["data"]["split"]) for r in rows})
    lines += [
        "",
        f"Accuracy: the offline {s['part']} {s['metric']} each bundle's manifest records (protocol in brackets; 'full' ranks every item), "
        f"data {', '.join(f'{n} ({sp})' for n, sp in datasets)}; the ratio is to the most accurate teacher or ensemble on the same data and protocol. "
        f"Latency: in-process `Recommender.recommend` (the `POST /v1/recommend` code path without HTTP), k={s['k']}, seen items excluded, "
        f"{s['requests']:,} sampled users per bundle (the same for all) in {s['rounds']} rotated blocks with {s['warmup']} untimed requests each; "
        f"ONNX Runtime {s['ort_threads']} intra-op thread(s), FAISS 1 thread; 'CPU' is the thread's CPU time. "
        f"Pareto-optimal: no other bundle is at least as fast (or as small) and at least as accurate.",
        *footer(report),
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    """Offline metric vs p50 latency (log x), marker area ∝ parameters, whisker to p99; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    rows = [r for r in report["rows"] if r["offline"]["value"] is not None]
    fig, ax = plt.subplots(figsize=(8, 5.2))
    biggest = max((r["parameters"] for r in rows), default=1) or 1
    for r in rows:
        x, y = r["p50_ms"], r["offline"]["value"]
        colour = COLOURS.get(r["role"], "tab:grey")
        ax.plot([x, r["p99_ms"]], [y, y], color=colour, linewidth=1, alpha=0.5)
        ax.scatter([x], [y], s=40 + 1400 * r["parameters"] / biggest, color=colour, alpha=0.55, edgecolors="black", linewidths=0.6, zorder=3)
        ax.annotate(
            f"{r['bundle']}\n{r['parameters']:,} params" + (f", d={r['dim']}" if r["dim"] else ""),
            (x, y),
            xytext=(8, 6),
            textcoords="offset points",
            fontsize=7,
        )
    front = sorted((r for r in rows if r["pareto_latency"]), key=lambda r: r["p50_ms"])
    if len(front) > 1:
        ax.step(
            [r["p50_ms"] for r in front],
            [r["offline"]["value"] for r in front],
            where="post",
            color="grey",
            linestyle="--",
            linewidth=0.9,
            label="Pareto front (latency)",
        )
    for role, colour in COLOURS.items():
        if any(r["role"] == role for r in rows):
            ax.scatter([], [], color=colour, alpha=0.55, edgecolors="black", linewidths=0.6, s=60, label=role)
    s = report["settings"]
    protocols = sorted({r["offline"]["protocol"] or "?" for r in rows})
    ax.set(
        xscale="log",
        xlabel="p50 latency per recommendation, ms (in-process, 1 thread; line to p99)",
        ylabel=f"{s['metric']} ({s['part']}, {'/'.join(protocols)} ranking)",
        title="Accuracy vs latency vs parameters (marker area ∝ parameters)",
    )
    xs = [r["p50_ms"] for r in rows] + [r["p99_ms"] for r in rows]
    if xs:
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.5)
    ys = [r["offline"]["value"] for r in rows]
    if ys:
        pad = max((max(ys) - min(ys)) * 0.25, 0.005)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def command_line(models_dir: Path, out: Path, bundles: list[str] | None, s: ParetoSettings) -> str:
    """The ``distillrec bench pareto`` command that reproduces a run."""
    d = ParetoSettings()
    parts = ["distillrec bench pareto", f"--models-dir {models_dir}"]
    if bundles:
        parts.append("--bundles " + ",".join(bundles))
    for field, value in asdict(s).items():
        if value != getattr(d, field):
            parts.append(f"--{field.replace('_', '-')} {value}")
    parts.append(f"--out {out}")
    return " ".join(parts)


def run(models_dir: Path, out: Path, bundles: list[str] | None = None, s: ParetoSettings = ParetoSettings(), log=print) -> dict:
    """Loads and times the bundles, writes ``pareto.json`` / ``.md`` / ``.png`` into ``out``; returns the report."""
    s.check()
    models_dir, out = Path(models_dir), Path(out)
    env = {**environment(("numpy", "faiss-cpu", "onnxruntime")), **run_conditions()}
    started = time.perf_counter()
    models, failed = load_bundles(models_dir, bundles, s)
    log(f"timing {len(models)} bundles ({', '.join(models)}): {s.requests} requests each …")
    times = time_models(models, s)
    report = {
        "benchmark": "pareto",
        "command": command_line(models_dir, out, bundles, s),
        "environment": env,
        "settings": asdict(s),
        "models_dir": str(models_dir),
        "rows": build_rows(models, times, s),
        "failed": failed,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    report["plot"] = plot(report, out / "pareto.png")
    write_atomic(out / "pareto.json", json.dumps(report, indent=2, default=_json_default))
    text = render_markdown(report)
    (out / "pareto.md").write_text(text + "\n")
    log(text)
    return report


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
