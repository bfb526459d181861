"""Epoch time, training pairs per second and peak memory of BPR-MF training on MovieLens-100K at
several dimensions, for each training loop (``train.engine``: torch, fused).

The training settings are those of the shipped configs (configs/ml-100k/bpr-teacher.yaml, whose
train section the dim-20 student shares: batch 1024, 4 negatives, Adam, weight decay 1e-3); only
``model.dim`` and ``train.engine`` change. A training pair is one (user, positive, negative) triple:
an epoch scores ``interactions × negatives`` of them.

Each (engine, dimension) runs in a fresh subprocess so that its peak RSS is its own; with
``--rounds`` the subprocesses alternate round by round and the medians over rounds are reported.
Prints a markdown table and writes JSON. Usage: ``distillrec bench train-cost --out results/bench-train-cost``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from distillrec.benchmarks.environment import environment, peak_rss_mib, publish

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ml-100k" / "bpr-teacher.yaml"


def measure_one(dim: int, epochs: int, threads: int | None, engine: str = "torch") -> dict:
    """Trains BPR-MF (dim) for ``epochs`` epochs in this process; returns per-epoch seconds and peak RSS.
    The fused loop is compiled (or loaded from numba's cache) by one untimed epoch first."""
    import numpy as np
    import torch

    from training.config import load_config
    from training.data import load_dataset
    from training.models import model_from_config
    from training.trainer import Trainer

    rss_before = peak_rss_mib()
    overrides = [f"model.dim={dim}", f"train.epochs={epochs + 1}", "train.progress=false", f"train.engine={engine}"] + (
        [f"train.threads={threads}"] if threads else []
    )
    cfg = load_config(CONFIG, overrides)
    ds = load_dataset(cfg.data)
    model = model_from_config(cfg.model, ds.n_users, ds.n_items, ds.train)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, ds, model, tmp)
        if engine == "fused":
            trainer._epoch(epochs)
        times = []
        for epoch in range(epochs):
            t0 = time.perf_counter()
            trainer._epoch(epoch)
            times.append(time.perf_counter() - t0)
    return {
        "engine": engine,
        "dim": dim,
        "parameters": model.num_parameters(),
        "epochs": epochs,
        "epoch_seconds": times,
        "median_epoch_seconds": statistics.median(times),
        "pairs_per_second": ds.train.nnz * cfg.train.negatives / statistics.median(times),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_data_mib": rss_before,
        "torch_threads": torch.get_num_threads(),
        "interactions_per_epoch": int(ds.train.nnz),
        "batch_size": cfg.train.batch_size,
        "negatives": cfg.train.negatives,
        "numpy": np.__version__,
    }


def run(out: Path, dims: list[int], epochs: int, threads: int | None, engines: tuple[str, ...] = ("torch",), rounds: int = 1) -> dict:
    runs: dict[tuple[str, int], list[dict]] = {}
    for _ in range(rounds):
        for dim in dims:
            for engine in engines:
                cmd = [sys.executable, "-m", "distillrec.benchmarks.train_cost", "--one", str(dim), "--epochs", str(epochs), "--engines", engine]
                if threads:
                    cmd += ["--threads", str(threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs.setdefault((engine, dim), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = []
    for done in runs.values():
        row = dict(done[0])
        for key in ("median_epoch_seconds", "pairs_per_second", "peak_rss_mib"):
            row[key] = statistics.median(r[key] for r in done)
        row["epoch_seconds"] = [t for r in done for t in r["epoch_seconds"]]
        row["rounds"] = len(done)
        rows.append(row)
    torch_s = {r["dim"]: r["median_epoch_seconds"] for r in rows if r["engine"] == "torch"}
    for r in rows:
        if r["dim"] in torch_s:
            r["speedup_over_torch"] = torch_s[r["dim"]] / r["median_epoch_seconds"]
    command = (
        f"distillrec bench train-cost --dims {','.join(map(str, dims))} --epochs {epochs} --engines {','.join(engines)} --rounds {rounds}"
        + (f" --threads {threads}" if threads else "")
        + f" --out {out}"
    )
    report = {"benchmark": "train-cost", "command": command, "environment": environment(), "rows": rows}
    publish(
        out,
        "train_cost",
        report,
        [
            "| model | loop | dim | parameters | median s/epoch | training pairs/s | × torch loop | peak RSS (MiB) |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| BPR-MF | {r['engine']} | {r['dim']} | {r['parameters']:,} | {r['median_epoch_seconds']:.3f} | {r['pairs_per_second'] / 1e6:.2f} M | "
                f"{r.get('speedup_over_torch', float('nan')):.1f} | {r['peak_rss_mib']:.0f} |"
                for r in rows
            ),
            "",
            f"MovieLens-100K, {rows[0]['interactions_per_epoch']:,} training interactions per epoch, batch {rows[0]['batch_size']}, "
            f"{rows[0]['negatives']} negatives (the shipped configs); a training pair is one (user, positive, negative) triple; "
            f"median of {epochs} epochs per process, median over {rounds} alternating round(s).",
        ],
    )
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dims", default="20,200")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--engines", default="torch,fused")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", default="results/bench-train-cost")
    a = p.parse_args(argv)
    if a.one is not None:
        print(json.dumps(measure_one(a.one, a.epochs, a.threads, a.engines)))
        return 0
    run(Path(a.out), [int(d) for d in a.dims.split(",")], a.epochs, a.threads, tuple(a.engines.split(",")), a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
