"""``distillrec data info``: statistics of a dataset as JSON."""

from __future__ import annotations

import json

from distillrec.commands.common import add_config_args


def register(sub) -> None:
    p = sub.add_parser("data", help="inspect datasets", description="Inspect datasets.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    info = dsub.add_parser(
        "info",
        help="print dataset statistics as JSON",
        description="Load a dataset (fetching MovieLens-100K on first use), split it, and print its statistics as JSON.",
    )
    info.add_argument("--dataset", default=None, help="'ml-100k' (the embedded default) or a path to an interactions file")
    add_config_args(info, required=False)
    info.set_defaults(handler=run_info)


def run_info(args) -> int:
    from training.config import config_from_dict, load_config
    from training.data import load_dataset

    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:
        tree: dict = {}
        if args.dataset and args.dataset != "ml-100k":
            tree = {"data": {"source": "file", "path": args.dataset}}
        cfg = config_from_dict(tree, "--dataset", args.overrides)
    print(json.dumps(load_dataset(cfg.data).stats(), indent=2))
    return 0
