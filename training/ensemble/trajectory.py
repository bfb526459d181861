"""Teacher trajectories: compact per-checkpoint ranking knowledge for HetComp (docs/hetcomp.md).

A teacher run trained with ``train.checkpoint_every`` keeps periodic checkpoints along training.
:func:`export_trajectory` picks a few of them (the last one is the converged ``best.ckpt.npz``) and
stores, per checkpoint, only what HetComp needs — never a dense user×item matrix:

* ``items``  int32 [V, n_users, N]: each user's top-N **unobserved** items (training items
  excluded), best first (what DKC compares the student with, and what the ensemble aggregates);
* ``scores`` float32 [V, n_users, N]: the teacher's scores of those items;
* ``observed`` int32 [V, nnz(train)]: each user's training items in the teacher's order (row ``u``
  occupies ``train.indptr[u]:train.indptr[u+1]``), for the ordered observed list P_u.

The file is ``RUN/trajectory.npz`` (npz + JSON metadata, no pickles). For CiteULike with N = 100
and 4 checkpoints it is about 17 MB per teacher, against ~2 GB for 4 dense float32 matrices.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from training.checkpoint import load_checkpoint, save_checkpoint
from training.data.dataset import Dataset
from training.errors import DistillrecError
from training.evaluation import TorchScorer, evaluate
from training.models.base import TrainableRecommender
from training.run_folder import RunFolder

TRAJECTORY_FILE = "trajectory.npz"
_EPOCH = re.compile(r"epoch-(\d+)\.ckpt\.npz$")


@dataclass
class Trajectory:
    """One teacher's trajectory (see the module docstring for the arrays)."""

    run: str
    epochs: list[int]
    items: np.ndarray
    scores: np.ndarray
    observed: np.ndarray
    indptr: np.ndarray
    valid: list[dict]

    @property
    def n_checkpoints(self) -> int:
        return int(self.items.shape[0])

    @property
    def top_n(self) -> int:
        return int(self.items.shape[2])

    def observed_lists(self, checkpoint: int, depth: int | None = None) -> np.ndarray:
        """int64 [n_users, L]: training items in this checkpoint's order, ``-1``-padded (L = longest row or ``depth``)."""
        return padded_rows(self.observed[checkpoint], self.indptr, depth)


def padded_rows(values: np.ndarray, indptr: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Turns CSR-style row segments ``values[indptr[u]:indptr[u+1]]`` into an int64 [rows, L] array, -1 padded."""
    counts = np.diff(indptr)
    width = int(counts.max()) if len(counts) else 0
    if depth is not None:
        width = min(width, depth)
    out = np.full((len(counts), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(len(values)) - indptr[rows]
    keep = pos < width
    out[rows[keep], pos[keep]] = values[keep]
    return out


def rank_lists(model: TrainableRecommender, train: sp.csr_matrix, top_n: int, budget: int = 1 << 23) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the model's full scores, user batch by user batch (never the whole matrix).

    Returns:
        (items int32 [U, N], scores float32 [U, N], observed int32 [nnz]): the top-N unobserved items
        with their scores, and the training items of each user sorted by descending score
        (ties by item index), in the CSR layout of ``train``.
    """
    scorer = TorchScorer(model)
    n_users, n_items = train.shape
    n = min(top_n, n_items)
    items = np.full((n_users, top_n), -1, dtype=np.int32)
    scores = np.full((n_users, top_n), -np.inf, dtype=np.float32)
    observed = np.empty(train.nnz, dtype=np.int32)
    step = max(1, budget // max(1, n_items))
    for start in range(0, n_users, step):
        users = np.arange(start, min(n_users, start + step))
        s = np.array(scorer.score_all(users), dtype=np.float32, copy=True)
        sub = train[users]
        rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
        seen = s[rows, sub.indices]
        # observed items of each user by descending score (stable on item index)
        order = np.lexsort((sub.indices, -seen, rows))
        lo, hi = train.indptr[start], train.indptr[start + len(users)]
        observed[lo:hi] = sub.indices[order]
        s[rows, sub.indices] = -np.inf
        part = np.argpartition(-s, n - 1, axis=1)[:, :n]
        top = np.take_along_axis(s, part, axis=1)
        o = np.lexsort((part, -top), axis=1)
        items[users, :n] = np.take_along_axis(part, o, axis=1)
        scores[users, :n] = np.take_along_axis(top, o, axis=1)
    bad = ~np.isfinite(scores) & (items >= 0)
    items[bad] = -1  # users with fewer unobserved items than N
    return items, scores, observed


def periodic_epochs(folder: RunFolder) -> dict[int, Path]:
    """Epoch → path of the run's periodic checkpoints (``checkpoints/epoch-XXXX.ckpt.npz``)."""
    out = {}
    for p in folder.periodic_checkpoints():
        m = _EPOCH.search(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def select_checkpoints(folder: RunFolder, fractions: list[float]) -> list[tuple[int, Path]]:
    """Picks the trajectory: for each fraction f, the periodic checkpoint nearest to f × (best epoch + 1)
    epochs of training, then the best checkpoint (the converged teacher) last.

    Raises a :class:`DistillrecError` when the run has too few distinct periodic checkpoints before
    its best epoch (train with a smaller ``train.checkpoint_every``).
    """
    if not folder.best.exists():
        raise DistillrecError(f"{folder.root}: no best.ckpt.npz; train the teacher first.")
    _, meta = load_checkpoint(folder.best)
    best_epoch = int(meta["epoch"])
    saved = {e: p for e, p in periodic_epochs(folder).items() if e < best_epoch}
    chosen: list[tuple[int, Path]] = []
    for f in sorted(fractions):
        target = f * (best_epoch + 1) - 1
        left = [e for e in saved if e not in {c for c, _ in chosen}]
        if not left:
            raise DistillrecError(
                f"{folder.root}: only {len(saved)} periodic checkpoint(s) before the best epoch {best_epoch}, "
                f"{len(fractions)} are needed; retrain with a smaller train.checkpoint_every."
            )
        e = min(left, key=lambda x: (abs(x - target), x))
        chosen.append((e, saved[e]))
    chosen.sort()
    return chosen + [(best_epoch, folder.best)]


def export_trajectory(run: str | Path, dataset: Dataset, fractions: list[float], top_n: int, eval_ks: list[int] | None = None) -> Path:
    """Writes ``RUN/trajectory.npz`` for a finished teacher run; returns its path.

    Each checkpoint is also evaluated on validation (full ranking) so that the trajectory's
    easy-to-hard progression is visible in its metadata.
    """
    from training.runs import load_model_checkpoint  # runs imports trainer; keep module import light

    folder = RunFolder(run)
    picks = select_checkpoints(folder, fractions)
    all_items, all_scores, all_obs, valid = [], [], [], []
    for _, path in picks:
        model = load_model_checkpoint(path, dataset)
        with torch.no_grad():
            items, scores, observed = rank_lists(model, dataset.train, top_n)
        all_items.append(items)
        all_scores.append(scores)
        all_obs.append(observed)
        res = evaluate(TorchScorer(model), dataset, "valid", "full", eval_ks or [10, 50])
        valid.append(res.metrics)
    meta = {
        "kind": "trajectory",
        "run": str(folder.root),
        "source": checkpoint_stamp(folder.best),
        "epochs": [e for e, _ in picks],
        "checkpoints": [p.name for _, p in picks],
        "fractions": list(fractions),
        "top_n": top_n,
        "data_fingerprint": dataset.fingerprint(),
        "valid": valid,
    }
    tensors = {"items": np.stack(all_items), "scores": np.stack(all_scores), "observed": np.stack(all_obs)}
    return save_checkpoint(folder.root / TRAJECTORY_FILE, tensors, meta)


def checkpoint_stamp(path: Path) -> str:
    """Identifies one version of a checkpoint file (size and modification time), to detect retraining."""
    st = Path(path).stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def trajectory_meta(run: str | Path) -> dict | None:
    """The metadata of ``RUN/trajectory.npz`` (None when it does not exist)."""
    path = Path(run) / TRAJECTORY_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["__meta__"].tobytes().decode())


def load_trajectory(run: str | Path, dataset: Dataset) -> Trajectory:
    """Loads ``RUN/trajectory.npz`` and checks that it belongs to ``dataset``."""
    path = Path(run) / TRAJECTORY_FILE
    if not path.exists():
        raise DistillrecError(f"{path}: no trajectory; build it with `distillrec ensemble build` (or `distillrec ensemble trajectory --run {run}`).")
    tensors, meta = load_checkpoint(path)
    if meta.get("data_fingerprint") != dataset.fingerprint():
        raise DistillrecError(f"{path}: the trajectory was computed on different data than this run uses.")
    best = Path(run) / "best.ckpt.npz"
    if best.exists() and meta.get("source") != checkpoint_stamp(best):
        raise DistillrecError(f"{path}: the teacher was retrained after its trajectory was stored; rebuild the ensemble (`distillrec ensemble build`).")
    return Trajectory(
        run=str(run),
        epochs=list(meta["epochs"]),
        items=tensors["items"].numpy(),
        scores=tensors["scores"].numpy(),
        observed=tensors["observed"].numpy(),
        indptr=dataset.train.indptr.astype(np.int64),
        valid=list(meta.get("valid", [])),
    )
