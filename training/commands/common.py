"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse


def add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", required=required, help="YAML run config (see configs/)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=50 --set model.dim=32 (repeatable; values are YAML)",
    )


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and CI)")


def add_run_args(p: argparse.ArgumentParser, example: str) -> None:
    """--out, --resume and --no-progress of the commands that write a run folder."""
    p.add_argument("--out", required=True, help=f"run folder to write, e.g. {example}")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt.npz if it exists")
    add_progress_arg(p)


def run_config(args):
    """The resolved RunConfig of a run command (``--config`` + ``--set`` + ``--no-progress``)."""
    from training.config import load_config

    return load_config(args.config, list(args.overrides) + (["train.progress=false"] if args.no_progress else []))


def print_run_summary(out, result: dict) -> None:
    import json

    print(json.dumps({"out": str(out), "best_epoch": result["best_epoch"], "test": result["test"]}, indent=2))
