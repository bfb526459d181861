"""``distillrec experiment``: reproduce a table — teacher, scratch student and KD methods over seeds."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a teacher → students experiment and write its table",
        description=(
            "Train or reuse the teacher, then the scratch student and every method entry of the experiment config "
            "for every seed; write OUT/results.json, OUT/results.md (mean ± std, gain over scratch, ratio to the "
            "teacher, parameters, seconds per epoch) and OUT/results.png. Re-running resumes: finished runs are "
            "skipped and a half-finished run continues from its last checkpoint."
        ),
    )
    p.add_argument("--config", required=True, help="experiment config, e.g. configs/experiments/citeulike-loo.yaml")
    p.add_argument("--out", required=True, help="experiment folder, e.g. results/kd-citeulike-loo")
    p.add_argument("--only", action="append", default=None, metavar="LABEL", help="train only this entry (repeatable; 'scratch' is an entry)")
    p.add_argument("--seed", action="append", type=int, default=None, metavar="S", help="train only this seed of the config (repeatable); parallel processes may train different seeds of one entry, and each rewrites the tables with every run finished so far")
    p.add_argument("--report-only", action="store_true", help="train nothing; rebuild the reports from the finished runs")
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from training.experiments import run_experiment

    results = run_experiment(args.config, args.out, only=args.only, report_only=args.report_only, seeds=args.seed)
    print(Path(args.out, "results.md").read_text())
    return 0 if results else 1
