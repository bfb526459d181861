"""Epoch time and peak memory of BPR-MF training on MovieLens-100K at several dimensions.

The training settings are those of the shipped configs (configs/ml-100k/bpr-teacher.yaml, whose
train section the dim-20 student shares: batch 1024, 4 negatives, Adam, weight decay 1e-3); only
``model.dim`` changes.

Each dimension runs in a fresh subprocess so that its peak RSS is its own. Prints a markdown table
and writes JSON. Usage: ``distillrec bench train-cost --out results/bench-train-cost``.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from training.benchmarks.environment import environment, publish


CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ml-100k" / "bpr-teacher.yaml"


def measure_one(dim: int, epochs: int, threads: int | None) -> dict:
    """Trains BPR-MF (dim) for ``epochs`` epochs in this process; returns per-epoch seconds and peak RSS."""
    import numpy as np
    import torch

    from training.config import load_config
    from training.data import load_dataset
    from training.models import model_from_config
    from training.trainer import Trainer

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    overrides = [f"model.dim={dim}", f"train.epochs={epochs}", "train.progress=false"] + ([f"train.threads={threads}"] if threads else [])
    cfg = load_config(CONFIG, overrides)
    ds = load_dataset(cfg.data)
    model = model_from_config(cfg.model, ds.n_users, ds.n_items, ds.train)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, ds, model, tmp)
        times = []
        for epoch in range(epochs):
            t0 = time.perf_counter()
            trainer._epoch(epoch)
            times.append(time.perf_counter() - t0)
    return {
        "dim": dim,
        "parameters": model.num_parameters(),
        "epochs": epochs,
        "epoch_seconds": times,
        "median_epoch_seconds": statistics.median(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_data_mib": rss_before,
        "torch_threads": torch.get_num_threads(),
        "interactions_per_epoch": int(ds.train.nnz),
        "batch_size": cfg.train.batch_size,
        "negatives": cfg.train.negatives,
        "numpy": np.__version__,
    }


def run(out: Path, dims: list[int], epochs: int, threads: int | None) -> dict:
    rows = []
    for dim in dims:
        cmd = [sys.executable, "-m", "training.benchmarks.train_cost", "--one", str(dim), "--epochs", str(epochs)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "train-cost",
        "command": f"distillrec bench train-cost --dims {','.join(map(str, dims))} --epochs {epochs}" + (f" --threads {threads}" if threads else "") + f" --out {out}",
        "environment": environment(),
        "rows": rows,
    }
    publish(out, "train_cost", report, [
        "| model | dim | parameters | median s/epoch | peak RSS (MiB) |",
        "|---|---|---|---|---|",
        *(f"| BPR-MF | {r['dim']} | {r['parameters']:,} | {r['median_epoch_seconds']:.3f} | {r['peak_rss_mib']:.0f} |" for r in rows),
        "",
        f"MovieLens-100K, {rows[0]['interactions_per_epoch']:,} training interactions per epoch, batch {rows[0]['batch_size']}, {rows[0]['negatives']} negatives (the shipped configs), median of {epochs} epochs.",
    ])
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dims", default="20,200")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/bench-train-cost")
    a = p.parse_args(argv)
    if a.one is not None:
        print(json.dumps(measure_one(a.one, a.epochs, a.threads)))
        return 0
    run(Path(a.out), [int(d) for d in a.dims.split(",")], a.epochs, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
