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
    p.add_argument(
        "--metrics",
        default="ndcg@10,hr@10",
        help="comma-separated test metrics to show (default ndcg@10,hr@10: normalised discounted cumulative gain and hit rate of the top 10)",
    )
    p.add_argument(
        "--replay-stopping",
        metavar="PATIENCE:METRIC,METRIC,...",
        help="instead of the table, replay each run's logged validation curve (metrics.jsonl) under another early-stopping rule: "
        "stop after PATIENCE evaluations in which none of the METRICs improved on its own best. Prints, per run, the epoch the run "
        "stopped at, the epoch the rule would stop at, and the best epoch of the run's selection metric under each. "
        "The rule of the DE-RRD papers (Distillation Experts, Relaxed Ranking Distillation) is 20:hr@5,hr@10,hr@20.",
    )
    p.set_defaults(handler=run)


def table(results: list[dict], metrics: list[str]) -> str:
    """Markdown table: run, model, dim, parameters, protocol, metrics, best epoch, epochs, seconds."""
    head = ["run", "model", "dim", "parameters", "protocol", *[f"test {m}" for m in metrics], "best epoch", "epochs", "train s", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        test = r["test"]
        cells = [
            r.get("name") or "",
            r["model"]["family"],
            str(r["model"]["dim"]),
            f"{r['model']['parameters']:,}",
            test["protocol"],
            *[f"{test['metrics'][m]:.4f}" for m in metrics],
            str(r["best_epoch"]),
            str(r["epochs"]),
            f"{r['train_seconds']:.0f}",
            f"{r['seconds_per_epoch']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse_rule(text: str) -> tuple[int, list[str]]:
    from training.errors import ConfigError

    patience, _, metrics = text.partition(":")
    if not patience.isdigit() or int(patience) < 1 or not metrics:
        raise ConfigError(f"--replay-stopping {text!r}: expected PATIENCE:METRIC,METRIC,... such as 20:hr@5,hr@10,hr@20")
    return int(patience), [m.strip() for m in metrics.split(",") if m.strip()]


def replay_table(folders: list[str], rule: str) -> str:
    """Markdown table: per run, where it stopped and where ``rule`` would have stopped it."""
    from training.errors import DistillrecError
    from training.stopping import replay_stopping

    patience, metrics = _parse_rule(rule)
    head = ["run", "select", "stopped at", "best epoch", f"rule {rule}: stops at", "best epoch under the rule"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for folder in folders:
        log, result = Path(folder) / "metrics.jsonl", Path(folder) / "result.json"
        if not log.exists() or not result.exists():
            raise DistillrecError(f"{folder}: needs metrics.jsonl and result.json (is the run finished?)")
        evals = [r for r in map(json.loads, log.read_text().splitlines()) if "valid" in r]
        if not evals:
            raise DistillrecError(f"{log}: no validation evaluation logged, nothing to replay")
        res = json.loads(result.read_text())
        select = res["select"]
        missing = sorted({m for m in [*metrics, select] if m not in evals[0]["valid"]})
        if missing:
            raise DistillrecError(f"{log}: the validation records have no {', '.join(missing)} (they have {', '.join(evals[0]['valid'])})")
        other = replay_stopping(evals, patience, metrics, select)
        lines.append(
            f"| {folder} | {select} | {evals[-1]['epoch']} | {res['best_epoch']} | "
            f"{other['stop_epoch'] if other['stop_epoch'] is not None else 'not before ' + str(evals[-1]['epoch'])} | {other['best_epoch']} |"
        )
    return "\n".join(lines)


def run(args) -> int:
    from training.errors import DistillrecError

    if args.replay_stopping:
        print(replay_table(args.runs, args.replay_stopping))
        return 0
    results = []
    for folder in args.runs:
        f = Path(folder) / "result.json"
        if not f.exists():
            raise DistillrecError(f"{folder}: no result.json (is the run finished?)")
        results.append(json.loads(f.read_text()))
    print(table(results, args.metrics.split(",")))
    return 0
