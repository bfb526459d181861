"""``distillrec bench``: benchmark scripts (tables + JSON; not tests)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints tables, writes JSON)", description="Benchmarks print markdown tables and write JSON into --out.")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    tc = bsub.add_parser("train-cost", help="epoch time and peak memory of BPR-MF training on MovieLens-100K", description="Epoch time and peak RSS of BPR-MF training on MovieLens-100K, each dimension in a fresh process.")
    tc.add_argument("--dims", default="20,200", help="comma-separated embedding dimensions (default 20,200)")
    tc.add_argument("--epochs", type=int, default=5, help="epochs to time per dimension (median reported)")
    tc.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    tc.add_argument("--out", default="results/bench-train-cost", help="folder for train_cost.json / .md")
    tc.set_defaults(handler=run_train_cost)


def run_train_cost(args) -> int:
    from pathlib import Path

    from training.benchmarks.train_cost import run

    run(Path(args.out), [int(d) for d in args.dims.split(",")], args.epochs, args.threads)
    return 0
