"""``distillrec demo``: the quickstart (what ``make demo`` runs)."""

from __future__ import annotations

from distillrec.commands.common import add_progress_arg


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="quickstart: train a teacher, distil a student, export both, serve them, compare them",
        description=(
            "From nothing to a running service on MovieLens-100K: fetch the data, train the LightGCN teacher (dim 200), "
            "distil a dim-20 student with our best method, export both bundles, start the service on 127.0.0.1:PORT, "
            "print example calls and a student-vs-teacher table (accuracy, parameters, p50/p99 latency). "
            "Everything is cached: a second run reuses the runs and bundles and starts in seconds."
        ),
    )
    p.add_argument("--runs-dir", default="runs/demo", help="where the teacher and student runs go (default runs/demo)")
    p.add_argument("--models-dir", default="models", help="the model repository to export into (default models)")
    p.add_argument("--port", type=int, default=8000, help="service port on 127.0.0.1 (default 8000)")
    p.add_argument("--exit", dest="exit_after", action="store_true", help="stop the service after printing the comparison")
    add_progress_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from distillrec.demo import DemoOptions, run_demo

    opts = DemoOptions(
        runs_dir=Path(args.runs_dir), models_dir=Path(args.models_dir), port=args.port, exit_after=args.exit_after, progress=not args.no_progress
    )
    return run_demo(opts)
