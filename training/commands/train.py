"""``distillrec train``: train a teacher or a scratch student from a config."""

from __future__ import annotations

import json

from training.commands.common import add_config_args, add_progress_arg


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (teacher or scratch student)",
        description=(
            "Train a model as the config describes. Writes OUT/config.yaml (resolved), OUT/metrics.jsonl "
            "(one JSON line per epoch), OUT/best.ckpt.npz (best validation epoch), OUT/last.ckpt.npz (for --resume) "
            "and OUT/result.json (validation and test metrics with their protocol, parameters, epochs, seconds)."
        ),
    )
    add_config_args(p)
    p.add_argument("--out", required=True, help="run folder to write, e.g. runs/ml100k-bpr-teacher")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt.npz if it exists")
    add_progress_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.config import load_config
    from training.runs import train_run

    overrides = list(args.overrides) + (["train.progress=false"] if args.no_progress else [])
    cfg = load_config(args.config, overrides)
    result = train_run(cfg, args.out, resume=args.resume)
    print(json.dumps({"out": str(args.out), "best_epoch": result["best_epoch"], "test": result["test"]}, indent=2))
    return 0
