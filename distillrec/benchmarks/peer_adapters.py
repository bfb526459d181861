"""BPR matrix factorisation trained by distillrec (fused and torch loops), RecBole and implicit on one
split, each reporting every epoch to one evaluation loop (see :mod:`distillrec.benchmarks.peers`).

Each trainer calls ``on_epoch(seconds, pairs, U, I)`` after every epoch with the training seconds of
that epoch alone, the training pairs it processed (one pair = one (user, positive, negative) triple
scored and updated) and the user and item tables in distillrec's index order, such that the score of
(u, i) is ``U[u] · I[i]``; it stops when ``on_epoch`` returns True. RecBole and implicit are optional
(``pip install distillrec[peers]``); the pure helpers here need neither.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

OnEpoch = Callable[[float, int, np.ndarray, np.ndarray], bool]
PEERS_HINT = "pip install 'distillrec[peers]' (RecBole 1.2.1 and implicit 0.7)"


def pairs_per_epoch(library: str, interactions: int, negatives: int = 1, skipped: int = 0) -> int:
    """Training pairs one epoch processes. distillrec and RecBole visit every training interaction once
    with ``negatives`` sampled items each; implicit draws ``interactions`` (user, positive, negative)
    samples with replacement and skips the ``skipped`` ones whose negative the user has in training."""
    if library in ("distillrec-fused", "distillrec-torch", "recbole"):
        return interactions * negatives
    if library == "implicit":
        return interactions - skipped
    raise ValueError(f"unknown library {library!r}")


def implicit_tables(user_factors: np.ndarray, item_factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """implicit's BPR factors as (U, I) with score ``U[u] · I[i]``. implicit keeps ``factors + 1``
    columns: the users' last column is fixed at 1 and the items' last column is the item bias, so the
    plain dot product of the full rows is implicit's own score (latent product + item bias)."""
    U, I = np.asarray(user_factors, dtype=np.float32), np.asarray(item_factors, dtype=np.float32)
    if U.shape[1] != I.shape[1]:
        raise ValueError(f"user factors have {U.shape[1]} columns, item factors {I.shape[1]}")
    active = np.abs(U).sum(axis=1) > 0  # implicit zeroes users without interactions, bias column included
    if not np.allclose(U[active, -1], 1.0):
        raise ValueError("the users' last column is not the constant 1 of implicit's item-bias term")
    return U, I


def rows_in_order(table: np.ndarray, internal_ids: np.ndarray) -> np.ndarray:
    """Rows of a library's table (indexed by its internal ids) in distillrec's index order:
    ``internal_ids[k]`` is the library's id of distillrec's index k."""
    internal_ids = np.asarray(internal_ids, dtype=np.int64)
    if len(np.unique(internal_ids)) != len(internal_ids) or internal_ids.min(initial=0) < 0 or internal_ids.max(initial=-1) >= len(table):
        raise ValueError("the id mapping is not one-to-one into the table")
    return np.ascontiguousarray(table[internal_ids], dtype=np.float32)


def write_recbole_atomic_files(folder: Path, name: str, parts: dict[str, sp.spmatrix]) -> None:
    """RecBole's atomic files ``folder/name/name.<part>.inter`` (tab-separated user and item tokens:
    distillrec's indices), one per part, for RecBole's pre-split (``benchmark_filename``) loading."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    for part, matrix in parts.items():
        coo = matrix.tocoo()
        with (folder / name / f"{name}.{part}.inter").open("w") as fh:
            fh.write("user_id:token\titem_id:token\n")
            fh.writelines(f"{u}\t{i}\n" for u, i in zip(coo.row.tolist(), coo.col.tolist()))


def train_distillrec(dataset, config, on_epoch: OnEpoch, folder: Path) -> dict:
    """distillrec's own trainer on ``config`` (its ``train.engine``: fused or torch), one epoch at a time."""
    import torch

    from training.models import model_from_config
    from training.trainer import Trainer

    torch.manual_seed(config.train.seed)  # as `distillrec train`: the initialisation depends on the seed only
    model = model_from_config(config.model, dataset.n_users, dataset.n_items, dataset.train)
    trainer = Trainer(config, dataset, model, str(folder))
    pairs = pairs_per_epoch(f"distillrec-{config.train.engine}", dataset.train.nnz, config.train.negatives)
    for epoch in range(config.train.epochs):
        t0 = time.perf_counter()
        trainer._epoch(epoch)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            U, I = (t.detach().numpy() for t in model.representations())
        if on_epoch(seconds, pairs, U, I):
            break
    return {
        "optimizer": "Adam",
        "lr": config.train.lr,
        "weight_decay": config.train.weight_decay,
        "batch_size": config.train.batch_size,
        "negatives": config.train.negatives,
    }


def _numpy2_aliases() -> None:
    """RecBole 1.2.1 re-creates numpy < 2 aliases from names numpy 2 removed (np.float_ …)."""
    for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if old not in np.__dict__:
            setattr(np, old, new)


def train_recbole(dataset, settings: dict, on_epoch: OnEpoch, folder: Path) -> dict:
    """RecBole's BPR model, data loader (its negative sampler) and trainer, fed distillrec's split as
    pre-split atomic files; its own evaluation is not used."""
    try:
        _numpy2_aliases()
        import torch
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.general_recommender.bpr import BPR
        from recbole.trainer import Trainer
        from recbole.utils import init_seed
    except ImportError as e:
        raise SystemExit(f"RecBole is not installed ({e}); {PEERS_HINT}") from e

    os.chdir(folder)  # RecBole writes its log folders into the working directory
    write_recbole_atomic_files(folder / "data", "split", {"train": dataset.train, "valid": dataset.valid, "test": dataset.test})
    config = Config(
        model="BPR",
        dataset="split",
        config_dict={
            "data_path": str(folder / "data"),
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "embedding_size": settings["dim"],
            "learning_rate": settings["lr"],
            "epochs": settings["epochs"],
            "seed": settings["seed"],
            "reproducibility": True,
            "show_progress": False,
            "use_gpu": False,
            "checkpoint_dir": str(folder / "saved"),
            "state": "ERROR",
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    rb_dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, rb_dataset)
    model = BPR(config, train_data.dataset)
    torch.set_num_threads(1)
    trainer = Trainer(config, model)
    users = rb_dataset.token2id("user_id", [str(u) for u in range(dataset.n_users)])
    items = rb_dataset.token2id("item_id", [str(i) for i in range(dataset.n_items)])
    negatives = int(config["train_neg_sample_args"]["sample_num"])
    pairs = pairs_per_epoch("recbole", dataset.train.nnz, negatives)
    for epoch in range(settings["epochs"]):
        t0 = time.perf_counter()
        trainer._train_epoch(train_data, epoch, show_progress=False)
        seconds = time.perf_counter() - t0
        U = rows_in_order(model.user_embedding.weight.detach().numpy(), users)
        I = rows_in_order(model.item_embedding.weight.detach().numpy(), items)
        if on_epoch(seconds, pairs, U, I):
            break
    return {
        "optimizer": config["learner"],
        "lr": config["learning_rate"],
        "weight_decay": config["weight_decay"],
        "batch_size": config["train_batch_size"],
        "negatives": negatives,
    }


class _Stop(Exception):
    """Raised from implicit's epoch callback to end its training loop early."""


def train_implicit(dataset, settings: dict, on_epoch: OnEpoch) -> dict:
    """implicit's CPU BPR (plain SGD, one thread) with its per-epoch callback, which receives the
    seconds of the epoch's update loop and the number of skipped samples."""
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError as e:
        raise SystemExit(f"implicit is not installed ({e}); {PEERS_HINT}") from e

    model = BayesianPersonalizedRanking(
        factors=settings["dim"],
        learning_rate=settings["lr"],
        regularization=settings["regularization"],
        iterations=settings["epochs"],
        num_threads=1,
        random_state=settings["seed"],
    )
    nnz = dataset.train.nnz

    def callback(epoch, seconds, correct, skipped):
        U, I = implicit_tables(model.user_factors, model.item_factors)
        if on_epoch(seconds, pairs_per_epoch("implicit", nnz, skipped=int(skipped)), U, I):
            raise _Stop

    try:
        model.fit(sp.csr_matrix(dataset.train, dtype=np.float32), show_progress=False, callback=callback)
    except _Stop:
        pass
    return {"optimizer": "SGD", "lr": settings["lr"], "regularization": settings["regularization"], "batch_size": 1, "negatives": 1}
