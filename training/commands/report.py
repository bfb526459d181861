"""``distillrec report``: a markdown table of finished runs (from their result.json files)."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="tabulate finished runs as markdown",
        description="Read RUN/result.json of each run folder and print one markdown row per run (test metrics at the best validation epoch).",
    )
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--metrics", default="ndcg@10,hr@10", help="comma-separated test metrics to show (default ndcg@10,hr@10)")
    p.set_defaults(handler=run)


def table(results: list[dict], metrics: list[str]) -> str:
    """Markdown table: run, model, dim, parameters, protocol, metrics, best epoch, epochs, seconds."""
    head = ["run", "model", "dim", "parameters", "protocol", *[f"test {m}" for m in metrics], "best epoch", "epochs", "train s", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        test = r["test"]
        cells = [
            r.get("name") or "", r["model"]["family"], str(r["model"]["dim"]), f"{r['model']['parameters']:,}", test["protocol"],
            *[f"{test['metrics'][m]:.4f}" for m in metrics],
            str(r["best_epoch"]), str(r["epochs"]), f"{r['train_seconds']:.0f}", f"{r['seconds_per_epoch']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args) -> int:
    from training.errors import DistillrecError

    results = []
    for folder in args.runs:
        f = Path(folder) / "result.json"
        if not f.exists():
            raise DistillrecError(f"{folder}: no result.json (is the run finished?)")
        results.append(json.loads(f.read_text()))
    print(table(results, args.metrics.split(",")))
    return 0
