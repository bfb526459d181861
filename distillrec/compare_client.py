"""``distillrec compare``: compare deployed recommendation services through their public HTTP API only.

Torch-free: it needs httpx and numpy (the ``serve`` extra) and, for the PNG, matplotlib (imported
only when the plot is written). The measurement is :func:`service.comparison.run_comparison`, the
same one ``POST /v1/compare`` runs inside a service.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from service.comparison import Target, run_comparison
from service.remote import parse_base_url


def parse_target(spec: str, default_name: str) -> Target:
    """``[NAME=]URL[#MODEL]`` → a :class:`Target` (ValueError naming the spec and the expected form)."""
    name, sep, rest = spec.partition("=")
    if not sep or "://" in name:
        name, rest = default_name, spec
    url, _, model = rest.partition("#")
    return Target(name.strip(), "url", parse_base_url(url, f"target {spec!r} ([NAME=]URL[#MODEL])"), model.strip() or None)


def parse_users(spec: str) -> list[str]:
    """User ids from a file (one per line), a numeric range ``FIRST-LAST`` or a comma-separated list."""
    path = Path(spec)
    if path.is_file():
        users = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif "-" in spec and all(part.strip().isdigit() for part in spec.split("-", 1)):
        first, last = (int(part) for part in spec.split("-", 1))
        users = [str(u) for u in range(first, last + 1)]
    else:
        users = [u.strip() for u in spec.split(",") if u.strip()]
    if not users:
        raise ValueError(f"--users {spec!r} gives no user ids: pass a file with one id per line, a range such as 1-943, or a comma-separated list.")
    return users


def sample(users: list[str], n: int, seed: int) -> list[str]:
    """``n`` users drawn with a seeded generator (without replacement while there are enough)."""
    picks = np.random.default_rng(seed).choice(len(users), size=n, replace=n > len(users))
    return [users[i] for i in picks]


def compare(targets: list[Target], users: list[str], k: int, concurrencies: list[int], timeout: float, max_seconds: float) -> dict:
    """One :func:`run_comparison` per concurrency (the first target is the reference)."""
    runs = [asyncio.run(run_comparison(targets, users, k, c, timeout, max_seconds, reference=0, samples=True)) for c in concurrencies]
    return {"targets": [t.__dict__ for t in targets], "users": len(users), "k": k, "runs": runs}


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(report: dict) -> str:
    """A markdown table: one row per (concurrency, target)."""
    k = report["k"]
    lines = [
        f"| concurrency | target | ok / requests | errors (timeouts) | p50 ms | p95 ms | p99 ms | mean ms | req/s | p50 speed-up vs reference | overlap@{k} | RBO | Kendall τ | NDCG@{k} vs reference |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        for t in run["targets"]:
            a = t["agreement"]
            name = f"{t['name']} (reference)" if t["name"] == run["reference"] else t["name"]
            lines.append(
                f"| {run['concurrency']} | {name} | {t['ok']} / {t['requests']} | {t['errors']} ({t['timeouts']}) | {_fmt(t['p50_ms'])} | {_fmt(t['p95_ms'])} | "
                f"{_fmt(t['p99_ms'])} | {_fmt(t['mean_ms'])} | {_fmt(t['throughput_rps'], 0)} | {_fmt(t['speedup_p50_vs_reference'])} | "
                f"{_fmt(a['overlap_at_k'], 3)} | {_fmt(a['rbo'], 3)} | {_fmt(a['kendall_tau'], 3)} | {_fmt(a['ndcg_at_k'], 3)} |"
            )
    notes = [f"{r['concurrency']}: stopped early after {r['users_done']} of {r['users_sampled']} users" for r in report["runs"] if r["stopped_early"]]
    return "\n".join(lines + ([f"\nStopped at the wall-time limit (concurrency {'; '.join(notes)})."] if notes else []))


def plot(report: dict, path: Path) -> bool:
    """Latency distributions (per concurrency) and agreement with the reference; False without matplotlib."""
    from distillrec.benchmarks.environment import pyplot

    plt = pyplot()
    if plt is None:
        return False
    runs = report["runs"]
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(5 * (len(runs) + 1), 4.2))
    names = [t["name"] for t in runs[0]["targets"]]
    colours = {n: plt.cm.tab10(i) for i, n in enumerate(names)}
    for ax, run in zip(axes, runs):
        for t in run["targets"]:
            ms = np.sort(np.asarray(t.get("latencies_ms", []), dtype=float))
            if len(ms):
                ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), color=colours[t["name"]], label=f"{t['name']} (p99 {np.percentile(ms, 99):.1f} ms)")
        ax.set(xscale="log", xlabel="end-to-end latency (ms)", ylabel="share of requests", title=f"latency distribution, concurrency {run['concurrency']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    measures = [("overlap_at_k", f"overlap@{report['k']}"), ("rbo", "RBO"), ("ndcg_at_k", f"NDCG@{report['k']}")]
    others = [t for t in runs[0]["targets"] if t["name"] != runs[0]["reference"]]
    width = 0.8 / max(1, len(others))
    for i, t in enumerate(others):
        values = [t["agreement"][m] or 0.0 for m, _ in measures]
        ax.bar(np.arange(len(measures)) + i * width, values, width, color=colours[t["name"]], label=t["name"])
    ax.set_xticks(np.arange(len(measures)) + width * (len(others) - 1) / 2, [label for _, label in measures])
    ax.set(ylim=(0, 1.05), title=f"agreement with {runs[0]['reference']} (concurrency {runs[0]['concurrency']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(report: dict, out: Path, stem: str = "compare") -> list[Path]:
    """``<stem>.json`` (with per-request latencies), ``<stem>.md`` and, with matplotlib, ``<stem>.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{stem}.json", out / f"{stem}.md"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    written[1].write_text(table(report) + "\n")
    if plot(report, out / f"{stem}.png"):
        written.append(out / f"{stem}.png")
    return written
