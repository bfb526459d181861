"""``distillrec experiment``: reproduce a table — a teacher run (or an ensemble of them), then students."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a teacher → students experiment (one teacher run or an ensemble) and write its table",
        description=(
            "With a teacher run (configs/experiments/): train or reuse the teacher, then the scratch student and every "
            "method entry for every seed; write OUT/results.json, OUT/results.md (mean ± std, gain over scratch, ratio to "
            "the teacher, parameters, seconds per epoch) and OUT/results.png. With an ensemble teacher (configs/hetcomp/): "
            "train the member teachers, build their ensemble and train every student, each in its own process, then time "
            "every model's scoring and write OUT/results.md and OUT/results.json. Re-running resumes: finished runs are "
            "skipped and a half-finished run continues from its last checkpoint."
        ),
    )
    add_experiment_args(p)


def add_experiment_args(p) -> None:
    """The options of `distillrec experiment` (also under `distillrec ensemble experiment`)."""
    p.add_argument("--config", required=True, help="experiment config, e.g. configs/experiments/citeulike-loo.yaml or configs/hetcomp/ml100k.yaml")
    p.add_argument("--out", required=True, help="experiment folder, e.g. results/kd-citeulike-loo")
    p.add_argument("--only", action="append", default=None, metavar="LABEL", help="teacher run: train only this entry (repeatable; 'scratch' is an entry)")
    p.add_argument(
        "--seed",
        action="append",
        type=int,
        default=None,
        metavar="S",
        help="teacher run: train only this seed of the config (repeatable); parallel processes may train different seeds of one entry, and each rewrites the tables with every run finished so far",
    )
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STEP",
        help="ensemble: redo a step: all, teachers, ensemble, students, a run folder or a student label (repeatable)",
    )
    p.add_argument("--report-only", "--table-only", dest="report_only", action="store_true", help="train nothing; rebuild the reports from the finished runs")
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from training.experiments import run_experiment

    results = run_experiment(args.config, args.out, only=args.only, report_only=args.report_only, seeds=args.seed, force=set(args.force), log=print)
    if "summary" in results:  # the ensemble study printed its table already
        print(Path(args.out, "results.md").read_text())
    return 0 if results else 1
