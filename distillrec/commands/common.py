"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse
import math


def counts(text: str, option: str, unit: str) -> list[int]:
    """``option``'s comma-separated whole counts of ``unit``: ``100000``, ``1e6``, ``100k``, ``1M`` or
    ``1_000_000`` (empty items skipped); anything else is refused, naming the option."""
    from training.errors import DistillrecError

    found = []
    for x in (x.strip() for x in text.split(",")):
        if not x:
            continue
        t = x.lower().replace("_", "")
        factor = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
        try:
            c = float(t[:-1] if factor > 1 else t) * factor
        except ValueError:
            c = math.nan
        if not math.isfinite(c) or c != int(c):
            raise DistillrecError(f"{option}: {x!r} is not a whole {unit} (write 100000, 1e6, 100k or 1M)")
        found.append(int(c))
    return found


def positive(text: str) -> int:
    """argparse type of a count option: a whole number, 1 or more."""
    return _whole(text, 1)


def non_negative(text: str) -> int:
    """argparse type of a count option that may be 0: a whole number, 0 or more."""
    return _whole(text, 0)


def _whole(text: str, least: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < least:
        raise argparse.ArgumentTypeError(f"{n}: give {least} or more")
    return n


def add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", required=required, help="YAML run config (see configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=50 --set model.dim=32 (repeatable; values are YAML)",
    )


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and CI)")


def add_run_args(p: argparse.ArgumentParser, example: str) -> None:
    """--out, --resume and --no-progress of the commands that write a run folder."""
    p.add_argument("--out", required=True, help=f"run folder to write, e.g. {example}")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt.npz if it exists")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in OUT (without it, a finished run is refused)")
    add_progress_arg(p)


def refuse_finished_run(args) -> None:
    """Stops a run command that would silently replace a finished run in ``--out`` (unless ``--overwrite``
    or ``--resume``); with ``--overwrite`` the old result and the teacher caches are removed first."""
    import shutil
    import sys

    from training.errors import DistillrecError
    from training.run_folder import RunFolder

    folder = RunFolder(args.out)
    if args.resume or not folder.finished:
        return
    if not args.overwrite:
        raise DistillrecError(
            f"--out {folder.root}: holds a finished run ({folder.result.name}); training into it would replace that run "
            "(and students distilled from it would silently get another teacher). Choose another --out, or pass --overwrite to replace it."
        )
    print(f"--overwrite: replacing the finished run in {folder.root}", file=sys.stderr)
    folder.result.unlink(missing_ok=True)  # first: an interrupted replacement is never taken for a finished run
    shutil.rmtree(folder.root / "kd-cache", ignore_errors=True)


def run_config(args):
    """The resolved RunConfig of a run command (``--config`` + ``--set`` + ``--no-progress``)."""
    from training.config import load_config

    return load_config(args.config, list(args.overrides) + (["train.progress=false"] if args.no_progress else []))


def print_run_summary(out, result: dict) -> None:
    import json

    print(json.dumps({"out": str(out), "best_epoch": result["best_epoch"], "test": result["test"]}, indent=2))
