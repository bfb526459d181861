"""``distillrec distill``: train a student with knowledge distillation from a teacher run."""

from __future__ import annotations

from distillrec.commands.common import add_config_args, add_run_args, print_run_summary, refuse_finished_run, run_config


def register(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="distil a student from a trained teacher",
        description=(
            "Train the config's student with the knowledge-distillation (KD) methods of its `distill.methods` list, using the teacher run "
            "given by --teacher (or distill.teacher). Writes the same files as `train` (the KD terms of every epoch "
            "appear in OUT/metrics.jsonl as loss.<method>.<term>); OUT/result.json also records the teacher and the "
            "methods. Teacher lists and embeddings are cached in TEACHER/kd-cache/."
        ),
    )
    add_config_args(p)
    p.add_argument("--teacher", default=None, help="finished teacher run folder, e.g. runs/citeulike-bpr-teacher")
    add_run_args(p, "runs/kd-citeulike-de")
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.distill.train_student import distill_run

    refuse_finished_run(args)
    print_run_summary(args.out, distill_run(run_config(args), args.out, teacher=args.teacher, resume=args.resume))
    return 0
