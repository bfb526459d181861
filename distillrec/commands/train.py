"""``distillrec train``: train a teacher or a scratch student from a config."""

from __future__ import annotations

from distillrec.commands.common import add_config_args, add_run_args, print_run_summary, refuse_finished_run, run_config


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (teacher or scratch student)",
        description=(
            "Train a model as the config describes. Writes OUT/config.yaml (resolved), OUT/metrics.jsonl "
            "(one JSON line per epoch), OUT/best.ckpt.npz (best validation epoch), OUT/last.ckpt.npz (for --resume) "
            "and OUT/result.json (validation and test metrics with their protocol, parameters, epochs, seconds). "
            "Methods listed under `distill.methods` that need no teacher (concf: consensus learning over several "
            "objective heads) are trained here too; methods that need one go through `distill`."
        ),
    )
    add_config_args(p)
    add_run_args(p, "runs/ml100k-bpr-teacher")
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.runs import train_run

    refuse_finished_run(args)
    config = run_config(args)
    methods = None
    if config.distill and config.distill.methods:  # teacher-free methods (ConCF); one that needs a teacher says so
        from training.distill.train_student import build_methods

        methods = build_methods(config)
    print_run_summary(args.out, train_run(config, args.out, resume=args.resume, methods=methods))
    return 0
