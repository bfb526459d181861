"""The one `Dataset` type every other part of the training side consumes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


def _binary_csr(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """A 0/1 float32 CSR matrix [n_users, n_items] with sorted column indices and no duplicates."""
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users.astype(np.int64), items.astype(np.int64))),
        shape=(n_users, n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


@dataclass(frozen=True)
class Dataset:
    """Implicit-feedback data, split into train / validation / test.

    Attributes:
        name: a short name (``ml-100k``, ``citeulike``, or the file stem).
        user_ids, item_ids: external ids (strings) in index order; index ``u`` is ``user_ids[u]``.
        train, valid, test: 0/1 CSR matrices of shape [n_users, n_items]. ``train`` holds the
            interactions a model learns from (the "seen" items); ``valid`` and ``test`` hold the
            held-out targets (one item per user under leave-one-out, several under ratio hold-out;
            a user may have none).
        split: how the split was made (``loo-time``, ``loo-random``, ``ratio``, ``presplit``).
        source: where the data came from (a path or a registry description), for provenance.
    """

    name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    split: str
    source: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_indices(
        cls,
        name: str,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        train: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        split: str,
        source: str = "",
    ) -> Dataset:
        """Builds a dataset from (user index, item index) pairs for each part."""
        nu, ni = len(user_ids), len(item_ids)
        return cls(
            name=name,
            user_ids=np.asarray(user_ids, dtype=str),
            item_ids=np.asarray(item_ids, dtype=str),
            train=_binary_csr(*train, nu, ni),
            valid=_binary_csr(*valid, nu, ni),
            test=_binary_csr(*test, nu, ni),
            split=split,
            source=source,
        )

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All training (user, item) index pairs as two int64 arrays, ordered by user."""
        if "pairs" not in self._cache:
            coo = self.train.tocoo()
            self._cache["pairs"] = (coo.row.astype(np.int64), coo.col.astype(np.int64))
        return self._cache["pairs"]

    def seen_items(self, user: int) -> np.ndarray:
        """Training items of one user (sorted item indices)."""
        return self.train.indices[self.train.indptr[user] : self.train.indptr[user + 1]]

    def item_popularity(self) -> np.ndarray:
        """Number of training interactions per item, int64 [n_items]."""
        return np.asarray(self.train.sum(axis=0)).ravel().astype(np.int64)

    def fingerprint(self) -> str:
        """sha256 over ids and the three parts: equal fingerprints mean the same data and split."""
        if "fp" not in self._cache:
            h = hashlib.sha256()
            for ids in (self.user_ids, self.item_ids):
                h.update("\x1f".join(ids.tolist()).encode())
            for m in (self.train, self.valid, self.test):
                h.update(m.indptr.astype(np.int64).tobytes())
                h.update(m.indices.astype(np.int64).tobytes())
            self._cache["fp"] = h.hexdigest()
        return self._cache["fp"]

    def stats(self) -> dict:
        """Counts and density, as a JSON-ready dict."""
        n_train = int(self.train.nnz)
        per_user = np.diff(self.train.indptr)
        return {
            "name": self.name,
            "source": self.source,
            "split": self.split,
            "users": self.n_users,
            "items": self.n_items,
            "train_interactions": n_train,
            "valid_interactions": int(self.valid.nnz),
            "test_interactions": int(self.test.nnz),
            "interactions": n_train + int(self.valid.nnz) + int(self.test.nnz),
            "density": n_train / max(1, self.n_users * self.n_items),
            "train_per_user": {
                "min": int(per_user.min()) if len(per_user) else 0,
                "median": float(np.median(per_user)) if len(per_user) else 0.0,
                "max": int(per_user.max()) if len(per_user) else 0,
            },
            "fingerprint": self.fingerprint(),
        }
