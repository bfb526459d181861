"""The ``distillrec`` command line. Each sub-command lives in ``training/commands/<name>.py``.

Heavy imports (torch, onnxruntime, FastAPI) happen inside the command handlers, so ``--help`` is
instant and ``distillrec serve`` works in an install without torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from training import __version__
from training.threads import use_passive_wait

# Sub-command modules, in the order `--help` lists them. Each exposes register(subparsers).
COMMANDS = ["data", "train", "distill", "experiment", "ensemble", "evaluate", "report", "export", "serve", "demo", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillrec",
        description="Distil large recommenders into small, fast students; export them as ONNX + FAISS; serve them next to their teachers.",
        epilog="Run `distillrec COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"distillrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"training.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    use_passive_wait()  # before any command imports torch
    rc = _run(argv)
    if "torch.distributed" in sys.modules and os.environ.get("WORLD_SIZE", "1") != "1":  # a torchrun worker
        from training.distributed import exit_worker

        exit_worker(rc)
    return rc


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from training.errors import DistillrecError

    try:
        return int(args.handler(args) or 0)
    except DistillrecError as exc:
        print(f"distillrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distillrec {args.command}: interrupted. Progress is saved where the command supports it (re-run with --resume).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
