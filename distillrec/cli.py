"""The ``distillrec`` command line. Each sub-command lives in ``distillrec/commands/<name>.py``.

Heavy imports (torch, onnxruntime, FastAPI) happen inside the command handlers, so ``--help`` is
instant and ``distillrec serve`` works in an install without torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from distillrec import __version__
from training.threads import use_passive_wait

# Sub-command modules, in the order `--help` lists them. Each exposes register(subparsers).
COMMANDS = ["data", "train", "distill", "experiment", "ensemble", "evaluate", "report", "export", "serve", "compare", "demo", "bench"]


GLOSSARY = """terms:
  KD              knowledge distillation: training a small student to imitate a large teacher
  DE              Distillation Experts: latent knowledge through small per-group expert networks
  PHR, FitNet     Personalized Hint Regression; FitNet-style hint regression (one projection)
  FTD, HTD        Full / Hierarchical Topology Distillation (relations between users and items)
  RRD, IR-RRD     Relaxed Ranking Distillation; RRD plus Item-side ranking Regularization
  RD, CD          Ranking Distillation, Collaborative Distillation (baselines)
  HetComp         distillation from an ensemble of heterogeneous teachers via their training trajectories
  ConCF           consensus learning: one model's heads under several objectives distilled towards their consensus
  floor           the least work per epoch an expert method (DE, HTD) cannot skip, timed as a lower bound
  BPR-MF, NeuMF   matrix factorisation trained with Bayesian Personalized Ranking; neural matrix factorisation
  LightGCN, DAE   light graph convolution network; denoising autoencoder
  NDCG@k, HR@k    normalised discounted cumulative gain and hit rate of the top k (MRR: mean reciprocal rank)
  LOO             leave-one-out split: the last interaction per user is the test item, the one before validation
  ONNX, FAISS     Open Neural Network Exchange (the exported model); Facebook AI Similarity Search (the item index)
  IVF, HNSW       approximate indexes: inverted file lists; hierarchical navigable small-world graph
  RSS, p50/p99    resident set size (memory); 50th / 99th latency percentile
  RBO             rank-biased overlap: agreement of two ranked lists, top positions weighted most
  RecBole         an open-source recommendation library; `bench peers` trains its BPR-MF next to distillrec's and implicit's
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillrec",
        description="Distil large recommenders into small, fast students; export them as ONNX + FAISS; serve them next to their teachers.",
        epilog=GLOSSARY + "\nRun `distillrec COMMAND --help` for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"distillrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"distillrec.commands.{name}").register(sub)
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
