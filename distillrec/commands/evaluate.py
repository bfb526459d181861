"""``distillrec evaluate``: re-evaluate a finished run under any protocol."""

from __future__ import annotations

import json

from distillrec.commands.common import positive


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a finished run",
        description="Evaluate a finished run's best checkpoint on validation or test, under the full-ranking or the sampled protocol.",
    )
    p.add_argument("--run", required=True, help="run folder written by `distillrec train`")
    p.add_argument("--part", choices=["valid", "test"], default="test")
    p.add_argument("--protocol", choices=["full", "sampled"], default=None, help="default: the run's own protocol")
    p.add_argument("--ks", default=None, help="comma-separated cut-offs, e.g. 10,20,50 (default: the run's)")
    p.add_argument("--negatives", type=positive, default=None, help="sampled protocol: negatives per held-out item")
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.evaluation import TorchScorer, evaluate
    from training.runs import load_run

    loaded = load_run(args.run)
    ec = loaded.config.eval
    ks = [int(k) for k in args.ks.split(",")] if args.ks else ec.ks
    res = evaluate(TorchScorer(loaded.model), loaded.dataset, args.part, args.protocol or ec.protocol, ks, args.negatives or ec.sampled_negatives, ec.seed)
    print(json.dumps(res.to_dict(), indent=2))
    return 0
