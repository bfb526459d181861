"""The tables of both experiment variants. One teacher run: mean ± std per entry, gain over scratch,
ratio to the teacher, size and cost — as JSON, a markdown table and a bar chart. An ensemble teacher:
one row per member, the ensemble and every student, with scoring time and peak memory."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from training.atomic import write_atomic
from training.experiments.schema import SCRATCH, ExperimentConfig


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _cell(values: list[float]) -> dict:
    """Mean, std and the values themselves: one table cell over an entry's seeds."""
    mean, std = _mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def summarise(exp: ExperimentConfig, teacher: dict, runs: list[dict]) -> list[dict]:
    """One row per entry (scratch first) over its finished seeds."""
    metrics = [exp.metric, *[m for m in exp.report if m != exp.metric]]
    labels: list[str] = []
    for r in runs:
        if r["label"] not in labels:
            labels.append(r["label"])
    teacher_value = teacher["test"]["metrics"].get(exp.metric)
    rows = []
    for label in labels:
        done = [r["result"] for r in runs if r["label"] == label and r["result"] is not None]
        row: dict = {"label": label, "seeds": [r["seed"] for r in runs if r["label"] == label and r["result"] is not None], "finished": len(done)}
        row["methods"] = next((r["methods"] for r in runs if r["label"] == label), [])
        if done:
            for m in metrics:
                row[m] = _cell([d["test"]["metrics"][m] for d in done])
            select = done[0]["select"]
            row["valid"] = {"metric": select, **_cell([d["valid"]["metrics"][select] for d in done])}
            row["parameters"] = done[0]["model"]["parameters"]
            row["training_only_parameters"] = sum(k["training_only_parameters"] for k in done[0].get("kd", []))
            row["seconds_per_epoch"] = _mean_std([d["seconds_per_epoch"] for d in done])[0]
            row["best_epoch"] = _mean_std([d["best_epoch"] for d in done])[0]
            row["epochs"] = _mean_std([d["epochs"] for d in done])[0]
            row["weights"] = {k["name"]: k["weight"] for k in done[0].get("kd", [])}
        rows.append(row)
    scratch = next((r for r in rows if r["label"] == SCRATCH and r["finished"]), None)
    for row in rows:
        if not row["finished"]:
            continue
        value = row[exp.metric]["mean"]
        row["gain_vs_scratch"] = value / scratch[exp.metric]["mean"] - 1 if scratch else None
        row["ratio_to_teacher"] = value / teacher_value if teacher_value else None
        row["seconds_per_epoch_vs_scratch"] = row["seconds_per_epoch"] / scratch["seconds_per_epoch"] if scratch and scratch["seconds_per_epoch"] else None
    return rows


def best_on_validation(rows: list[dict]) -> str | None:
    """The method entry (not scratch) with the highest mean validation selection metric: the one an
    experiment picks as its best method without looking at the test split."""
    methods = [r for r in rows if r["finished"] and r["label"] != SCRATCH]
    return max(methods, key=lambda r: r["valid"]["mean"])["label"] if methods else None


def _fmt(cell: dict | None, digits: int = 4) -> str:
    if not cell or math.isnan(cell["mean"]):
        return "–"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}" if len(cell["values"]) > 1 else f"{cell['mean']:.{digits}f}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_head(head: list[str]) -> list[str]:
    return [_md_row(head), "|" + "---|" * len(head)]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} %"


def markdown(results: dict) -> str:
    """The experiment as a markdown table (teacher first, then scratch and the methods)."""
    metric = results["metric"]
    cfg = results["config"]
    extra = [m for m in cfg["report"] if m != metric]
    teacher = results["teacher"]
    protocol = results["protocol"]
    proto = (
        f"sampled ({protocol['sampled_negatives']} negatives, pessimistic ties)"
        if protocol["protocol"] == "sampled"
        else "full ranking (train items and the other held-out item excluded)"
    )
    select = protocol["select"]
    head = [
        "method",
        "seeds",
        f"test {metric.upper()}",
        "vs scratch",
        "/ teacher",
        *[m.upper() for m in extra],
        f"valid {select.upper()}",
        "params",
        "training-only params",
        "s/epoch",
        "best epoch",
    ]
    lines = [
        f"### {results['experiment']}",
        "",
        *([results["description"], ""] if results.get("description") else []),
        f"Data: {results['data']['name']} ({results['data']['users']:,} users, {results['data']['items']:,} items, "
        f"{results['data']['train_interactions']:,} training interactions). Protocol: {proto}; selection on validation "
        f"{protocol['select']}, test at the best validation epoch.",
        "",
        *_md_head(head),
    ]
    tm = teacher["test"]["metrics"]
    model = teacher.get("model") or {}
    lines.append(
        _md_row(
            [
                f"teacher ({model.get('family', '?')} dim {model.get('dim', '?')})",
                "1",
                f"{tm[metric]:.4f}",
                "",
                "1.00",
                *[f"{tm[m]:.4f}" for m in extra],
                "–",
                f"{teacher['parameters']:,}",
                "–",
                f"{teacher['seconds_per_epoch']:.2f}" if teacher.get("seconds_per_epoch") else "–",
                str(teacher.get("best_epoch", "–")),
            ]
        )
    )
    for row in results["summary"]:
        if not row["finished"]:
            lines.append(f"| {row['label']} | 0 | (not run yet) |" + " |" * (len(head) - 3))
            continue
        lines.append(
            _md_row(
                [
                    row["label"],
                    str(row["finished"]),
                    _fmt(row[metric]),
                    "" if row["label"] == SCRATCH else _pct(row["gain_vs_scratch"]),
                    f"{row['ratio_to_teacher']:.2f}" if row["ratio_to_teacher"] else "–",
                    *[_fmt(row.get(m)) for m in extra],
                    _fmt(row.get("valid")),
                    f"{row['parameters']:,}",
                    f"{row['training_only_parameters']:,}" if row["training_only_parameters"] else "–",
                    f"{row['seconds_per_epoch']:.2f}",
                    f"{row['best_epoch']:.0f}",
                ]
            )
        )
    best = best_on_validation(results["summary"])
    if best:
        lines += ["", f"Best method on validation (highest mean validation {select.upper()} over its seeds): {best}."]
    lines += [
        "",
        "Methods and weights: "
        + "; ".join(
            f"{r['label']} = " + " + ".join(f"{m['name']}(" + ", ".join(f"{k}={v}" for k, v in m.items() if k != "name") + ")" for m in r["methods"])
            for r in results["summary"]
            if r["methods"]
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def ensemble_markdown(table: dict) -> str:
    """The ensemble study's table as markdown (test metrics; scoring = ms per 1,000 users for top-K lists)."""
    ms = table["metrics"]
    ds = table["dataset"]
    head = ["role", "model", "params", *[m.replace("recall", "R").replace("ndcg", "N") for m in ms], "scoring ms / 1k users", "train s", "peak RSS MiB"]
    lines = [
        f"**{table['name']}** — {ds['name']}: {ds['users']:,} users, {ds['items']:,} items, {ds['train_interactions']:,} train interactions; "
        f"split {ds['split']}, protocol {table['protocol']} (test set, seen items excluded).",
        "",
        *_md_head(head),
    ]
    for r in table["rows"]:
        dim = f" d={r['dim']}" if r.get("dim") else ""
        name = f"{r['label']} ({r['family']}{dim})" if r["role"] != "ensemble" else r["label"]
        rss = f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else ""
        train_s = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else ""
        cells = [r["role"], name, f"{r['parameters']:,}", *[f"{r['test'][m]:.4f}" for m in ms], f"{r['scoring']['ms_per_1k_users']:.1f}", train_s, rss]
        lines.append(_md_row(cells))
    t = table["timing"]
    lines += [
        "",
        f"Scoring: fastest of {t['repeats']} runs producing top-{t['k']} lists (seen items excluded) for {min(t['users'], ds['users'])} users, "
        f"{t['threads']} torch thread(s), scaled to 1,000 users. The ensemble's time includes every member's scoring plus the aggregation.",
    ]
    return "\n".join(lines) + "\n"


def bar_chart(results: dict, path: Path) -> None:
    """Mean ± std of the headline metric per entry, with the teacher and scratch as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = results["metric"]
    rows = [r for r in results["summary"] if r["finished"]]
    if not rows:
        return
    labels = [r["label"] for r in rows]
    means = [r[metric]["mean"] for r in rows]
    stds = [r[metric]["std"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.9 * len(rows)), 3.6), dpi=120)
    colors = ["#9e9e9e" if lab == SCRATCH else "#3f7fbf" for lab in labels]
    ax.bar(range(len(rows)), means, yerr=stds, color=colors, capsize=3)
    teacher = results["teacher"]["test"]["metrics"][metric]
    ax.axhline(teacher, color="#c0392b", linestyle="--", linewidth=1, label=f"teacher {teacher:.4f}")
    ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right")
    lo = min(means + [teacher]) * 0.85
    ax.set_ylim(lo, max(means + [teacher]) * 1.05)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(results["experiment"])
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    write_atomic(path, png.getvalue())


def write_reports(out: Path, results: dict) -> None:
    """results.json, results.md and results.png, each replaced atomically (parallel `--seed` /
    `--only` processes rewrite them)."""
    write_atomic(out / "results.json", json.dumps(results, indent=2, default=str))
    write_atomic(out / "results.md", markdown(results))
    bar_chart(results, out / "results.png")
