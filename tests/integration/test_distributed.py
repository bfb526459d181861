"""Data-parallel training under torchrun (2 CPU processes, gloo) equals single-process training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch
from conftest import write_block_log

from training.checkpoint import load_checkpoint


def _setup(tmp_path):
    write_block_log(tmp_path / "log.csv", n_users=40, n_blocks=4, per_user=7)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data: {{source: file, path: {tmp_path / 'log.csv'}, timestamp_col: ts}}\n"
        "model: {family: mf, dim: 8, init_std: 0.1}\n"
        "train: {epochs: 4, lr: 0.02, batch_size: 50, negatives: 2, progress: false}\n"
        "eval: {ks: [5], select: hr@5, patience: 100}\n"
    )
    return cfg


def _two_ranks(cfg, out, *extra: str) -> list[str]:
    """``distillrec train`` under torchrun with two processes on this machine."""
    train = ["-m", "distillrec.cli", "train", "--config", str(cfg), "--no-progress", "--out", str(out), *extra]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *train]


def test_two_ranks_match_one_process(tmp_path):
    cfg = _setup(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "distillrec.cli", "train", "--config", str(cfg), "--no-progress"]
    subprocess.run(base + ["--out", str(tmp_path / "single")], check=True, env=env, capture_output=True)
    proc = subprocess.run(_two_ranks(cfg, tmp_path / "ddp"), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single, _ = load_checkpoint(tmp_path / "single" / "last.ckpt.npz")
    both, _ = load_checkpoint(tmp_path / "ddp" / "last.ckpt.npz")
    for key in ("model.user_emb.weight", "model.item_emb.weight"):
        torch.testing.assert_close(both[key], single[key], rtol=1e-4, atol=1e-5)
    result = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert result["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 4  # written once, by rank 0
    logged = [json.loads(line)["loss"]["base"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line)["loss"]["base"] for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(logged, expected, rtol=1e-4)


def test_a_failing_worker_exits_with_its_error_not_a_hang(tmp_path):
    cfg = _setup(tmp_path)
    proc = subprocess.run(
        _two_ranks(cfg, tmp_path / "ddp", "--set", "model.dimm=3"), env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120
    )
    # the first rank to fail says why (torchrun may stop the other before it prints)
    assert proc.returncode != 0 and "model.dimm: unknown key" in proc.stderr
    assert "exitcode: 2" in proc.stderr and not (tmp_path / "ddp").exists()
