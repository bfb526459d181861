"""``distillrec distill``: train a student with knowledge distillation from a teacher run."""

from __future__ import annotations

import json

from training.commands.common import add_config_args, add_progress_arg


def register(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="distil a student from a trained teacher",
        description=(
            "Train the config's student with the KD methods of its `distill.methods` list, using the teacher run "
            "given by --teacher (or distill.teacher). Writes the same files as `train` (the KD terms of every epoch "
            "appear in OUT/metrics.jsonl as loss.<method>.<term>); OUT/result.json also records the teacher and the "
            "methods. Teacher lists and embeddings are cached in TEACHER/kd-cache/."
        ),
    )
    add_config_args(p)
    p.add_argument("--teacher", default=None, help="finished teacher run folder, e.g. runs/citeulike-bpr-teacher")
    p.add_argument("--out", required=True, help="run folder to write, e.g. runs/kd-citeulike-de")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt.npz if it exists")
    add_progress_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.config import load_config
    from training.distill.run import distill_run

    overrides = list(args.overrides) + (["train.progress=false"] if args.no_progress else [])
    cfg = load_config(args.config, overrides)
    result = distill_run(cfg, args.out, teacher=args.teacher, resume=args.resume)
    print(json.dumps({"out": str(args.out), "best_epoch": result["best_epoch"], "test": result["test"]}, indent=2))
    return 0
