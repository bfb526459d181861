"""Deterministic train/validation/test splits of an interaction log (vectorised, no per-user loops)."""

from __future__ import annotations

import numpy as np

from training.data.dataset import Dataset
from training.data.interactions import Interactions, concat
from training.errors import DataError


def _indexed(codes: np.ndarray, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the ids rows use, in index order; each row's index): ids sorted numerically when they are all
    integers (1, 2, 10; equal numbers such as 1 and 01 lexicographically), else lexicographically.
    Sorts the distinct ids only, never the rows."""
    present = np.flatnonzero(np.bincount(codes, minlength=len(vocab)))
    ids = vocab[present]
    order = np.argsort(ids, kind="stable")
    try:
        order = order[np.argsort(ids[order].astype(np.int64), kind="stable")]
    except ValueError:
        pass
    rank = np.full(len(vocab), -1, dtype=np.int64)
    rank[present[order]] = np.arange(len(order), dtype=np.int64)
    return ids[order], rank[codes]


def index_ids(data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maps external ids to indices. Returns (user_ids, item_ids, user_index, item_index)."""
    user_ids, u = _indexed(data.user_codes, data.user_vocab)
    item_ids, i = _indexed(data.item_codes, data.item_vocab)
    return user_ids, item_ids, u, i


def _too_few(data: Interactions, user_ids: np.ndarray, counts: np.ndarray, need: np.ndarray | int, split: str) -> None:
    """Raises a DataError naming the first user with fewer than ``need`` interactions."""
    need = np.broadcast_to(np.asarray(need), counts.shape)
    bad = np.flatnonzero(counts < need)
    if len(bad):
        u = bad[0]
        raise DataError(
            f"{data.origin}: user '{user_ids[u]}' has {counts[u]} interaction(s), but the {split} split needs at "
            f"least {need[u]} for this user ({len(bad)} user(s) have too few). Set data.min_user_interactions "
            f"to {int(need[bad].max())} or more to drop such users, or choose another split."
        )


def leave_one_out(data: Interactions, name: str, seed: int) -> Dataset:
    """Per user: the last interaction is the test item, the one before it the validation item.

    "Last" is by timestamp when the data has timestamps (ties broken by file order, so the result is
    deterministic), otherwise by a random order drawn from ``seed``.
    """
    user_ids, item_ids, u, i = index_ids(data)
    counts = np.bincount(u, minlength=len(user_ids))
    _too_few(data, user_ids, counts, 3, "leave-one-out")
    if data.timestamp is not None:
        order = np.lexsort((np.arange(len(u)), data.timestamp, u))
        split = "loo-time"
    else:
        key = np.random.default_rng(seed).random(len(u))
        order = np.lexsort((key, u))
        split = "loo-random"
    u, i = u[order], i[order]
    ends = np.cumsum(counts)  # exclusive end of each user's block in the sorted order
    role = np.zeros(len(u), dtype=np.int8)  # 0 train, 1 valid, 2 test
    role[ends - 1] = 2
    role[ends - 2] = 1
    return Dataset.from_indices(
        name,
        user_ids,
        item_ids,
        (u[role == 0], i[role == 0]),
        (u[role == 1], i[role == 1]),
        (u[role == 2], i[role == 2]),
        split=split,
        source=data.origin,
    )


def ratio_holdout(data: Interactions, name: str, seed: int, valid: float, test: float, drop_cold: bool) -> Dataset:
    """Per user, a random ``test`` share of interactions for test and ``valid`` share for validation.

    Each user keeps at least one training interaction and gets at least one test item (and one
    validation item when ``valid`` > 0). With ``drop_cold`` the validation/test items that no user
    has in training are dropped (the HetComp protocol).
    """
    if not (0 < test < 1 and 0 <= valid < 1 and valid + test < 1):
        raise DataError(f"data.split: valid={valid} and test={test} must be shares in [0, 1) with valid + test < 1.")
    user_ids, item_ids, u, i = index_ids(data)
    counts = np.bincount(u, minlength=len(user_ids))
    n_test = np.maximum(1, np.rint(counts * test)).astype(np.int64)
    n_valid = (np.maximum(1, np.rint(counts * valid)) if valid > 0 else np.zeros_like(counts)).astype(np.int64)
    _too_few(data, user_ids, counts, n_test + n_valid + 1, "ratio")
    key = np.random.default_rng(seed).random(len(u))
    order = np.lexsort((key, u))
    u, i = u[order], i[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(u)) - starts[u]
    role = np.where(pos < n_test[u], 2, np.where(pos < n_test[u] + n_valid[u], 1, 0))
    train = (u[role == 0], i[role == 0])
    parts = []
    for r in (1, 2):
        pu, pi = u[role == r], i[role == r]
        if drop_cold:
            warm = np.zeros(len(item_ids), dtype=bool)
            warm[train[1]] = True
            pu, pi = pu[warm[pi]], pi[warm[pi]]
        parts.append((pu, pi))
    return Dataset.from_indices(name, user_ids, item_ids, train, parts[0], parts[1], split="ratio", source=data.origin)


def presplit(train: Interactions, valid: Interactions, test: Interactions, name: str, origin: str) -> Dataset:
    """Uses given train/valid/test logs as they are; ids are mapped over their union."""
    union = concat([train, valid, test], origin)
    user_ids, item_ids, u, i = index_ids(union)
    a, b = len(train), len(train) + len(valid)
    return Dataset.from_indices(name, user_ids, item_ids, (u[:a], i[:a]), (u[a:b], i[a:b]), (u[b:], i[b:]), split="presplit", source=origin)
